// A Fréchet distance between sets of images, FID-style but on the hidden features of our
// own small MNIST / Fashion-MNIST classifier (shared/features/classifier.ts), not Inception:
// values are comparable only within Agon, for the same dataset and classifier recipe.
// The statistics and the matrix square root are computed in float64 in plain TS.
import { loadDataset } from "./data/index.js";
import { FEATURE_DIM, type FidDataset, loadClassifier, recipeHash } from "./features/classifier.js";

export { FEATURE_DIM, FID_DATASETS, type FidDataset } from "./features/classifier.js";

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
 * Above this many dimensions the Fréchet distance takes the eigenvalues-only route
 * (traceSqrtProduct: a Cholesky or row factor, Householder tridiagonalisation, implicit QL),
 * O(d³) with small constants, instead of Jacobi rotations with eigenvectors, which take tens
 * of minutes at Inception's 2048. Our own 64-d features keep the Jacobi route (their recorded
 * values were measured with it).
 */
export const JACOBI_MAX_DIM = 128;

/**
 * FD = |μa − μb|² + Tr(Σa) + Tr(Σb) − 2 Tr((Σa Σb)^½). For dim ≤ JACOBI_MAX_DIM,
 * Tr((Σa Σb)^½) is computed as Tr((Σa^½ Σb Σa^½)^½): the same eigenvalues, but of a
 * symmetric PSD matrix, so a symmetric eigensolver suffices and the result is real; above,
 * by traceSqrtProduct. Clamped at 0 against round-off.
 */
export function frechetDistanceFromStats(a: GaussianStats, b: GaussianStats): number {
  if (a.dim !== b.dim) throw new RangeError(`feature dims differ: ${a.dim} vs ${b.dim}`);
  const traceRoot = a.dim > JACOBI_MAX_DIM ? traceSqrtProduct(a, b) : jacobiTraceRoot(a, b);
  return fdFromTraceRoot(a, b, traceRoot);
}

/** FD from the means, the traces and Tr((Σa Σb)^½) (clamped at 0 against round-off). */
export function fdFromTraceRoot(a: GaussianStats, b: GaussianStats, traceRoot: number): number {
  const dim = a.dim;
  let meanTerm = 0;
  for (let i = 0; i < dim; i++) meanTerm += (a.mean[i] - b.mean[i]) ** 2;
  let traces = 0;
  for (let i = 0; i < dim; i++) traces += a.cov[i * dim + i] + b.cov[i * dim + i];
  return Math.max(0, meanTerm + traces - 2 * traceRoot);
}

function jacobiTraceRoot(a: GaussianStats, b: GaussianStats): number {
  const dim = a.dim;
  const rootA = sqrtPsd(a.cov, dim);
  const m = matMul(matMul(rootA, b.cov, dim), rootA, dim);
  // Symmetrise away round-off before the eigensolver.
  symmetrise(m, dim);
  let traceRoot = 0;
  for (const ev of symmetricEigen(m, dim).values) traceRoot += Math.sqrt(Math.max(ev, 0));
  return traceRoot;
}

function symmetrise(m: Float64Array, dim: number): void {
  for (let i = 0; i < dim; i++) {
    for (let j = i + 1; j < dim; j++) {
      const s = (m[i * dim + j] + m[j * dim + i]) / 2;
      m[i * dim + j] = s;
      m[j * dim + i] = s;
    }
  }
}

/** pytorch-fid's offset (fid_score.py: `eps=1e-6` added to both diagonals) when Σa Σb is singular. */
const SINGULAR_OFFSET = 1e-6;

/**
 * Tr((Σa Σb)^½) from eigenvalues only: with a factor Σa = L Lᵀ (Cholesky; Σb's when Σa is
 * not positive definite), Σa Σb has the eigenvalues of the symmetric PSD Lᵀ Σb L. When
 * neither is positive definite, both get pytorch-fid's 1e-6 · I offset first (as its
 * fid_score.py does when sqrtm fails). Throws RangeError if even that fails (NaN features).
 */
