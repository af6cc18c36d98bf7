// Evaluating a generator in fixed chunks: chunk c holds samples [c·EVAL_CHUNK, …) of the
// fixed evaluation latents, is generated and featurised on its own, and reduces to float64
// sufficient statistics; the chunks' statistics are added along the reduction tree over
// the chunks (shared/tree.ts), as gradients are over shards. So `agon eval`, `agon train`'s
// evaluation and the workers' evaluation microtasks (any split of the chunks over any
// number of processes) give the same bits.
import * as tf from "@tensorflow/tfjs-core";
import type { RunConfig } from "./config.js";
import { openDataset, PreparedDataset } from "./data/index.js";
import {
  CLASSIFIER_RECIPE,
  FID_DATASETS,
  type FidDataset,
  recipeHash,
} from "./features/classifier.js";
import { type FittedFeatures, loadFittedFeatures } from "./features/fitted.js";
import { INCEPTION_DIM } from "./features/inception.js";
import { type FeatureExtractor, loadFeatures } from "./features/index.js";
import {
  addSums,
  FEATURE_DIM,
  type FeatureMatrix,
  type FeatureSums,
  fdFromTraceRoot,
  featureSums,
  frechetDistanceFromStats,
  type GaussianStats,
  gaussianStats,
  realFeatures,
  realStats,
  statsFromSums,
  traceSqrtProductFromRows,
} from "./fid.js";
import { fakeClasses, latentNoise } from "./microtask.js";
import { type GanModel, toTensors } from "./models/index.js";
import { hashSeed, SeedDomain } from "./rng.js";
import { datasetSpec } from "./schedule.js";
import { completeTreeWith, reduceTree, type TreeNode, type TreePart } from "./tree.js";

/** Samples per evaluation chunk in the own (classifier) features (the unit of work; also the forward-pass batch). */
export const EVAL_CHUNK = 500;

/**
 * Samples per evaluation chunk in Inception-v3 features: at ~0.2–1 s per 299×299 image on
 * wasm, a chunk of 16 is a few seconds of work, inside a first microtask deadline (30 s).
 */
export const INCEPTION_EVAL_CHUNK = 16;

/** The chunks of an evaluation of n samples, `size` each: [start, start + count), in order. */
export function evalChunks(n: number, size = EVAL_CHUNK): { start: number; count: number }[] {
  const out: { start: number; count: number }[] = [];
  for (let start = 0; start < n; start += size)
    out.push({ start, count: Math.min(size, n - start) });
  return out;
}

/** Whether the dataset has a shipped feature classifier (mnist, fashion-mnist). */
export function hasFeatures(dataset: string): dataset is FidDataset {
  return (FID_DATASETS as readonly string[]).includes(dataset);
}

/**
 * Inception-v3 features (the standard FID): the loaded network, its weights file and that
 * file's sha256, and what the reference is: the first min(n, count) real images of the
 * run's dataset (the test split of mnist / fashion-mnist), featurised once (cached here).
 */
export interface InceptionSpace {
  kind: "inception";
  extractor: FeatureExtractor;
  path: string;
  sha256: string;
  cfg: RunConfig;
  n: number;
}

/** Inception references by weights, dataset and n: computed once per process. */
const inceptionReferences = new Map<
  string,
  Promise<{ rows: FeatureMatrix; stats: GaussianStats }>
>();

/**
 * The features an evaluation measures in: a shipped classifier (by dataset name, compared
 * with the test split), the features fitted to a prepared dataset (compared with its
 * rows; `agon eval fit-features`), or Inception-v3's (compared with real images).
 */
export type FeatureSpace = FidDataset | FittedFeatures | InceptionSpace;

/**
 * The own (classifier) feature space of a run config's dataset: mnist and fashion-mnist
 * their shipped classifiers, a prepared dataset its fitted features (read from `dataPath`,
 * default the config's path, checked against the config's fingerprint when it has one);
 * null for datasets without features. Throws ClassifierError when a prepared dataset has none.
 */
