import { type BackendName, initBackend } from "../shared/backend.js";
import { parseConfig, type RunConfig } from "../shared/config.js";
import {
  classifierSpaceOf,
  evaluateGenerator,
  type FeatureSpace,
  type InceptionSpace,
  inceptionSpace,
  referenceFeatures,
  spaceName,
} from "../shared/evaluation.js";
import { ClassifierError } from "../shared/features/classifier.js";
import { InceptionWeightsError } from "../shared/features/inception.js";
import { KID_DEFAULT_SUBSETS, kernelInceptionDistance } from "../shared/kid.js";
import { buildModel, type GanModel } from "../shared/models/index.js";
import { readCheckpointOrNewest, rejectionLine } from "./checkpoint.js";
import { EVAL_DEFAULT_N, EVAL_SEED } from "./eval-defaults.js";
import { sampleShapeOf } from "./export.js";

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
  /**
   * Inception-v3 weights (safetensors, bench/convert_inception.py): also the standard FID
   * and KID on its 2048-d features (KID with kidSubsets, or 100, subsets).
   */
  inception?: string;
  log?: (line: string) => void;
}

/** FID and KID on pytorch-fid's Inception-v3 features: n generated samples against `referenceN` real ones. */
export interface InceptionResult {
  fid: number;
  kid: { mean: number; std: number; subsets: number; subsetSize: number };
  /** The real images: the first referenceN of the test split (mnist, fashion-mnist) or of the dataset. */
  referenceN: number;
  weights: string;
  seconds: number;
}

