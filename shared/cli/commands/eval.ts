// `agon eval`: the Fréchet distance of a checkpoint's generator (coordinator/eval.ts,
// imported when the command runs).
import { type Command, InvalidArgumentError, Option } from "commander";
import { EVAL_DEFAULT_N, EVAL_SEED } from "../../../coordinator/eval-defaults.js";
import { BACKEND_NAMES, type BackendName } from "../../backend-names.js";

function intAtLeast2(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 2) {
    throw new InvalidArgumentError("expected an integer >= 2");
  }
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError("expected an integer >= 1");
  }
  return n;
}

/** KID's subsets when `--kid` is given without a number (the reference implementations' 100). */
const KID_DEFAULT_SUBSETS = 100;

function seedArg(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 0xffffffff) {
    throw new InvalidArgumentError("expected an integer in [0, 2^32)");
  }
  return n;
}

/** Adds `agon eval` to the CLI. EvaluationError is a user error (one line, exit code 2). */
export function registerEvalCommand(program: Command): Command {
  const evalCommand = program.command("eval");
  evalCommand
    .command("fit-features")
    .description(
      "train the feature classifier recipe on a labelled prepared dataset (deterministic) and write DIR/features/, so eval.every and agon eval work on it",
    )
    .requiredOption("--dataset <dir>", "a labelled dataset written by agon data prepare")
    .option("--json", "print the written features.json as one JSON line")
    .action(async (_opts: Record<string, unknown>, cmd: Command) => {
      // With the parent's options: `eval` has a --json of its own, which takes the flag.
      const opts = cmd.optsWithGlobals();
      const { fitFeatures } = await import("../../features/fitted.js");
      const manifest = await fitFeatures(opts.dataset as string, (line) =>
        process.stderr.write(`${line}\n`),
      );
      if (opts.json) process.stdout.write(`${JSON.stringify(manifest)}\n`);
    });
  return (
    evalCommand
      .description(
        "Fréchet distance of a checkpoint's generator to the test split (mnist, fashion-mnist) or a prepared dataset's rows (after fit-features) in our own classifier's features; with --inception FILE also the standard FID and KID",
      )
      // Required, but checked in the action: commander checks a parent's required options
      // in its subcommands too, and fit-features has none.
      .option(
        "--checkpoint <dir>",
        "a ckpt-NNNNNNNN directory, run dir/best, or a run dir (newest valid checkpoint) (required)",
      )
      .option("--n <count>", "number of generated samples", intAtLeast2, EVAL_DEFAULT_N)
      .option("--seed <n>", "latent seed of the samples", seedArg, EVAL_SEED)
      .addOption(
        new Option("--backend <name>", "compute backend")
          .choices([...BACKEND_NAMES])
          .default("auto"),
      )
      .addOption(
        new Option(
          "--weights <which>",
          "the EMA generator or G as trained (default: ema when kept)",
        ).choices(["ema", "raw"]),
      )
      .option(
        "--kid [subsets]",
        `also the Kernel Inception Distance, averaged over this many subsets of min(1000, n) (default ${KID_DEFAULT_SUBSETS})`,
        positiveInt,
      )
      .option(
        "--inception <file>",
        "also the standard FID and KID on Inception-v3 features; FILE: pytorch-fid's weights converted by bench/convert_inception.py (docs/QUALITY.md)",
      )
      .option("--json", "print the result as one JSON line instead")
      .action(async (opts: Record<string, unknown>) => {
        if (opts.checkpoint === undefined)
          evalCommand.error("error: required option '--checkpoint <dir>' not specified");
        const { evalCheckpoint, formatEval } = await import("../../../coordinator/eval.js");
        const result = await evalCheckpoint(opts.checkpoint as string, {
          weights: opts.weights as "ema" | "raw" | undefined,
          n: opts.n as number,
          seed: opts.seed as number,
          backend: opts.backend as BackendName,
          kidSubsets:
            opts.kid === undefined
              ? 0
              : opts.kid === true
                ? KID_DEFAULT_SUBSETS
                : (opts.kid as number),
          inception: opts.inception as string | undefined,
          log: (line) => process.stderr.write(`${line}\n`),
        });
        process.stdout.write(`${opts.json ? JSON.stringify(result) : formatEval(result)}\n`);
      })
  );
}