export function classifierSpaceOf(cfg: RunConfig, dataPath?: string): FeatureSpace | null {
  const d = cfg.dataset;
  if (hasFeatures(d.name)) return d.name;
  if (d.name === "prepared") return loadFittedFeatures(dataPath ?? d.path, d.fingerprint);
  return null;
}

const inceptionSpaces = new Map<string, FeatureExtractor>();

/**
 * Inception-v3 features from weights file `path` (loaded once per process and file), with
 * the reference of n real images of cfg's dataset. With `sha256` the file must hash to it.
 * Throws InceptionWeightsError (one line: unreadable, not Inception weights, other file).
 */
export function inceptionSpace(
  cfg: RunConfig,
  path: string,
  n: number,
  sha256?: string,
): InceptionSpace {
  let loaded = inceptionSpaces.get(path);
  if (!loaded || (sha256 !== undefined && loaded.sha256 !== sha256)) {
    loaded = loadFeatures({ name: "inception", path, sha256 });
    inceptionSpaces.set(path, loaded);
  }
  return { kind: "inception", extractor: loaded, path, sha256: loaded.sha256 ?? "", cfg, n };
}

/**
 * The feature space of a run's evaluation during training (eval section): Inception-v3's
 * with `eval.features: inception` (weights at `inception.path`, default eval.inception,
 * checked against `inception.sha256` when given), else the own space (classifierSpaceOf).
 * Throws ClassifierError or InceptionWeightsError.
 */
export function featureSpaceOf(
  cfg: RunConfig,
  opts: { dataPath?: string; inception?: { path?: string; sha256?: string } } = {},
): FeatureSpace | null {
  const e = cfg.eval;
  if (e?.features === "inception") {
    const path = opts.inception?.path ?? e.inception;
    if (path === undefined) throw new RangeError("eval.features inception needs eval.inception");
    return inceptionSpace(cfg, path, e.n, opts.inception?.sha256);
  }
  return classifierSpaceOf(cfg, opts.dataPath);
}

function isInception(space: FeatureSpace): space is InceptionSpace {
  return typeof space === "object" && "kind" in space && space.kind === "inception";
}

function extractorOf(space: FeatureSpace): FeatureExtractor {
  if (isInception(space)) return space.extractor;
  return typeof space === "string"
    ? loadFeatures({ name: "classifier", dataset: space })
    : loadFeatures({
        name: "fitted",
        dir: space.dir,
        fingerprint: space.manifest.datasetFingerprint,
      });
}

/** Features per sample in a space: 64 (classifiers) or 2048 (Inception-v3). */
export function spaceDim(space: FeatureSpace): number {
  return isInception(space) ? INCEPTION_DIM : FEATURE_DIM;
}

/**
 * The metric an evaluation in a space reports: `fid` on Inception-v3 features (the standard
 * FID), `fd` (a Fréchet distance comparable only within Agon) on the project's own.
 */
export function metricOf(space: FeatureSpace): "fid" | "fd" {
  return isInception(space) ? "fid" : "fd";
}

/** The metric a run config's evaluation reports (see metricOf), without loading anything. */
export function metricOfConfig(cfg: RunConfig): "fid" | "fd" {
  return cfg.eval?.features === "inception" ? "fid" : "fd";
}

/** Samples per evaluation chunk in a space: INCEPTION_EVAL_CHUNK for Inception, else EVAL_CHUNK. */
export function chunkSizeOf(space: FeatureSpace): number {
  return isInception(space) ? INCEPTION_EVAL_CHUNK : EVAL_CHUNK;
}

/** Samples per evaluation chunk of a run config's evaluation (see chunkSizeOf), without loading anything. */
export function chunkSizeOfConfig(cfg: RunConfig): number {
  return cfg.eval?.features === "inception" ? INCEPTION_EVAL_CHUNK : EVAL_CHUNK;
}

/** Features per sample of a run config's evaluation (see spaceDim), without loading anything. */
export function featureDimOfConfig(cfg: RunConfig): number {
  return cfg.eval?.features === "inception" ? INCEPTION_DIM : FEATURE_DIM;
}

/**
 * A feature space in a few words, for results and logs: `mlp-v1-<recipe hash>` and what it
 * was fitted to, or `inception-v3 <weights sha256 prefix>`.
 */