export function traceSqrtProduct(a: GaussianStats, b: GaussianStats): number {
  const dim = a.dim;
  let l = cholesky(a.cov, dim);
  let other = b.cov;
  if (!l) {
    l = cholesky(b.cov, dim);
    other = a.cov;
  }
  if (!l) {
    const offset = (m: Float64Array) => {
      const out = Float64Array.from(m);
      for (let i = 0; i < dim; i++) out[i * dim + i] += SINGULAR_OFFSET;
      return out;
    };
    l = cholesky(offset(a.cov), dim);
    other = offset(b.cov);
    if (!l) throw new RangeError("covariance is not positive semi-definite (NaN features?)");
  }
  const m = matMulRect(matMulRect(transpose(l, dim, dim), other, dim, dim, dim), l, dim, dim, dim);
  symmetrise(m, dim);
  return sumSqrtEigenvalues(m, dim);
}

/**
 * Tr((Σa Σb)^½) from the rows of set A: with R = (Xa − μa) / √(n − 1) (n × dim), Σa = Rᵀ R,
 * so Σa Σb has the nonzero eigenvalues of the n × n symmetric PSD R Σb Rᵀ. Exact when
 * n ≤ dim, where Σa is singular and has no Cholesky factor.
 */
export function traceSqrtProductFromRows(
  a: FeatureMatrix,
  statsA: GaussianStats,
  b: GaussianStats,
): number {
  const { n, dim } = a;
  const r = new Float64Array(n * dim);
  const scale = 1 / Math.sqrt(n - 1);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < dim; j++) r[i * dim + j] = (a.data[i * dim + j] - statsA.mean[j]) * scale;
  const rs = matMulRect(r, b.cov, n, dim, dim);
  // (R Σb) Rᵀ is symmetric: each entry once, as a dot product of rows.
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * dim;
    for (let j = i; j < n; j++) {
      const rj = j * dim;
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += rs[ri + k] * r[rj + k];
      m[i * n + j] = dot;
      m[j * n + i] = dot;
    }
  }
  return sumSqrtEigenvalues(m, n);
}

function sumSqrtEigenvalues(m: Float64Array, dim: number): number {
  let traceRoot = 0;
  for (const ev of symmetricEigenvalues(m, dim)) traceRoot += Math.sqrt(Math.max(ev, 0));
  return traceRoot;
}

function transpose(a: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j];
  return out;
}

/** (rows × inner) · (inner × cols), row-major, in i-k-j order. */
function matMulRect(
  a: Float64Array,
  b: Float64Array,
  rows: number,
  inner: number,
  cols: number,
): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const oi = i * cols;
    for (let k = 0; k < inner; k++) {
      const aik = a[i * inner + k];
      if (aik === 0) continue;
      const bk = k * cols;
      for (let j = 0; j < cols; j++) out[oi + j] += aik * b[bk + j];
    }
  }
  return out;
}

/**
 * Lower-triangular L with L Lᵀ = A (row-major dim × dim), or null when A is not
 * (numerically) positive definite.
 */
export function cholesky(matrix: ArrayLike<number>, dim: number): Float64Array | null {
  const l = new Float64Array(dim * dim);
  for (let j = 0; j < dim; j++) {
    const lj = j * dim;
    let d = matrix[lj + j];
    for (let k = 0; k < j; k++) d -= l[lj + k] * l[lj + k];
    if (!(d > 0)) return null;
    const root = Math.sqrt(d);
    l[lj + j] = root;
    for (let i = j + 1; i < dim; i++) {
      const li = i * dim;
      let s = matrix[li + j];
      for (let k = 0; k < j; k++) s -= l[li + k] * l[lj + k];
      l[li + j] = s / root;
    }
  }
  return l;
}

/**
 * Eigenvalues (unordered) of a symmetric matrix (row-major dim × dim): Householder
 * reduction to tridiagonal form, then the implicit QL algorithm (EISPACK's tred1/tql1;
 * Numerical Recipes' tred2/tqli without eigenvectors), about (4/3)·dim³ flops. Throws
 * RangeError when QL does not converge (NaN input).
 */
