// The small classifier whose hidden features the Fréchet distance (shared/fid.ts) compares:
// an MLP 784 → 128 → 64 (features) → 10 trained on the shipped MNIST / Fashion-MNIST train
// split with a fixed recipe. Its weights are committed under shared/assets/ and regenerated
// with `npx tsx shared/features/classifier.ts train [mnist|fashion-mnist]`.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
// tfjs-core registers no gradient functions; the umbrella package's Node build does.
import "@tensorflow/tfjs";
import { canonicalJson } from "../config.js";
import { type Dataset, loadDataset } from "../data/index.js";
import { sha256, weightsHash } from "../hash.js";
import { hashSeed, Rng } from "../rng.js";

export type FidDataset = "mnist" | "fashion-mnist";
export const FID_DATASETS: readonly FidDataset[] = ["mnist", "fashion-mnist"];

/**
 * Everything that decides the trained weights. Changing any field changes the recipe hash,
 * which makes the committed weights stale (loading them fails until they are regenerated),
 * and makes Fréchet distances incomparable with those measured before.
 */
export const CLASSIFIER_RECIPE = {
  version: 1,
  widths: [784, 128, 64, 10],
  /** Index of the hidden layer whose ReLU output is the feature vector (0-based). */
  featureLayer: 1,
  epochs: 10,
  batch: 128,
  /** The learning rate of epoch e is lr · lrDecay^e. */
  optimizer: { name: "adam", lr: 0.001, lrDecay: 0.75, beta1: 0.9, beta2: 0.999, eps: 1e-7 },
  seed: 20_240_601,
  backend: "wasm",
} as const;

export const FEATURE_DIM = CLASSIFIER_RECIPE.widths[CLASSIFIER_RECIPE.featureLayer + 1];

export const ASSET_DIR = join(fileURLToPath(new URL("..", import.meta.url)), "assets");
const MANIFEST = "fid-classifier.json";

export class ClassifierError extends Error {
  override name = "ClassifierError";
}

export function recipeHash(): string {
  return sha256(new TextEncoder().encode(canonicalJson(CLASSIFIER_RECIPE))).slice(0, 16);
}

export interface ClassifierManifest {
  recipe: typeof CLASSIFIER_RECIPE;
  recipeHash: string;
  classifiers: Record<
    string,
    { file: string; sha256: string; testAccuracy: number; trainSeconds: number; backend: string }
  >;
}

/**
 * The recipe's layer widths for `inputSize` input values and `classes` classes: the
 * shipped MNIST / Fashion-MNIST ones are 784 → 128 → 64 → 10; a classifier fitted to a
 * prepared dataset (shared/features/fitted.ts) has its sample size in and its classes out.
 */
export function classifierWidths(inputSize: number, classes: number): readonly number[] {
  const w = CLASSIFIER_RECIPE.widths;
  return [inputSize, ...w.slice(1, -1), classes];
}

/** Number of floats in the flat weight array (kernels [in, out] then biases, layer by layer). */
export function classifierSize(w: readonly number[] = CLASSIFIER_RECIPE.widths): number {
  let n = 0;
  for (let i = 0; i + 1 < w.length; i++) n += w[i] * w[i + 1] + w[i + 1];
  return n;
}

function datasetIndex(dataset: FidDataset): number {
  return FID_DATASETS.indexOf(dataset);
}

/** Glorot-uniform kernels and zero biases from the recipe seed (plain JS, backend-independent). */
export function initClassifier(dataset: FidDataset): Float32Array {
  return initWeights(CLASSIFIER_RECIPE.widths, datasetIndex(dataset));
}

/** Seed stream of a fitted classifier (after the shipped datasets' 0 and 1). */
export const FITTED_SEED_INDEX = 2;

function initWeights(w: readonly number[], seedIndex: number): Float32Array {
  const rng = new Rng(hashSeed(CLASSIFIER_RECIPE.seed, seedIndex, 0));
  const flat = new Float32Array(classifierSize(w));
  let offset = 0;
  for (let i = 0; i + 1 < w.length; i++) {
    const limit = Math.sqrt(6 / (w[i] + w[i + 1]));
    for (let j = 0; j < w[i] * w[i + 1]; j++) flat[offset + j] = (2 * rng.nextFloat() - 1) * limit;
    offset += w[i] * w[i + 1] + w[i + 1];
  }
  return flat;
}

