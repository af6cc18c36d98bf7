// Features for any labelled prepared dataset (`agon eval fit-features --dataset DIR`): the
// project's classifier recipe (shared/features/classifier.ts) trained on the dataset's rows,
// with its sample size in and its classes out, and the float64 statistics of the
// dataset's own features as the reference an evaluation compares against. Written into
// DIR/features/ beside the data, so every host that has the dataset has its features:
//   DIR/features/features.json   recipe, recipe hash, widths, dataset fingerprint, sha256s
//   DIR/features/classifier.f32  the weights (float32 little-endian, Classifier's layout)
//   DIR/features/reference.f64   Σx (dim) then Σxxᵀ (dim², row-major) over all rows, float64
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PreparedDataset } from "../data/index.js";
import { type GaussianStats, statsFromSums } from "../fid.js";
import { sha256 } from "../hash.js";
import {
  CLASSIFIER_RECIPE,
  Classifier,
  ClassifierError,
  classifierWidths,
  FEATURE_DIM,
  FITTED_SEED_INDEX,
  recipeHash,
  trainByRecipe,
} from "./classifier.js";

export const FEATURES_DIR = "features";
const MANIFEST = "features.json";
const WEIGHTS = "classifier.f32";
const REFERENCE = "reference.f64";
/** Rows per forward pass when the reference features are computed. */
const BATCH = 500;

/** DIR/features/features.json. */
export interface FittedManifest {
  format: "agon-fitted-features";
  recipe: typeof CLASSIFIER_RECIPE;
  recipeHash: string;
  /** The classifier's layer widths: sample size, the recipe's hidden widths, classes. */
  widths: number[];
  /** The prepared dataset's fingerprint the classifier was trained on. */
  datasetFingerprint: string;
  classes: string[];
  weights: { file: string; sha256: string };
  /** Statistics of the features of all `n` rows of the dataset. */
  reference: { file: string; sha256: string; n: number };
  /** Share of the dataset's rows the classifier labels right (there is no held-out split). */
  trainAccuracy: number;
  backend: string;
  trainSeconds: number;
}

/** A fitted feature space, loaded: its classifier and the dataset's reference statistics. */
export interface FittedFeatures {
  dir: string;
  manifest: FittedManifest;
  classifier: Classifier;
  reference: GaussianStats;
}

const loaded = new Map<string, FittedFeatures>();

/**
 * The fitted features of prepared dataset `dir` (cached per process). With `fingerprint`
 * (the run's), features fitted to another dataset are refused. Throws ClassifierError with
 * the fix (run `agon eval fit-features --dataset DIR`) when they are missing, damaged, or
 * were fitted with another recipe.
 */
export function loadFittedFeatures(dir: string, fingerprint?: string): FittedFeatures {
  const refit = `run \`agon eval fit-features --dataset ${dir}\``;
  const cached = loaded.get(dir);
  if (cached && (fingerprint === undefined || cached.manifest.datasetFingerprint === fingerprint))
    return cached;
  const base = join(dir, FEATURES_DIR);
  let manifest: FittedManifest;
  try {
    manifest = JSON.parse(readFileSync(join(base, MANIFEST), "utf8")) as FittedManifest;
  } catch {
    throw new ClassifierError(`${dir} has no fitted features (${join(base, MANIFEST)}); ${refit}`);
  }
  if (manifest.format !== "agon-fitted-features" || manifest.recipeHash !== recipeHash()) {
    throw new ClassifierError(
      `${join(base, MANIFEST)} was fitted with recipe ${String(manifest.recipeHash)}, the code has ${recipeHash()}; ${refit}`,
    );
  }
  if (fingerprint !== undefined && manifest.datasetFingerprint !== fingerprint) {
    throw new ClassifierError(
      `${join(base, MANIFEST)} was fitted to dataset ${String(manifest.datasetFingerprint).slice(0, 16)}…, the run's is ${fingerprint.slice(0, 16)}…; ${refit}`,
    );
  }
  const read = (entry: { file: string; sha256: string }): Uint8Array => {
    let bytes: Buffer;
    try {
      bytes = readFileSync(join(base, entry.file));
    } catch {
      throw new ClassifierError(`missing ${join(base, entry.file)}; ${refit}`);
    }
    if (sha256(bytes) !== entry.sha256)
      throw new ClassifierError(`${join(base, entry.file)} fails its checksum; ${refit}`);
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    return copy;
  };
  const weights = new Float32Array(read(manifest.weights).buffer);
  const ref = new Float64Array(read(manifest.reference).buffer);
  const dim = FEATURE_DIM;
  if (ref.length !== dim + dim * dim)
    throw new ClassifierError(`${join(base, REFERENCE)} has the wrong size; ${refit}`);
  const classifier = new Classifier(`prepared ${dir}`, weights, manifest.widths);
  const reference = statsFromSums({
    dim,
    n: manifest.reference.n,
    sum: ref.slice(0, dim),
    outer: ref.slice(dim),
  });
  const fitted = { dir, manifest, classifier, reference };
  loaded.set(dir, fitted);
  return fitted;
}