export function spaceName(space: FeatureSpace): string {
  if (isInception(space)) return `inception-v3 ${space.sha256.slice(0, 16)}`;
  const base = `mlp-v${CLASSIFIER_RECIPE.version}-${recipeHash()}`;
  return typeof space === "string"
    ? base
    : `${base} fitted to ${space.manifest.datasetFingerprint.slice(0, 16)}`;
}

/**
 * Inception features of the reference: the first min(n, count) images of the run's dataset
 * (the test split for mnist and fashion-mnist), featurised in batches of EVAL_CHUNK; cached
 * per process. Rejects with RangeError when the dataset has fewer than 2 images, and with
 * `signal.reason` (AbortError) once `signal` is aborted (nothing is cached then).
 * `onProgress(done, total)` hears after each batch how many real images are featurised
 * (only the caller that computes them; a cached reference reports nothing).
 */
function inceptionReference(
  space: InceptionSpace,
  signal?: AbortSignal,
  onProgress?: (done: number, total: number) => void,
): Promise<{ rows: FeatureMatrix; stats: GaussianStats }> {
  const spec = datasetSpec(space.cfg);
  const key = `${space.sha256}|${JSON.stringify(spec)}|${space.n}`;
  const cached = inceptionReferences.get(key);
  if (cached) return cached;
  const computed = (async () => {
    const source = await openDataset(
      spec.name === "mnist" || spec.name === "fashion-mnist" ? { ...spec, split: "test" } : spec,
    );
    const n = Math.min(space.n, source.count);
    if (n < 2) throw new RangeError(`the dataset has ${source.count} images; FID needs 2`);
    const data = new Float32Array(n * INCEPTION_DIM);
    const x = new Float32Array(EVAL_CHUNK * source.sampleSize);
    for (let start = 0; start < n; start += EVAL_CHUNK) {
      const b = Math.min(EVAL_CHUNK, n - start);
      const batch = x.subarray(0, b * source.sampleSize);
      source.gather(
        Int32Array.from({ length: b }, (_, i) => start + i),
        batch,
      );
      data.set(
        await space.extractor.extract(batch, b, source.sampleShape, signal),
        start * INCEPTION_DIM,
      );
      onProgress?.(start + b, n);
    }
    const rows = { n, dim: INCEPTION_DIM, data };
    return { rows, stats: gaussianStats(rows) };
  })();
  inceptionReferences.set(key, computed);
  // A failure is not kept: the next evaluation tries again.
  computed.catch(() => inceptionReferences.delete(key));
  return computed;
}

/**
 * The reference statistics: the test split's (shipped), the prepared dataset's rows'
 * (fitted), the real images' (Inception; `signal` stops that computation with an AbortError).
 */
export async function referenceStats(
  space: FeatureSpace,
  signal?: AbortSignal,
): Promise<GaussianStats> {
  if (isInception(space)) return (await inceptionReference(space, signal)).stats;
  return typeof space === "string" ? realStats(space) : space.reference;
}

/**
 * The reference feature rows (for KID): the test split's, every row of the prepared dataset, or
 * the real images' (Inception: `signal` and `onProgress` as for inceptionReference).
 */
export async function referenceFeatures(
  space: FeatureSpace,
  signal?: AbortSignal,
  onProgress?: (done: number, total: number) => void,
): Promise<FeatureMatrix> {
  if (isInception(space)) return (await inceptionReference(space, signal, onProgress)).rows;
  if (typeof space === "string") return realFeatures(space);
  const data = PreparedDataset.open(space.dir, { cacheMB: 256 });
  const out = new Float32Array(data.count * FEATURE_DIM);
  const batch = EVAL_CHUNK;
  const x = new Float32Array(batch * data.sampleSize);
  for (let start = 0; start < data.count; start += batch) {
    const b = Math.min(batch, data.count - start);
    data.gather(
      Int32Array.from({ length: b }, (_, i) => start + i),
      x.subarray(0, b * data.sampleSize),
    );
    out.set(
      await space.classifier.features(x.subarray(0, b * data.sampleSize), b, b),
      start * FEATURE_DIM,
    );
  }
  return { n: data.count, dim: FEATURE_DIM, data: out };
}

