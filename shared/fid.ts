// A Fréchet distance between sets of images, FID-style but on the hidden features of our
// own small MNIST / Fashion-MNIST classifier (shared/fid-classifier.ts), not Inception:
// values are comparable only within Agon, for the same dataset and classifier recipe.
// The statistics and the matrix square root are computed in float64 in plain TS.
import { loadDataset } from "./data/index.js";
import { FEATURE_DIM, type FidDataset, loadClassifier, recipeHash } from "./fid-classifier.js";

export { FEATURE_DIM, FID_DATASETS, type FidDataset } from "./fid-classifier.js";

/** n feature vectors of `dim` values each, row-major. */
export interface FeatureMatrix {
  n: number;
  dim: number;
  data: ArrayLike<number>;
}

/** Mean and (unbiased, n − 1) covariance of a feature set, in float64. */
export interface GaussianStats {
  dim: number;
  n: number;
  mean: Float64Array;
  /** dim × dim, row-major, symmetric. */
  cov: Float64Array;
}

export function gaussianStats(feats: FeatureMatrix): GaussianStats {
  const { n, dim, data } = feats;
  if (n < 2) throw new RangeError(`need at least 2 feature vectors, got ${n}`);
  if (data.length < n * dim)
    throw new RangeError(`expected ${n}×${dim} values, got ${data.length}`);
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += data[i * dim + j];
  for (let j = 0; j < dim; j++) mean[j] /= n;
  const cov = new Float64Array(dim * dim);
  const row = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) row[j] = data[i * dim + j] - mean[j];
    for (let a = 0; a < dim; a++) {
      const ra = row[a];
      if (ra === 0) continue;
      const base = a * dim;
      for (let b = a; b < dim; b++) cov[base + b] += ra * row[b];
    }
  }
  for (let a = 0; a < dim; a++) {
    for (let b = a; b < dim; b++) {
      const v = cov[a * dim + b] / (n - 1);
      cov[a * dim + b] = v;
      cov[b * dim + a] = v;
    }
  }
  return { dim, n, mean, cov };
}

/**
 * Float64 sufficient statistics of a feature set: count, per-dimension sum and the full
 * dim × dim sum of outer products (row-major). Sets are combined by adding (`addSums`), in a
 * fixed order, so statistics gathered in pieces (evaluation chunks, one per microtask) give
 * the same bits however the pieces were distributed.
 */
export interface FeatureSums {
  dim: number;
  n: number;
  sum: Float64Array;
  /** Σ x xᵀ, dim × dim, row-major, symmetric. */
  outer: Float64Array;
}

/** Empty sums (n = 0) of `dim`-dimensional features. */
export function emptySums(dim: number): FeatureSums {
  return { dim, n: 0, sum: new Float64Array(dim), outer: new Float64Array(dim * dim) };
}

/** The sufficient statistics of one feature matrix (accumulated row by row in float64). */
export function featureSums(feats: FeatureMatrix): FeatureSums {
  const { n, dim, data } = feats;
  if (data.length < n * dim)
    throw new RangeError(`expected ${n}×${dim} values, got ${data.length}`);
  const out = emptySums(dim);
  const row = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) row[j] = data[i * dim + j];
    for (let a = 0; a < dim; a++) {
      const ra = row[a];
      out.sum[a] += ra;
      if (ra === 0) continue;
      const base = a * dim;
      for (let b = a; b < dim; b++) out.outer[base + b] += ra * row[b];
    }
  }
  for (let a = 0; a < dim; a++)
    for (let b = a + 1; b < dim; b++) out.outer[b * dim + a] = out.outer[a * dim + b];
  out.n = n;
  return out;
}

/** `into` += `more`, in place (returns `into`). Addition order decides the bits: keep it fixed. */
export function addSums(into: FeatureSums, more: FeatureSums): FeatureSums {
  if (into.dim !== more.dim)
    throw new RangeError(`feature dims differ: ${into.dim} vs ${more.dim}`);
  into.n += more.n;
  for (let i = 0; i < into.dim; i++) into.sum[i] += more.sum[i];
  for (let i = 0; i < into.outer.length; i++) into.outer[i] += more.outer[i];
  return into;
}