/**
 * Trains the classifier recipe on every row of the labelled prepared dataset `dir` with
 * the active tfjs backend (deterministic there), computes the reference statistics of
 * all rows' features, and writes DIR/features/ (replacing an older one atomically).
 * Throws ClassifierError for an unlabelled dataset or one with fewer than 2 classes;
 * DatasetError for a damaged one.
 */
export async function fitFeatures(
  dir: string,
  log: (line: string) => void = () => {},
): Promise<FittedManifest> {
  const data = PreparedDataset.open(dir, { cacheMB: 256 });
  if (data.classes.length < 2) {
    throw new ClassifierError(
      `${dir} is not labelled with 2 or more classes (${data.classes.length}); prepare it with --labels folders or a labels file (docs/DATA.md)`,
    );
  }
  const { initBackend } = await import("../backend.js");
  const backend = await initBackend(CLASSIFIER_RECIPE.backend);
  const widths = classifierWidths(data.sampleSize, data.classes.length);
  const t0 = performance.now();
  const labelsOf = new Int32Array(CLASSIFIER_RECIPE.batch);
  const weights = await trainByRecipe(
    { name: dir, widths, seedIndex: FITTED_SEED_INDEX },
    data.count,
    (indices, x, y) => {
      const idx = Int32Array.from(indices);
      const lab = labelsOf.subarray(0, idx.length);
      data.gather(idx, x.subarray(0, idx.length * data.sampleSize), lab);
      y.set(lab);
    },
    log,
  );
  const trainSeconds = Math.round((performance.now() - t0) / 100) / 10;
  const classifier = new Classifier(`prepared ${dir}`, weights, widths);
  // The reference: every row's features, summed in row order in float64; and the accuracy.
  const dim = FEATURE_DIM;
  const sum = new Float64Array(dim);
  const outer = new Float64Array(dim * dim);
  let hits = 0;
  const x = new Float32Array(BATCH * data.sampleSize);
  const labels = new Int32Array(BATCH);
  for (let start = 0; start < data.count; start += BATCH) {
    const b = Math.min(BATCH, data.count - start);
    const idx = Int32Array.from({ length: b }, (_, i) => start + i);
    data.gather(idx, x.subarray(0, b * data.sampleSize), labels.subarray(0, b));
    const images = x.subarray(0, b * data.sampleSize);
    const feats = await classifier.features(images, b, b);
    for (let i = 0; i < b; i++) {
      for (let a = 0; a < dim; a++) {
        const va = feats[i * dim + a];
        sum[a] += va;
        if (va === 0) continue;
        for (let c = 0; c < dim; c++) outer[a * dim + c] += va * feats[i * dim + c];
      }
    }
    const predicted = await classifier.predict(images, b);
    for (let i = 0; i < b; i++) if (predicted[i] === labels[i]) hits++;
  }
  classifier.dispose();
  const ref = new Float64Array(dim + dim * dim);
  ref.set(sum);
  ref.set(outer, dim);
  const weightBytes = new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength);
  const refBytes = new Uint8Array(ref.buffer);
  const manifest: FittedManifest = {
    format: "agon-fitted-features",
    recipe: CLASSIFIER_RECIPE,
    recipeHash: recipeHash(),
    widths: [...widths],
    datasetFingerprint: data.fingerprint,
    classes: data.classes,
    weights: { file: WEIGHTS, sha256: sha256(weightBytes) },
    reference: { file: REFERENCE, sha256: sha256(refBytes), n: data.count },
    trainAccuracy: Math.round((hits / data.count) * 1e4) / 1e4,
    backend,
    trainSeconds,
  };
  const base = join(dir, FEATURES_DIR);
  const tmp = join(dir, `.${FEATURES_DIR}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  writeFileSync(join(tmp, WEIGHTS), weightBytes);
  writeFileSync(join(tmp, REFERENCE), refBytes);
  writeFileSync(join(tmp, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  rmSync(base, { recursive: true, force: true });
  renameSync(tmp, base);
  loaded.delete(dir);
  log(
    `features fitted to ${dir}: ${data.count} rows, ${data.classes.length} classes, accuracy ${(manifest.trainAccuracy * 100).toFixed(2)}% on the rows, ${trainSeconds} s on ${backend}, recipe ${manifest.recipeHash}, classifier sha256 ${manifest.weights.sha256.slice(0, 16)}…`,
  );
  return manifest;
}
