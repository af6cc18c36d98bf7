import { type BackendName, initBackend } from "../shared/backend.js";
import { parseConfig, type RunConfig } from "../shared/config.js";
import { evaluateGenerator, hasFeatures } from "../shared/evaluation.js";
import { type FidDataset, realFeatures } from "../shared/fid.js";
import { CLASSIFIER_RECIPE, recipeHash } from "../shared/fid-classifier.js";
import { kernelInceptionDistance } from "../shared/kid.js";
import { buildModel } from "../shared/models/index.js";
import { readCheckpointOrNewest } from "./checkpoint.js";

import { EVAL_DEFAULT_N, EVAL_SEED } from "./eval-defaults.js";

export { EVAL_DEFAULT_N, EVAL_SEED };

export class EvaluationError extends Error {
  override name = "EvaluationError";
}

export interface EvalOptions {
  n?: number;
  seed?: number;
  /** Activated before sampling; leave out to use the active backend. */
  backend?: BackendName;
  /** Default: "ema" when the checkpoint has an EMA generator, else "raw". */
  weights?: "ema" | "raw";
  /** Also compute KID with this many subsets (of min(1000, n) rows each); 0 or absent: no KID. */
  kidSubsets?: number;
  log?: (line: string) => void;
}

export interface EvalResult {
  checkpoint: string;
  step: number;
  dataset: FidDataset;
  model: string;
  /** Which generator was evaluated: the EMA one or G as trained. */
  weights: "ema" | "raw";
  n: number;
  seed: number;
  fd: number;
  /** Kernel Inception Distance on the same features (when asked for): mean and std over subsets. */
  kid?: { mean: number; std: number; subsets: number; subsetSize: number };
  classifier: string;
  backend: string;
  seconds: number;
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
  const found = await readCheckpointOrNewest(dir, (rejected, reason) =>
    log(`checkpoint rejected: ${rejected}: ${reason}`),
  );
  const weights = opts.weights ?? (found.data.ema ? "ema" : "raw");
  if (weights === "ema" && !found.data.ema) {
    throw new EvaluationError(
      `${found.dir} has no EMA generator (the run had ema: false); use --weights raw`,
    );
  }
  const gWeights = weights === "ema" ? found.data.ema! : found.data.weights.G;
  let cfg: RunConfig;
  try {
    cfg = parseConfig(found.manifest.config, `${found.dir}/manifest.json config`);
  } catch (err) {
    throw new EvaluationError((err as Error).message);
  }
  const dataset = cfg?.dataset?.name;
  if (!hasFeatures(dataset)) {
    throw new EvaluationError(
      `eval supports mnist and fashion-mnist; ${found.dir} was trained on ${String(dataset)}`,
    );
  }
  const backend = opts.backend ? await initBackend(opts.backend, log) : undefined;
  let model: ReturnType<typeof buildModel>;
  try {
    model = buildModel(cfg.model, [28, 28, 1]);
  } catch (err) {
    throw new EvaluationError(`${found.dir}: ${(err as Error).message}`);
  }
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
    weights,
    n,
    seed,
    fd: evaluation.fd,
    ...(kid ? { kid } : {}),
    classifier: `mlp-v${CLASSIFIER_RECIPE.version}-${recipeHash()}`,
    backend: backend ?? getBackend(),
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
}

export function formatEval(r: EvalResult): string {
  const kid = r.kid ? `, kid ${r.kid.mean.toExponential(3)} ± ${r.kid.std.toExponential(2)}` : "";
  return `fd ${r.fd.toFixed(3)}${kid} (${r.dataset}, ${r.model} step ${r.step}, ${r.weights} weights, n ${r.n}, seed ${r.seed}, classifier ${r.classifier}, ${r.backend}, ${r.seconds} s) ${r.checkpoint}`;
}
