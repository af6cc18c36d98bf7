// Evaluating a generator in fixed chunks: chunk c holds samples [c·EVAL_CHUNK, …) of the
// fixed evaluation latents, is generated and featurised on its own, and reduces to float64
// sufficient statistics; chunks are added in chunk order. So `agon eval`, the evaluation
// during training and any split of the chunks over processes give the same bits.
import * as tf from "@tensorflow/tfjs-core";
import {
  addSums,
  emptySums,
  FEATURE_DIM,
  type FeatureMatrix,
  type FeatureSums,
  type FidDataset,
  featureSums,
  frechetDistanceFromStats,
  realStats,
  statsFromSums,
} from "./fid.js";
import { FID_DATASETS, loadClassifier } from "./fid-classifier.js";
import { latentNoise } from "./microtask.js";
import { type GanModel, toTensors } from "./models/index.js";
import { hashSeed, SeedDomain } from "./rng.js";

/** Samples per evaluation chunk (the unit of work; also the forward-pass batch). */
export const EVAL_CHUNK = 500;

/** The chunks of an evaluation of n samples: [start, start + count) each, in order. */
export function evalChunks(n: number): { start: number; count: number }[] {
  const out: { start: number; count: number }[] = [];
  for (let start = 0; start < n; start += EVAL_CHUNK)
    out.push({ start, count: Math.min(EVAL_CHUNK, n - start) });
  return out;
}

/** Whether the dataset has a feature classifier, i.e. a Fréchet distance. */
export function hasFeatures(dataset: string): dataset is FidDataset {
  return (FID_DATASETS as readonly string[]).includes(dataset);
}

/**
 * Features of evaluation chunk `chunk` of n: G's samples for latents [start, start + count)
 * of the stream `latentNoise(hashSeed(seed, sampleNoise), n, latentDim)` (the same latents
 * `generateSamples(model, g, seed, n)` uses), through the dataset's classifier, on the
 * active tfjs backend. Returns count × FEATURE_DIM float32 rows.
 */
export async function chunkFeatures(
  model: GanModel,
  gWeights: Float32Array,
  dataset: FidDataset,
  seed: number,
  n: number,
  chunk: number,
): Promise<FeatureMatrix> {
  const chunks = evalChunks(n);
  if (!Number.isSafeInteger(chunk) || chunk < 0 || chunk >= chunks.length)
    throw new RangeError(`chunk ${chunk} out of range: n ${n} has ${chunks.length} chunks`);
  const { start, count } = chunks[chunk];
  const ld = model.latentDim;
  // The stream's prefix up to this chunk's end; the rows before it are dropped.
  const z = latentNoise(hashSeed(seed, SeedDomain.sampleNoise), start + count, ld).subarray(
    start * ld,
  );
  const out = tf.tidy(() =>
    model.g.apply(toTensors(model.g, gWeights), tf.tensor2d(z, [count, ld]), { training: false }),
  );
  const images = (await out.data()) as Float32Array;
  out.dispose();
  const data = await loadClassifier(dataset).features(images, count, count);
  return { n: count, dim: FEATURE_DIM, data };
}

/** The float64 sufficient statistics of one evaluation chunk (see chunkFeatures). */
export async function chunkSums(
  model: GanModel,
  gWeights: Float32Array,
  dataset: FidDataset,
  seed: number,
  n: number,
  chunk: number,
): Promise<FeatureSums> {
  return featureSums(await chunkFeatures(model, gWeights, dataset, seed, n, chunk));
}

/** Adds per-chunk sums in chunk order (whatever order they were computed in). */
export function combineChunks(sums: readonly FeatureSums[]): FeatureSums {
  const total = emptySums(sums[0]?.dim ?? FEATURE_DIM);
  for (const s of sums) addSums(total, s);
  return total;
}

/** The Fréchet distance of combined generator statistics to the dataset's test split. */
export async function fdFromSums(dataset: FidDataset, sums: FeatureSums): Promise<number> {
  return frechetDistanceFromStats(statsFromSums(sums), await realStats(dataset));
}

export interface GeneratorEvaluation {
  fd: number;
  n: number;
  /** The generated features (n × FEATURE_DIM), kept only when asked for (KID needs rows). */
  features?: FeatureMatrix;
}

/**
 * FD of G (flat weights) on n fixed-latent samples against the dataset's test split,
 * computed chunk by chunk in this process. Throws RangeError for n < 2.
 */
export async function evaluateGenerator(
  model: GanModel,
  gWeights: Float32Array,
  dataset: FidDataset,
  opts: { n: number; seed: number; keepFeatures?: boolean },
): Promise<GeneratorEvaluation> {
  const { n, seed } = opts;
  if (!Number.isSafeInteger(n) || n < 2)
    throw new RangeError(`n must be an integer >= 2, got ${n}`);
  const sums: FeatureSums[] = [];
  const rows = opts.keepFeatures ? new Float32Array(n * FEATURE_DIM) : null;
  const chunks = evalChunks(n);
  for (let c = 0; c < chunks.length; c++) {
    const f = await chunkFeatures(model, gWeights, dataset, seed, n, c);
    rows?.set(f.data as Float32Array, chunks[c].start * FEATURE_DIM);
    sums.push(featureSums(f));
  }
  const fd = await fdFromSums(dataset, combineChunks(sums));
  return rows ? { fd, n, features: { n, dim: FEATURE_DIM, data: rows } } : { fd, n };
}
