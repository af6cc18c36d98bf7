// `agon eval`: the Fréchet distance (shared/fid.ts) of a checkpoint's generator against the
// dataset's test split, on n samples drawn from a fixed latent seed.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { BACKEND_NAMES, type BackendName, initBackend } from "../shared/backend.js";
import { evaluateGenerator, hasFeatures } from "../shared/evaluation.js";
import { type FidDataset, realFeatures } from "../shared/fid.js";
import { CLASSIFIER_RECIPE, recipeHash } from "../shared/fid-classifier.js";
import { KID_DEFAULT_SUBSETS, kernelInceptionDistance } from "../shared/kid.js";
import { buildModel } from "../shared/models.js";
import {
  type CheckpointData,
  latestValidCheckpoint,
  type Manifest,
  readCheckpoint,
} from "./checkpoint.js";

/** Latent seed of the evaluation samples: the same for every run, so runs compare on equal noise. */
export const EVAL_SEED = 0x46d;
export const EVAL_DEFAULT_N = 2000;

export class EvaluationError extends Error {
  override name = "EvaluationError";
}

export interface EvalOptions {
  n?: number;
  seed?: number;
  /** Activated before sampling; leave out to use the active backend. */
  backend?: BackendName;
  /** Also compute KID with this many subsets (of min(1000, n) rows each); 0 or absent: no KID. */
  kidSubsets?: number;
  log?: (line: string) => void;
}

export interface EvalResult {
  checkpoint: string;
  step: number;
  dataset: FidDataset;
  model: string;
  n: number;
  seed: number;
  fd: number;
  /** Kernel Inception Distance on the same features (when asked for): mean and std over subsets. */
  kid?: { mean: number; std: number; subsets: number; subsetSize: number };
  classifier: string;
  backend: string;
  seconds: number;
}

/** A checkpoint dir as given, or the newest one of a run dir that verifies (read-only, safe on a live run). */
async function findCheckpoint(
  dir: string,
  log: (line: string) => void,
): Promise<{ dir: string; manifest: Manifest; data: CheckpointData }> {
  if (existsSync(join(dir, "manifest.json"))) return { dir, ...(await readCheckpoint(dir)) };
  const found = await latestValidCheckpoint(dir, (rejected, reason) =>
    log(`checkpoint rejected: ${rejected}: ${reason}`),
  );
  if (found) return found;
  throw new EvaluationError(
    `${dir}: no valid checkpoint (neither a ckpt-NNNNNNNN dir nor a run dir holding one)`,
  );
}

/**
 * Evaluates a checkpoint directory (one with a manifest.json), or the newest valid
 * checkpoint of a run dir.
 */
export async function evalCheckpoint(dir: string, opts: EvalOptions = {}): Promise<EvalResult> {
  const log = opts.log ?? (() => {});
  const n = opts.n ?? EVAL_DEFAULT_N;
  const seed = opts.seed ?? EVAL_SEED;
  if (!Number.isSafeInteger(n) || n < 2)
    throw new EvaluationError(`--n must be an integer >= 2, got ${n}`);
  const t0 = performance.now();
  const found = await findCheckpoint(dir, log);
  const gWeights = found.data.weights.G;
  const cfg = found.manifest.config;
  const dataset = cfg?.dataset?.name;
  if (!hasFeatures(dataset)) {
    throw new EvaluationError(
      `eval supports mnist and fashion-mnist; ${found.dir} was trained on ${String(dataset)}`,
    );
  }
  const backend = opts.backend ? await initBackend(opts.backend, log) : undefined;
  const model = buildModel(cfg.model, [28, 28, 1]);
  if (gWeights.length !== model.g.size) {
    throw new EvaluationError(
      `${found.dir}: G has ${gWeights.length} weights, its config's ${cfg.model.name} needs ${model.g.size}`,
    );
  }
  const kidSubsets = opts.kidSubsets ?? 0;
  const evaluation = await evaluateGenerator(model, gWeights, dataset, {
    n,
    seed,
    keepFeatures: kidSubsets > 0,
  });
  let kid: EvalResult["kid"];
  if (evaluation.features) {
    const r = kernelInceptionDistance(evaluation.features, await realFeatures(dataset), {
      subsets: kidSubsets,
      seed,
    });
    kid = { mean: r.kid, std: r.std, subsets: r.subsets, subsetSize: r.subsetSize };
  }
  const { getBackend } = await import("@tensorflow/tfjs-core");
  return {
    checkpoint: found.dir,
    step: found.manifest.step,
    dataset,
    model: cfg.model.name,
    n,
    seed,
    fd: evaluation.fd,
    ...(kid ? { kid } : {}),
    classifier: `mlp-v${CLASSIFIER_RECIPE.version}-${recipeHash()}`,
    backend: backend ?? getBackend(),
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
}

function intAtLeast2(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 2) {
    throw new InvalidArgumentError("expected an integer >= 2");
  }
  return n;
}

function seedArg(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 0xffffffff) {
    throw new InvalidArgumentError("expected an integer in [0, 2^32)");
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

export function formatEval(r: EvalResult): string {
  const kid = r.kid ? `, kid ${r.kid.mean.toExponential(3)} ± ${r.kid.std.toExponential(2)}` : "";
  return `fd ${r.fd.toFixed(3)}${kid} (${r.dataset}, ${r.model} step ${r.step}, n ${r.n}, seed ${r.seed}, classifier ${r.classifier}, ${r.backend}, ${r.seconds} s) ${r.checkpoint}`;
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
    .option(
      "--kid [subsets]",
      `also the Kernel Inception Distance, averaged over this many subsets of min(1000, n) (default ${KID_DEFAULT_SUBSETS})`,
      positiveInt,
    )
    .option("--json", "print the result as one JSON line instead")
    .action(async (opts: Record<string, unknown>) => {
      const result = await evalCheckpoint(opts.checkpoint as string, {
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