export interface EvalResult {
  checkpoint: string;
  step: number;
  /** The run's dataset: mnist, fashion-mnist, or prepared (with fitted features). */
  dataset: string;
  model: string;
  /** Which generator was evaluated: the EMA one or G as trained. */
  weights: "ema" | "raw";
  n: number;
  seed: number;
  /** FD in our own feature space (absent for a dataset without one, when only Inception was asked for). */
  fd?: number;
  /** Kernel Inception Distance on the same features (when asked for): mean and std over subsets. */
  kid?: { mean: number; std: number; subsets: number; subsetSize: number };
  /** Our own feature space (classifier name); absent with fd. */
  classifier?: string;
  /** Standard FID and KID on Inception-v3 pool features (with `--inception`). */
  inception?: InceptionResult;
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
    log(rejectionLine(rejected, reason)),
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
  let space: FeatureSpace | null;
  try {
    space = classifierSpaceOf(cfg);
  } catch (err) {
    if (err instanceof ClassifierError && !opts.inception) throw new EvaluationError(err.message);
    if (!(err instanceof ClassifierError)) throw err;
    log(`own features skipped: ${err.message}`);
    space = null;
  }
  if (space === null && !opts.inception) {
    throw new EvaluationError(
      `eval supports mnist, fashion-mnist and prepared datasets with fitted features (agon eval fit-features), and any image dataset with --inception FILE; ${found.dir} was trained on ${String(dataset)}`,
    );
  }
  let net: InceptionSpace | undefined;
  if (opts.inception) {
    if (sampleShapeOf(cfg).length !== 3)
      throw new EvaluationError(
        `--inception needs an image dataset; ${found.dir} was trained on ${String(dataset)}`,
      );
    try {
      net = inceptionSpace(cfg, opts.inception, n);
    } catch (err) {
      if (err instanceof InceptionWeightsError) throw new EvaluationError(err.message);
      throw err;
    }
  }
  const backend = opts.backend ? await initBackend(opts.backend, log) : undefined;
  let model: ReturnType<typeof buildModel>;
  try {
    model = buildModel(cfg.model, sampleShapeOf(cfg));
  } catch (err) {
    throw new EvaluationError(`${found.dir}: ${(err as Error).message}`);
  }
  if (gWeights.length !== model.g.size) {
    throw new EvaluationError(
      `${found.dir}: G has ${gWeights.length} weights, its config's ${cfg.model.name} needs ${model.g.size}`,
    );
  }
  const kidSubsets = opts.kidSubsets ?? 0;
  let own: Pick<EvalResult, "fd" | "kid" | "classifier"> = {};
  if (space) {
    const evaluation = await evaluateGenerator(model, gWeights, space, {
      n,
      seed,
      keepFeatures: kidSubsets > 0,
    });
    own = { fd: evaluation.fd, classifier: spaceName(space) };
    if (evaluation.features) {
      const r = kernelInceptionDistance(evaluation.features, await referenceFeatures(space), {
        subsets: kidSubsets,
        seed,
      });
      own.kid = { mean: r.kid, std: r.std, subsets: r.subsets, subsetSize: r.subsetSize };
    }
  }
  const inception = net
    ? await inceptionMetrics(net, model, gWeights, {
        n,
        seed,
        kidSubsets: kidSubsets || KID_DEFAULT_SUBSETS,
        log,
      })
    : undefined;
  net?.extractor.dispose();
  const { getBackend } = await import("@tensorflow/tfjs-core");
  return {
    checkpoint: found.dir,
    step: found.manifest.step,
    dataset,
    model: cfg.model.name,
    weights,
    n,
    seed,
    ...own,
    ...(inception ? { inception } : {}),
    backend: backend ?? getBackend(),
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
}

/** At most one Inception progress line per this many ms (agon eval --inception). */
const PROGRESS_EVERY_MS = 10_000;

/**
 * FID and KID on Inception-v3 features: G's n samples (the evaluation latents, chunk by
 * chunk, their statistics summed along the chunks' tree as evaluateGenerator does) against
 * the first n real images (the test split of mnist / fashion-mnist, else the run's dataset;
 * fewer when it has fewer). The FID is that of an evaluation during training with
 * eval.features inception and the same eval.n and eval.seed, bit for bit.
 */
async function inceptionMetrics(
  space: InceptionSpace,
  model: GanModel,
  gWeights: Float32Array,
  opts: { n: number; seed: number; kidSubsets: number; log: (line: string) => void },
): Promise<InceptionResult> {
  const t0 = performance.now();
  const { n, seed } = opts;
  const elapsed = () => `${Math.round((performance.now() - t0) / 1000)} s`;
  // Minutes on wasm: a line at most every PROGRESS_EVERY_MS, and one when the generated
  // side is done (the real images come next, inside the FID).
  let lastLine = t0;
  const generated = await evaluateGenerator(model, gWeights, space, {
    n,
    seed,
    keepFeatures: true,
    onProgress: (done) => {
      if (done === n) {
        opts.log(
          `inception: ${n}/${n} generated samples featurised, ${elapsed()}; next the real images`,
        );
      } else if (performance.now() - lastLine >= PROGRESS_EVERY_MS) {
        lastLine = performance.now();
        opts.log(`inception: ${done}/${n} generated samples featurised, ${elapsed()}`);
      }
    },
  });
  let real: Awaited<ReturnType<typeof referenceFeatures>>;
  try {
    lastLine = performance.now();
    real = await referenceFeatures(space, undefined, (done, total) => {
      if (done < total && performance.now() - lastLine >= PROGRESS_EVERY_MS) {
        lastLine = performance.now();
        opts.log(`inception: ${done}/${total} real images featurised, ${elapsed()}`);
      }
    });
  } catch (err) {
    if (err instanceof RangeError) throw new EvaluationError(err.message);
    throw err;
  }
  opts.log(`inception: ${real.n} real images featurised, ${elapsed()}`);
  const k = kernelInceptionDistance(generated.features!, real, {
    subsets: opts.kidSubsets,
    seed,
  });
  return {
    fid: generated.fd,
    kid: { mean: k.kid, std: k.std, subsets: k.subsets, subsetSize: k.subsetSize },
    referenceN: real.n,
    weights: space.path,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
}

/** One line: the own-feature FD (and KID), the Inception metrics, then what was measured. */
export function formatEval(r: EvalResult): string {
  const kid = (k: { mean: number; std: number }) =>
    `kid ${k.mean.toExponential(3)} ± ${k.std.toExponential(2)}`;
  const metrics: string[] = [];
  if (r.fd !== undefined) metrics.push(`fd ${r.fd.toFixed(3)}`);
  if (r.kid) metrics.push(kid(r.kid));
  if (r.inception)
    metrics.push(
      `inception fid ${r.inception.fid.toFixed(3)}`,
      `${kid(r.inception.kid)} (against ${r.inception.referenceN} real, ${r.inception.seconds} s)`,
    );
  const classifier = r.classifier ? `, classifier ${r.classifier}` : "";
  return `${metrics.join(", ")} (${r.dataset}, ${r.model} step ${r.step}, ${r.weights} weights, n ${r.n}, seed ${r.seed}${classifier}, ${r.backend}, ${r.seconds} s) ${r.checkpoint}`;
}