export function symmetricEigenvalues(matrix: ArrayLike<number>, dim: number): Float64Array {
  const n = dim;
  const a = Float64Array.from(matrix);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const v = new Float64Array(n);
  const p = new Float64Array(n);
  for (let k = 0; k + 2 < n; k++) {
    // Householder reflection H = I − 2vvᵀ taking column k below the diagonal to alpha·e1.
    let norm = 0;
    for (let i = k + 1; i < n; i++) norm += a[i * n + k] ** 2;
    norm = Math.sqrt(norm);
    const x0 = a[(k + 1) * n + k];
    const alpha = x0 > 0 ? -norm : norm;
    let vnorm = 0;
    for (let i = k + 1; i < n; i++) {
      v[i] = a[i * n + k] - (i === k + 1 ? alpha : 0);
      vnorm += v[i] * v[i];
    }
    if (vnorm === 0) {
      e[k] = x0;
      continue;
    }
    e[k] = alpha;
    vnorm = Math.sqrt(vnorm);
    for (let i = k + 1; i < n; i++) v[i] /= vnorm;
    // A22 ← H A22 H = A22 − 2 (v qᵀ + q vᵀ), with p = A22 v and q = p − (vᵀp) v.
    let vp = 0;
    for (let i = k + 1; i < n; i++) {
      const ai = i * n;
      let s = 0;
      for (let j = k + 1; j < n; j++) s += a[ai + j] * v[j];
      p[i] = s;
      vp += v[i] * s;
    }
    for (let i = k + 1; i < n; i++) p[i] -= vp * v[i];
    for (let i = k + 1; i < n; i++) {
      const ai = i * n;
      const vi = 2 * v[i];
      const qi = 2 * p[i];
      for (let j = k + 1; j < n; j++) a[ai + j] -= vi * p[j] + qi * v[j];
    }
  }
  for (let i = 0; i < n; i++) d[i] = a[i * n + i];
  if (n >= 2) e[n - 2] = a[(n - 1) * n + (n - 2)];
  // Implicit QL on the tridiagonal (d, e), e[i] coupling rows i and i + 1.
  for (let l = 0; l < n; l++) {
    for (let iter = 0; ; iter++) {
      let m = l;
      while (m < n - 1 && Math.abs(e[m]) > Number.EPSILON * (Math.abs(d[m]) + Math.abs(d[m + 1])))
        m++;
      if (m === l) break;
      if (iter === 100) throw new RangeError("symmetricEigenvalues: QL did not converge");
      let g = (d[l + 1] - d[l]) / (2 * e[l]);
      let r = Math.hypot(g, 1);
      g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      let s = 1;
      let c = 1;
      let shift = 0;
      let deflated = false;
      for (let i = m - 1; i >= l; i--) {
        const f = s * e[i];
        const b = c * e[i];
        r = Math.hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          d[i + 1] -= shift;
          e[m] = 0;
          deflated = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - shift;
        r = (d[i] - g) * s + 2 * c * b;
        shift = s * r;
        d[i + 1] = g + shift;
        g = c * r - b;
      }
      if (deflated) continue;
      d[l] -= shift;
      e[l] = g;
      e[m] = 0;
    }
  }
  return d;
}

/**
 * The Fréchet distance between Gaussians fitted to two feature sets. Above JACOBI_MAX_DIM
 * dimensions, when the smaller set has no more rows than dimensions (its covariance is
 * singular), Tr((Σa Σb)^½) comes from that set's rows (traceSqrtProductFromRows).
 */
export function frechetDistance(featsA: FeatureMatrix, featsB: FeatureMatrix): number {
  const a = gaussianStats(featsA);
  const b = gaussianStats(featsB);
  if (a.dim !== b.dim) throw new RangeError(`feature dims differ: ${a.dim} vs ${b.dim}`);
  if (a.dim <= JACOBI_MAX_DIM || Math.min(a.n, b.n) > a.dim) return frechetDistanceFromStats(a, b);
  const traceRoot =
    a.n <= b.n ? traceSqrtProductFromRows(featsA, a, b) : traceSqrtProductFromRows(featsB, b, a);
  return fdFromTraceRoot(a, b, traceRoot);
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