function splitWeights(
  flat: Float32Array,
  w: readonly number[],
): { kernel: tf.Tensor2D; bias: tf.Tensor1D }[] {
  const layers: { kernel: tf.Tensor2D; bias: tf.Tensor1D }[] = [];
  let offset = 0;
  for (let i = 0; i + 1 < w.length; i++) {
    const k = w[i] * w[i + 1];
    layers.push({
      kernel: tf.tensor2d(flat.subarray(offset, offset + k), [w[i], w[i + 1]]),
      bias: tf.tensor1d(flat.subarray(offset + k, offset + k + w[i + 1])),
    });
    offset += k + w[i + 1];
  }
  return layers;
}

/** Logits and features of a batch [b, 784]; tensors are created in the caller's tidy. */
function forward(layers: { kernel: tf.Tensor; bias: tf.Tensor }[], x: tf.Tensor) {
  let h = x;
  let features = x;
  for (let i = 0; i < layers.length; i++) {
    h = tf.add(tf.matMul(h, layers[i].kernel), layers[i].bias);
    if (i < layers.length - 1) h = tf.relu(h);
    if (i === CLASSIFIER_RECIPE.featureLayer) features = h;
  }
  return { logits: h, features };
}

/** A loaded classifier: features and predictions on whatever tfjs backend is active. */
export class Classifier {
  /** Made on first use, on the backend active then (a classifier may be loaded before the backend is chosen). */
  private tensors: { kernel: tf.Tensor2D; bias: tf.Tensor1D }[] | null = null;

  /** `widths`: the layer widths (default the shipped 784 → 128 → 64 → 10; see classifierWidths). */
  constructor(
    readonly dataset: string,
    readonly weights: Float32Array,
    readonly widths: readonly number[] = CLASSIFIER_RECIPE.widths,
  ) {
    if (weights.length !== classifierSize(widths)) {
      throw new ClassifierError(
        `${dataset} classifier: expected ${classifierSize(widths)} weights, got ${weights.length}`,
      );
    }
  }

  private get layers(): { kernel: tf.Tensor2D; bias: tf.Tensor1D }[] {
    // Kept: the first use may be inside a tf.tidy.
    this.tensors ??= splitWeights(this.weights, this.widths).map((l) => ({
      kernel: tf.keep(l.kernel),
      bias: tf.keep(l.bias),
    }));
    return this.tensors;
  }

  /** Reads back asynchronously, which every backend supports (webgpu has no synchronous read in Node). */
  private async run(
    images: Float32Array,
    n: number,
    batch: number,
    take: "features" | "argmax",
  ): Promise<Float32Array> {
    const inDim = this.widths[0];
    if (images.length < n * inDim) {
      throw new RangeError(`expected ${n}×${inDim} pixel values, got ${images.length}`);
    }
    const dim = take === "features" ? FEATURE_DIM : 1;
    const out = new Float32Array(n * dim);
    for (let start = 0; start < n; start += batch) {
      const b = Math.min(batch, n - start);
      const t = tf.tidy(() => {
        const x = tf.tensor2d(images.subarray(start * inDim, (start + b) * inDim), [b, inDim]);
        const { logits, features } = forward(this.layers, x);
        return take === "features" ? features : tf.cast(tf.argMax(logits, 1), "float32");
      });
      out.set((await t.data()) as Float32Array, start * dim);
      t.dispose();
    }
    return out;
  }

  /** Feature vectors [n, FEATURE_DIM] (row-major) of n images (widths[0] values each, in [-1, 1]). */
  features(images: Float32Array, n: number, batch = 1000): Promise<Float32Array> {
    return this.run(images, n, batch, "features");
  }

  /** The predicted class of each of n images (as floats). */
  predict(images: Float32Array, n: number, batch = 1000): Promise<Float32Array> {
    return this.run(images, n, batch, "argmax");
  }

  /** Share of the images whose predicted class equals the label. */
  async accuracy(images: Float32Array, labels: Uint8Array, n: number): Promise<number> {
    const pred = await this.run(images, n, 1000, "argmax");
    let hits = 0;
    for (let i = 0; i < n; i++) if (pred[i] === labels[i]) hits++;
    return hits / n;
  }

  dispose(): void {
    for (const l of this.tensors ?? []) {
      l.kernel.dispose();
      l.bias.dispose();
    }
    this.tensors = null;
  }
}

const loaded = new Map<FidDataset, Classifier>();

function readManifest(dir: string): ClassifierManifest {
  try {
    return JSON.parse(readFileSync(join(dir, MANIFEST), "utf8")) as ClassifierManifest;
  } catch (err) {
    throw new ClassifierError(
      `${join(dir, MANIFEST)}: unreadable (${(err as Error).message.split("\n")[0]})`,
    );
  }
}