/**
 * Features of evaluation chunk `chunk` of n: G's samples for latents [start, start + count)
 * of the stream `latentNoise(hashSeed(seed, sampleNoise), n, latentDim)` (the same latents
 * `generateSamples(model, g, seed, n)` uses), through the space's feature extractor, on the
 * active tfjs backend. A conditional G makes classes [start, start + count) of the
 * uniform stream `fakeClasses(seed, n, classes)`. Returns count × spaceDim(space) float32 rows.
 * Inception features stop with `signal.reason` (AbortError) once `signal` is aborted.
 */
export async function chunkFeatures(
  model: GanModel,
  gWeights: Float32Array,
  space: FeatureSpace,
  seed: number,
  n: number,
  chunk: number,
  signal?: AbortSignal,
): Promise<FeatureMatrix> {
  const { images, count } = await chunkImages(model, gWeights, seed, n, chunk, chunkSizeOf(space));
  const extractor = extractorOf(space);
  const data = await extractor.extract(images, count, model.sampleShape, signal);
  return { n: count, dim: extractor.dim, data };
}

/**
 * G's samples of evaluation chunk `chunk` of n in chunks of `size` (the latents and classes
 * chunkFeatures describes): `count` samples, flat, in G's output format. Throws RangeError
 * for a chunk out of range.
 */
export async function chunkImages(
  model: GanModel,
  gWeights: Float32Array,
  seed: number,
  n: number,
  chunk: number,
  size = EVAL_CHUNK,
): Promise<{ images: Float32Array; count: number }> {
  const chunks = evalChunks(n, size);
  if (!Number.isSafeInteger(chunk) || chunk < 0 || chunk >= chunks.length)
    throw new RangeError(`chunk ${chunk} out of range: n ${n} has ${chunks.length} chunks`);
  const { start, count } = chunks[chunk];
  const ld = model.latentDim;
  // The stream's prefix up to this chunk's end; the rows before it are dropped.
  const z = latentNoise(hashSeed(seed, SeedDomain.sampleNoise), start + count, ld).subarray(
    start * ld,
  );
  const y =
    model.classes > 0 ? fakeClasses(seed, start + count, model.classes).subarray(start) : null;
  const out = tf.tidy(() =>
    model.g.apply(toTensors(model.g, gWeights), tf.tensor2d(z, [count, ld]), {
      training: false,
      labels: y ? tf.tensor1d(y, "int32") : undefined,
    }),
  );
  const images = (await out.data()) as Float32Array;
  out.dispose();
  return { images, count };
}

/** The float64 sufficient statistics of one evaluation chunk (see chunkFeatures). */
export async function chunkSums(
  model: GanModel,
  gWeights: Float32Array,
  space: FeatureSpace,
  seed: number,
  n: number,
  chunk: number,
  signal?: AbortSignal,
): Promise<FeatureSums> {
  return featureSums(await chunkFeatures(model, gWeights, space, seed, n, chunk, signal));
}

/**
 * The statistics of the evaluation chunks [node.lo, node.hi) of n, a node of the tree
 * over the evaluation's chunks: each chunk's sums (chunkSums), added pairwise along the
 * tree. What an evaluation microtask computes and sends. Inception features stop with
 * `signal.reason` (AbortError) once `signal` is aborted.
 */
export function nodeSums(
  model: GanModel,
  gWeights: Float32Array,
  space: FeatureSpace,
  seed: number,
  n: number,
  node: TreeNode,
  beforeChunk: () => Promise<void> = async () => {},
  signal?: AbortSignal,
): Promise<FeatureSums> {
  return reduceTree(
    node,
    async (chunk) => {
      await beforeChunk();
      return chunkSums(model, gWeights, space, seed, n, chunk, signal);
    },
    addSums,
  );
}

/**
 * The whole evaluation's statistics from node values that tile the chunks (of `size`) of n
 * (any order): the tree completed above them, as the coordinator does with the workers'
 * results. Throws RangeError when they do not tile the chunks. Consumes the parts.
 */
