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
  return program
    .command("eval")
    .description(
      "Fréchet distance of a checkpoint's generator to the test split (mnist, fashion-mnist; our own classifier's features, not Inception)",
    )
    .requiredOption(
      "--checkpoint <dir>",
      "a ckpt-NNNNNNNN directory, or a run dir (newest valid checkpoint)",
    )
    .option("--n <count>", "number of generated samples", intAtLeast2, EVAL_DEFAULT_N)
    .option("--seed <n>", "latent seed of the samples", seedArg, EVAL_SEED)
    .addOption(
      new Option("--backend <name>", "compute backend").choices([...BACKEND_NAMES]).default("auto"),
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
    .option("--json", "print the result as one JSON line instead")
    .action(async (opts: Record<string, unknown>) => {
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
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`${opts.json ? JSON.stringify(result) : formatEval(result)}\n`);
    });
}