/**
 * The committed classifier for a dataset (cached per process). Fails if the weights do not
 * match the manifest or the manifest was written by another recipe.
 */
export function loadClassifier(dataset: FidDataset, dir = ASSET_DIR): Classifier {
  const cached = dir === ASSET_DIR ? loaded.get(dataset) : undefined;
  if (cached) return cached;
  const regen = `regenerate with \`npx tsx shared/features/classifier.ts train ${dataset}\``;
  const manifest = readManifest(dir);
  if (manifest.recipeHash !== recipeHash()) {
    throw new ClassifierError(
      `${join(dir, MANIFEST)} was trained with recipe ${manifest.recipeHash}, the code has ${recipeHash()}; ${regen}`,
    );
  }
  const entry = manifest.classifiers?.[dataset];
  if (!entry)
    throw new ClassifierError(`${join(dir, MANIFEST)} has no ${dataset} classifier; ${regen}`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(join(dir, entry.file));
  } catch {
    throw new ClassifierError(`missing ${join(dir, entry.file)}; ${regen}`);
  }
  if (sha256(bytes) !== entry.sha256) {
    throw new ClassifierError(`${join(dir, entry.file)} fails its checksum; ${regen}`);
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  const clf = new Classifier(dataset, new Float32Array(copy.buffer));
  if (dir === ASSET_DIR) loaded.set(dataset, clf);
  return clf;
}

/** Fisher–Yates permutation of [0, n) for one epoch. */
function permutation(n: number, seedIndex: number, epoch: number): Uint32Array {
  const rng = new Rng(hashSeed(CLASSIFIER_RECIPE.seed, seedIndex, 1, epoch));
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/**
 * Trains the classifier by the recipe on the dataset's train split with the active tfjs
 * backend: seeded init, a seeded permutation per epoch, Adam on softmax cross-entropy.
 * Deterministic on a given backend; the committed weights come from the recipe's backend.
 */
export async function trainClassifier(
  dataset: FidDataset,
  log: (line: string) => void = () => {},
  train?: Dataset,
): Promise<Float32Array> {
  const data = train ?? (await loadDataset({ name: dataset, split: "train" }));
  const labels = data.labels;
  if (!labels) throw new ClassifierError(`${dataset}: the train split has no labels`);
  const inDim = CLASSIFIER_RECIPE.widths[0];
  return trainByRecipe(
    { name: dataset, widths: CLASSIFIER_RECIPE.widths, seedIndex: datasetIndex(dataset) },
    data.count,
    (indices, x, y) => {
      for (let i = 0; i < indices.length; i++) {
        const idx = indices[i];
        x.set(data.data.subarray(idx * inDim, (idx + 1) * inDim), i * inDim);
        y[i] = labels[idx];
      }
    },
    log,
  );
}

/**
 * The recipe's training loop on any labelled rows, with the active tfjs backend: seeded
 * init (stream `seedIndex`), a seeded permutation of [0, count) per epoch, Adam on softmax
 * cross-entropy. `batchOf(indices, x, y)` fills x (indices.length × widths[0] values in
 * [-1, 1]) and y (class indices < widths.at(-1)) with those rows. Deterministic on a backend.
 */
export async function trainByRecipe(
  spec: { name: string; widths: readonly number[]; seedIndex: number },
  count: number,
  batchOf: (indices: Uint32Array, x: Float32Array, y: Int32Array) => void,
  log: (line: string) => void = () => {},
): Promise<Float32Array> {
  const r = CLASSIFIER_RECIPE;
  const { widths } = spec;
  const inDim = widths[0];
  const classes = widths.at(-1)!;
  const vars = splitWeights(initWeights(widths, spec.seedIndex), widths).map((l) => ({
    kernel: tf.variable(l.kernel),
    bias: tf.variable(l.bias),
  }));
  const opt = tf.train.adam(r.optimizer.lr, r.optimizer.beta1, r.optimizer.beta2, r.optimizer.eps);
  const batch = Math.min(r.batch, count);
  const xBuf = new Float32Array(batch * inDim);
  const yBuf = new Int32Array(batch);
  const steps = Math.floor(count / batch);
  for (let epoch = 0; epoch < r.epochs; epoch++) {
    const perm = permutation(count, spec.seedIndex, epoch);
    // tfjs reads the rate on every update; the field is not in its public typings.
    (opt as unknown as { learningRate: number }).learningRate =
      r.optimizer.lr * r.optimizer.lrDecay ** epoch;
    let lastLoss = 0;
    for (let s = 0; s < steps; s++) {
      batchOf(perm.subarray(s * batch, (s + 1) * batch), xBuf, yBuf);
      const loss = tf.tidy(() => {
        const x = tf.tensor2d(xBuf, [batch, inDim]);
        const y = tf.oneHot(tf.tensor1d(yBuf, "int32"), classes);
        const value = () => tf.losses.softmaxCrossEntropy(y, forward(vars, x).logits) as tf.Scalar;
        return opt.minimize(value, true) as tf.Scalar;
      });
      if (s === steps - 1) lastLoss = (await loss.data())[0];
      loss.dispose();
    }
    log(
      `${spec.name} classifier: epoch ${epoch + 1}/${r.epochs}, last batch loss ${lastLoss.toFixed(4)}`,
    );
  }
  const flat = new Float32Array(classifierSize(widths));
  let offset = 0;
  for (const l of vars) {
    for (const v of [l.kernel, l.bias]) {
      const d = v.dataSync() as Float32Array;
      flat.set(d, offset);
      offset += d.length;
      v.dispose();
    }
  }
  opt.dispose();
  return flat;
}

/** Trains by the recipe and writes the weights and the manifest entry into `dir`. */
export async function regenerate(
  dataset: FidDataset,
  dir = ASSET_DIR,
  log: (line: string) => void = console.error,
): Promise<ClassifierManifest["classifiers"][string]> {
  const { initBackend } = await import("../backend.js");
  const backend = await initBackend(CLASSIFIER_RECIPE.backend);
  const t0 = performance.now();
  const weights = await trainClassifier(dataset, log);
  const trainSeconds = Math.round((performance.now() - t0) / 100) / 10;
  const test = await loadDataset({ name: dataset, split: "test" });
  const clf = new Classifier(dataset, weights);
  const testAccuracy =
    Math.round((await clf.accuracy(test.data, test.labels!, test.count)) * 1e4) / 1e4;
  clf.dispose();
  const file = `fid-${dataset}.f32`;
  writeFileSync(join(dir, file), new Uint8Array(weights.buffer));
  let manifest: ClassifierManifest;
  try {
    manifest = readManifest(dir);
    if (manifest.recipeHash !== recipeHash()) throw new Error("stale");
  } catch {
    manifest = { recipe: CLASSIFIER_RECIPE, recipeHash: recipeHash(), classifiers: {} };
  }
  const entry = { file, sha256: weightsHash(weights), testAccuracy, trainSeconds, backend };
  manifest.classifiers[dataset] = entry;
  // Number arrays on one line, as biome formats them.
  const json = JSON.stringify(manifest, null, 2).replace(/\[[\d\s,.e+-]*\]/g, (m) =>
    JSON.stringify(JSON.parse(m)).replaceAll(",", ", "),
  );
  writeFileSync(join(dir, MANIFEST), `${json}\n`);
  loaded.delete(dataset);
  log(
    `${dataset} classifier: test accuracy ${(testAccuracy * 100).toFixed(2)}%, trained in ${trainSeconds} s on ${backend}, sha256 ${entry.sha256}`,
  );
  return entry;
}

// `npx tsx shared/features/classifier.ts train [dataset...]` regenerates the committed weights;
// `... check [dataset...]` retrains in memory and says whether the result matches them bit for bit.
// Run as a script (not when bundled into another entry point, where import.meta.url is the bundle's).
if (
  process.argv[1] &&
  fileURLToPath(import.meta.url) === process.argv[1] &&
  /features\/classifier\.[jt]s$/.test(process.argv[1])
) {
  const [cmd, ...rest] = process.argv.slice(2);
  const names = (rest.length > 0 ? rest : FID_DATASETS) as FidDataset[];
  for (const n of names) {
    if (!FID_DATASETS.includes(n))
      throw new Error(`unknown dataset ${n}; use mnist or fashion-mnist`);
  }
  if (cmd === "train") {
    for (const n of names) await regenerate(n);
  } else if (cmd === "check") {
    const { initBackend } = await import("../backend.js");
    await initBackend(CLASSIFIER_RECIPE.backend);
    let ok = true;
    for (const n of names) {
      const expected = readManifest(ASSET_DIR).classifiers[n]?.sha256;
      const got = weightsHash(await trainClassifier(n, console.error));
      console.log(
        `${n}: ${got === expected ? "reproduced" : `DIFFERS (got ${got}, committed ${expected})`}`,
      );
      ok &&= got === expected;
    }
    process.exitCode = ok ? 0 : 1;
  } else {
    console.error(
      "usage: npx tsx shared/features/classifier.ts train|check [mnist] [fashion-mnist]",
    );
    process.exitCode = 2;
  }
}