/**
 * Mean and unbiased covariance from sufficient statistics:
 * μ = Σx / n, Σ = (Σxxᵀ − n μμᵀ) / (n − 1). Throws RangeError for n < 2.
 */
export function statsFromSums(s: FeatureSums): GaussianStats {
  const { n, dim } = s;
  if (n < 2) throw new RangeError(`need at least 2 feature vectors, got ${n}`);
  const mean = new Float64Array(dim);
  for (let j = 0; j < dim; j++) mean[j] = s.sum[j] / n;
  const cov = new Float64Array(dim * dim);
  for (let a = 0; a < dim; a++) {
    for (let b = a; b < dim; b++) {
      const v = (s.outer[a * dim + b] - n * mean[a] * mean[b]) / (n - 1);
      cov[a * dim + b] = v;
      cov[b * dim + a] = v;
    }
  }
  return { dim, n, mean, cov };
}

/**
 * Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations:
 * A = V diag(values) Vᵀ, with V's columns the eigenvectors (row-major dim × dim).
 */
export function symmetricEigen(
  matrix: ArrayLike<number>,
  dim: number,
): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) v[i * dim + i] = 1;
  let scale = 0;
  for (let i = 0; i < dim * dim; i++) scale += a[i] * a[i];
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < dim; p++) for (let q = p + 1; q < dim; q++) off += a[p * dim + q] ** 2;
    if (off <= 1e-30 * scale || off === 0) break;
    for (let p = 0; p < dim - 1; p++) {
      for (let q = p + 1; q < dim; q++) {
        const apq = a[p * dim + q];
        if (apq === 0) continue;
        const app = a[p * dim + p];
        const aqq = a[q * dim + q];
        // Rotation angle that zeroes a[p][q] (Numerical Recipes' stable form).
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < dim; k++) {
          const akp = a[k * dim + p];
          const akq = a[k * dim + q];
          a[k * dim + p] = c * akp - s * akq;
          a[k * dim + q] = s * akp + c * akq;
        }
        for (let k = 0; k < dim; k++) {
          const apk = a[p * dim + k];
          const aqk = a[q * dim + k];
          a[p * dim + k] = c * apk - s * aqk;
          a[q * dim + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < dim; k++) {
          const vkp = v[k * dim + p];
          const vkq = v[k * dim + q];
          v[k * dim + p] = c * vkp - s * vkq;
          v[k * dim + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(dim);
  for (let i = 0; i < dim; i++) values[i] = a[i * dim + i];
  return { values, vectors: v };
}

/** Square root of a symmetric PSD matrix (negative round-off eigenvalues clamp to 0). */
export function sqrtPsd(matrix: ArrayLike<number>, dim: number): Float64Array {
  const { values, vectors } = symmetricEigen(matrix, dim);
  const out = new Float64Array(dim * dim);
  for (let k = 0; k < dim; k++) {
    const r = Math.sqrt(Math.max(values[k], 0));
    if (r === 0) continue;
    for (let i = 0; i < dim; i++) {
      const vik = vectors[i * dim + k] * r;
      if (vik === 0) continue;
      for (let j = 0; j < dim; j++) out[i * dim + j] += vik * vectors[j * dim + k];
    }
  }
  return out;
}

function matMul(a: Float64Array, b: Float64Array, dim: number): Float64Array {
  const out = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let k = 0; k < dim; k++) {
      const aik = a[i * dim + k];
      if (aik === 0) continue;
      for (let j = 0; j < dim; j++) out[i * dim + j] += aik * b[k * dim + j];
    }
  }
  return out;
}

/**
 * FD = |μa − μb|² + Tr(Σa) + Tr(Σb) − 2 Tr((Σa Σb)^½), where Tr((Σa Σb)^½) is computed as
 * Tr((Σa^½ Σb Σa^½)^½): the same eigenvalues, but of a symmetric PSD matrix, so a
 * symmetric eigensolver suffices and the result is real. Clamped at 0 against round-off.
 */
export function frechetDistanceFromStats(a: GaussianStats, b: GaussianStats): number {
  if (a.dim !== b.dim) throw new RangeError(`feature dims differ: ${a.dim} vs ${b.dim}`);
  const dim = a.dim;
  let meanTerm = 0;
  for (let i = 0; i < dim; i++) meanTerm += (a.mean[i] - b.mean[i]) ** 2;
  let traces = 0;
  for (let i = 0; i < dim; i++) traces += a.cov[i * dim + i] + b.cov[i * dim + i];
  const rootA = sqrtPsd(a.cov, dim);
  const m = matMul(matMul(rootA, b.cov, dim), rootA, dim);
  // Symmetrise away round-off before the eigensolver.
  for (let i = 0; i < dim; i++) {
    for (let j = i + 1; j < dim; j++) {
      const s = (m[i * dim + j] + m[j * dim + i]) / 2;
      m[i * dim + j] = s;
      m[j * dim + i] = s;
    }
  }
  let traceRoot = 0;
  for (const ev of symmetricEigen(m, dim).values) traceRoot += Math.sqrt(Math.max(ev, 0));
  return Math.max(0, meanTerm + traces - 2 * traceRoot);
}

/** The Fréchet distance between Gaussians fitted to two feature sets. */
export function frechetDistance(featsA: FeatureMatrix, featsB: FeatureMatrix): number {
  return frechetDistanceFromStats(gaussianStats(featsA), gaussianStats(featsB));
}

/** Classifier features of n images (28×28×1, values in [-1, 1]) on the active tfjs backend. */
export async function imageFeatures(
  dataset: FidDataset,
  images: Float32Array,
  n: number,
): Promise<FeatureMatrix> {
  const pixels = 28 * 28;
  if (!Number.isSafeInteger(n) || n < 2)
    throw new RangeError(`n must be an integer >= 2, got ${n}`);
  if (images.length !== n * pixels) {
    throw new RangeError(`expected ${n}×${pixels} pixel values, got ${images.length}`);
  }
  return { n, dim: FEATURE_DIM, data: await loadClassifier(dataset).features(images, n) };
}

const realFeatureCache = new Map<string, FeatureMatrix>();
const realCache = new Map<string, GaussianStats>();

/** Classifier features of the dataset's whole test split (10 000 × FEATURE_DIM), cached per process. */
export async function realFeatures(dataset: FidDataset): Promise<FeatureMatrix> {
  const key = `${dataset}/${recipeHash()}`;
  let feats = realFeatureCache.get(key);
  if (!feats) {
    const test = await loadDataset({ name: dataset, split: "test" });
    feats = await imageFeatures(dataset, test.data, test.count);
    realFeatureCache.set(key, feats);
  }
  return feats;
}

/** Statistics of the dataset's whole test split (10 000 images), cached per process. */
export async function realStats(dataset: FidDataset): Promise<GaussianStats> {
  const key = `${dataset}/${recipeHash()}`;
  let stats = realCache.get(key);
  if (!stats) {
    stats = gaussianStats(await realFeatures(dataset));
    realCache.set(key, stats);
  }
  return stats;
}

export interface FdOptions {
  /** Compare against these statistics instead of the test split's. */
  reference?: GaussianStats;
}

/**
 * Fréchet distance between n images (flat n·784 values in [-1, 1], e.g. G's samples) and
 * the dataset's test split, in our classifier's feature space. Uses the active tfjs backend.
 * The estimate is biased upwards for small n: compare values measured with the same n.
 */
export async function computeFd(
  dataset: FidDataset,
  images: Float32Array,
  n: number,
  opts: FdOptions = {},
): Promise<number> {
  const reference = opts.reference ?? (await realStats(dataset));
  return frechetDistanceFromStats(
    gaussianStats(await imageFeatures(dataset, images, n)),
    reference,
  );
}
