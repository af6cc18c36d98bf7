// `agon sample` and `agon export`: a checkpoint's generator as a PNG grid or a
// TensorFlow.js model (coordinator/export.ts, imported when the command runs).
import { type Command, InvalidArgumentError, Option } from "commander";
import { BACKEND_NAMES, type BackendName } from "../../backend-names.js";

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError("expected an integer ≥ 1");
  return n;
}

/** The most samples one `agon sample` grid holds (64×64 tiles: a 4096×4096 grid of 28-px images). */
export const SAMPLE_MAX = 4096;

function sampleCount(value: string): number {
  const n = positiveInt(value);
  if (n > SAMPLE_MAX) {
    throw new InvalidArgumentError(`expected at most ${SAMPLE_MAX} (one grid image)`);
  }
  return n;
}

function classArg(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError("expected an integer ≥ 0");
  return n;
}

function seedArg(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) {
    throw new InvalidArgumentError("expected an integer in 0..4294967295");
  }
  return n;
}

const log = (line: string) => process.stderr.write(`${line}\n`);

export function registerSampleCommand(program: Command): Command {
  return program
    .command("sample")
    .description("write a PNG grid of a checkpoint's generator on fixed noise")
    .requiredOption(
      "--checkpoint <dir>",
      "a ckpt-NNNNNNNN directory, run dir/best, or a run dir (newest valid checkpoint)",
    )
    .requiredOption("--out <file>", "image file to write: .png (exact), .jpg or .webp")
    .option(
      "--n <count>",
      `number of samples, at most ${SAMPLE_MAX} (default: the run's samples.count)`,
      sampleCount,
    )
    .option("--seed <n>", "noise seed (default: the run's seed, as in its own grids)", seedArg)
    .option(
      "--class <n>",
      "conditional models: every sample of class n (default: one row per class)",
      classArg,
    )
    .addOption(
      new Option("--backend <name>", "compute backend").choices([...BACKEND_NAMES]).default("auto"),
    )
    .addOption(
      new Option(
        "--weights <which>",
        "the EMA generator or G as trained (default: ema when kept)",
      ).choices(["ema", "raw"]),
    )
    .action(async (opts: Record<string, unknown>) => {
      const { runSample } = await import("../../../coordinator/export.js");
      await runSample({
        checkpoint: opts.checkpoint as string,
        out: opts.out as string,
        n: opts.n as number | undefined,
        seed: opts.seed as number | undefined,
        classIndex: opts.class as number | undefined,
        backend: opts.backend as BackendName,
        weights: opts.weights as "ema" | "raw" | undefined,
        log,
      });
    });
}

export function registerExportCommand(program: Command): Command {
  return program
    .command("export")
    .description(
      "write a checkpoint's generator as a TensorFlow.js Layers model (model.json + weights.bin)",
    )
    .requiredOption(
      "--checkpoint <dir>",
      "a ckpt-NNNNNNNN directory, run dir/best, or a run dir (newest valid checkpoint)",
    )
    .requiredOption("--out <dir>", "directory to write model.json and weights.bin into")
    .addOption(
      new Option("--backend <name>", "compute backend used while exporting")
        .choices([...BACKEND_NAMES])
        .default("cpu"),
    )
    .addOption(
      new Option(
        "--weights <which>",
        "the EMA generator or G as trained (default: ema when kept)",
      ).choices(["ema", "raw"]),
    )
    .action(async (opts: Record<string, unknown>) => {
      const { runExport } = await import("../../../coordinator/export.js");
      await runExport({
        checkpoint: opts.checkpoint as string,
        out: opts.out as string,
        backend: opts.backend as BackendName,
        weights: opts.weights as "ema" | "raw" | undefined,
        log,
      });
    });
}