export function combineParts(
  parts: ReadonlyArray<TreePart<FeatureSums>>,
  n: number,
  size = EVAL_CHUNK,
): FeatureSums {
  return completeTreeWith(parts, evalChunks(n, size).length, addSums);
}

/** Samples in the evaluation chunks [node.lo, node.hi) of n in chunks of `size`. */
export function nodeCount(n: number, node: TreeNode, size = EVAL_CHUNK): number {
  let count = 0;
  for (const c of evalChunks(n, size).slice(node.lo, node.hi)) count += c.count;
  return count;
}

/** Values of sums on the wire: Σx (dim) then Σxxᵀ (dim², row-major). */
export function sumsLength(dim: number): number {
  return dim + dim * dim;
}

/** The sums as one float64 array (Σx then Σxxᵀ), as an evaluation microtask sends them. */
export function sumsToArray(s: FeatureSums): Float64Array {
  const out = new Float64Array(sumsLength(s.dim));
  out.set(s.sum);
  out.set(s.outer, s.dim);
  return out;
}

/** The inverse of sumsToArray, for `n` samples; throws RangeError on a wrong length. */
export function sumsFromArray(values: Float64Array, n: number, dim: number): FeatureSums {
  if (values.length !== sumsLength(dim))
    throw new RangeError(`expected ${sumsLength(dim)} values for dim ${dim}, got ${values.length}`);
  return { dim, n, sum: values.slice(0, dim), outer: values.slice(dim) };
}

/**
 * The Fréchet distance of combined generator statistics to the space's reference. For
 * Inception with at most 2048 reference images (whose covariance is singular) the trace
 * term is taken exactly from the reference rows (traceSqrtProductFromRows), not from
 * pytorch-fid's 1e-6 offset; `agon eval --inception` computes it the same way, so the two
 * give the same bits.
 */
export async function fdFromSums(
  space: FeatureSpace,
  sums: FeatureSums,
  signal?: AbortSignal,
): Promise<number> {
  const stats = statsFromSums(sums);
  if (isInception(space)) {
    const ref = await inceptionReference(space, signal);
    if (ref.rows.n <= ref.rows.dim)
      return fdFromTraceRoot(
        stats,
        ref.stats,
        traceSqrtProductFromRows(ref.rows, ref.stats, stats),
      );
    return frechetDistanceFromStats(stats, ref.stats);
  }
  return frechetDistanceFromStats(stats, await referenceStats(space));
}

export interface GeneratorEvaluation {
  fd: number;
  n: number;
  /** The generated features (n × spaceDim), kept only when asked for (KID needs rows). */
  features?: FeatureMatrix;
}

/**
 * FD (FID in Inception's space) of G (flat weights) on n fixed-latent samples against the space's reference,
 * computed chunk by chunk in this process and summed along the chunks' tree. Throws RangeError for n < 2.
 * `onProgress(samples)`, when given, hears after each chunk how many generated samples are
 * featurised so far (n after the last; the reference follows, inside the FD).
 */
export async function evaluateGenerator(
  model: GanModel,
  gWeights: Float32Array,
  space: FeatureSpace,
  opts: {
    n: number;
    seed: number;
    keepFeatures?: boolean;
    signal?: AbortSignal;
    onProgress?: (samples: number) => void;
  },
): Promise<GeneratorEvaluation> {
  const { n, seed } = opts;
  if (!Number.isSafeInteger(n) || n < 2)
    throw new RangeError(`n must be an integer >= 2, got ${n}`);
  const dim = spaceDim(space);
  const rows = opts.keepFeatures ? new Float32Array(n * dim) : null;
  const chunks = evalChunks(n, chunkSizeOf(space));
  let featurised = 0;
  const sums = await reduceTree(
    { lo: 0, hi: chunks.length },
    async (c) => {
      const f = await chunkFeatures(model, gWeights, space, seed, n, c, opts.signal);
      rows?.set(f.data as Float32Array, chunks[c].start * dim);
      featurised += chunks[c].count;
      opts.onProgress?.(featurised);
      return featureSums(f);
    },
    addSums,
  );
  const fd = await fdFromSums(space, sums, opts.signal);
  return rows ? { fd, n, features: { n, dim, data: rows } } : { fd, n };
}
