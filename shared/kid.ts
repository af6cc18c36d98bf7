// Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased
// estimate of the squared MMD between two feature sets under the cubic polynomial kernel
// k(x, y) = (xᵀy / d + 1)³, averaged over random subsets as in the reference
// implementations (StyleGAN2-ADA's metrics/kernel_inception_distance.py, torch-fidelity's
// kid.py: 100 subsets of min(1000, n) rows each, drawn without replacement). Unlike the
// Fréchet distance it is unbiased in n and needs the feature rows themselves, not sums.
import type { FeatureMatrix } from "./fid.js";
import { Rng } from "./rng.js";

/** The reference implementations' defaults. */
export const KID_DEFAULT_SUBSETS = 100;
export const KID_DEFAULT_SUBSET_SIZE = 1000;

export interface KidOptions {
  /** Number of random subsets averaged (default 100). */
  subsets?: number;
  /** Rows per subset, capped at the smaller set's n (default 1000). */
  subsetSize?: number;
  /** Seed of the subset draws (our sfc32 `Rng`); the same seed gives the same subsets. */
  seed?: number;
}

export interface KidResult {
  /** Mean of the per-subset unbiased MMD² estimates (can be slightly negative). */
  kid: number;
  /** Standard deviation of the per-subset estimates (population, as torch-fidelity's np.std). */
  std: number;
  subsets: number;
  subsetSize: number;
}

/**
 * k distinct indices in [0, n), in draw order, from a partial Fisher–Yates shuffle.
 * Throws RangeError when k > n.
 */
export function sampleWithoutReplacement(rng: Rng, n: number, k: number): Uint32Array {
  if (k > n) throw new RangeError(`cannot draw ${k} of ${n} without replacement`);
  const pool = new Uint32Array(n);
  for (let i = 0; i < n; i++) pool[i] = i;
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rng.nextFloat() * (n - i));
    const t = pool[i];
    pool[i] = pool[j];
    pool[j] = t;
  }
  return pool.slice(0, k);
}

/** The subsets `kid()` uses: for each subset, indices into A and into B. */
export function kidSubsets(
  nA: number,
  nB: number,
  opts: KidOptions = {},
): { subsetSize: number; a: Uint32Array[]; b: Uint32Array[] } {
  const subsets = opts.subsets ?? KID_DEFAULT_SUBSETS;
  if (!Number.isSafeInteger(subsets) || subsets < 1)
    throw new RangeError(`subsets must be an integer >= 1, got ${subsets}`);
  const subsetSize = Math.min(opts.subsetSize ?? KID_DEFAULT_SUBSET_SIZE, nA, nB);
  if (!Number.isSafeInteger(subsetSize) || subsetSize < 2)
    throw new RangeError(`subsets need at least 2 rows from each set, got ${subsetSize}`);
  const rng = new Rng(opts.seed ?? 0);
  const a: Uint32Array[] = [];
  const b: Uint32Array[] = [];
  for (let s = 0; s < subsets; s++) {
    a.push(sampleWithoutReplacement(rng, nA, subsetSize));
    b.push(sampleWithoutReplacement(rng, nB, subsetSize));
  }
  return { subsetSize, a, b };
}

function gather(f: FeatureMatrix, idx: Uint32Array): Float64Array {
  const out = new Float64Array(idx.length * f.dim);
  for (let r = 0; r < idx.length; r++) {
    const base = idx[r] * f.dim;
    for (let j = 0; j < f.dim; j++) out[r * f.dim + j] = f.data[base + j];
  }
  return out;
}

/** Σ over i≠j (sameSet) or all i, j of (xᵢᵀyⱼ / d + 1)³, in float64. */
function kernelSum(x: Float64Array, y: Float64Array, m: number, d: number, sameSet: boolean) {
  let total = 0;
  for (let i = 0; i < m; i++) {
    const xi = i * d;
    let row = 0;
    for (let j = sameSet ? i + 1 : 0; j < m; j++) {
      const yj = j * d;
      let dot = 0;
      for (let k = 0; k < d; k++) dot += x[xi + k] * y[yj + k];
      const base = dot / d + 1;
      row += base * base * base;
    }
    total += row;
  }
  return sameSet ? 2 * total : total;
}

/**
 * Unbiased MMD² of two equal-size sets under the cubic polynomial kernel:
 * (Σ_{i≠j} k(xᵢ,xⱼ) + Σ_{i≠j} k(yᵢ,yⱼ)) / (m(m−1)) − 2 Σ_{i,j} k(xᵢ,yⱼ) / m².
 * x and y are m × d, row-major.
 */
export function polynomialMmd2(x: Float64Array, y: Float64Array, m: number, d: number): number {
  const xx = kernelSum(x, x, m, d, true);
  const yy = kernelSum(y, y, m, d, true);
  const xy = kernelSum(x, y, m, d, false);
  return (xx + yy) / (m * (m - 1)) - (2 * xy) / (m * m);
}

/** The Gram matrices kernelInceptionDistance may precompute: at most this many float64 entries (512 MB). */
const GRAM_MAX_ENTRIES = 64e6;

/** xᵢᵀyⱼ for all rows i of x and j of y (float64, nx × ny), summed over k in order as kernelSum does. */
function gram(x: FeatureMatrix, y: FeatureMatrix, symmetric: boolean): Float64Array {
  const d = x.dim;
  const out = new Float64Array(x.n * y.n);
  const xi = new Float64Array(d);
  for (let i = 0; i < x.n; i++) {
    for (let k = 0; k < d; k++) xi[k] = x.data[i * d + k];
    for (let j = symmetric ? i : 0; j < y.n; j++) {
      const base = j * d;
      let dot = 0;
      for (let k = 0; k < d; k++) dot += xi[k] * y.data[base + k];
      out[i * y.n + j] = dot;
      if (symmetric) out[j * y.n + i] = dot;
    }
  }
  return out;
}

/** kernelSum on subsets, from precomputed dot products (the same values, in the same order). */
function kernelSumFromGram(
  g: Float64Array,
  cols: number,
  ix: Uint32Array,
  iy: Uint32Array,
  d: number,
  sameSet: boolean,
): number {
  const m = ix.length;
  let total = 0;
  for (let i = 0; i < m; i++) {
    const row = ix[i] * cols;
    let sum = 0;
    for (let j = sameSet ? i + 1 : 0; j < m; j++) {
      const base = g[row + iy[j]] / d + 1;
      sum += base * base * base;
    }
    total += sum;
  }
  return sameSet ? 2 * total : total;
}

/**
 * KID between feature sets A and B (same dim): the mean of `subsets` unbiased MMD²
 * estimates on random subsets of `subsetSize` rows of each. Cost: about
 * 4 · subsets · subsetSize² · dim multiply-adds (100 × 1000² × 64: ~30 s in plain JS); when
 * that exceeds computing all pairwise dot products once ((nA + nB)² · dim / 2, e.g. Inception's
 * 2048-d features of 2000 + 2000 images) and those fit in 512 MB, the dot products are
 * computed once and looked up, with the same bits as a result.
 * Throws RangeError on mismatched dims or fewer than 2 rows.
 */
export function kernelInceptionDistance(
  a: FeatureMatrix,
  b: FeatureMatrix,
  opts: KidOptions = {},
): KidResult {
  if (a.dim !== b.dim) throw new RangeError(`feature dims differ: ${a.dim} vs ${b.dim}`);
  const { subsetSize: m, a: ia, b: ib } = kidSubsets(a.n, b.n, opts);
  const d = a.dim;
  const gramEntries = a.n * a.n + b.n * b.n + a.n * b.n;
  const useGram = gramEntries <= GRAM_MAX_ENTRIES && gramEntries / 2 < ia.length * 3 * m * m;
  let values: number[];
  if (useGram) {
    const gAA = gram(a, a, true);
    const gBB = gram(b, b, true);
    const gAB = gram(a, b, false);
    values = ia.map((x, s) => {
      const y = ib[s];
      const xx = kernelSumFromGram(gAA, a.n, x, x, d, true);
      const yy = kernelSumFromGram(gBB, b.n, y, y, d, true);
      const xy = kernelSumFromGram(gAB, b.n, x, y, d, false);
      return (xx + yy) / (m * (m - 1)) - (2 * xy) / (m * m);
    });
  } else {
    values = ia.map((idx, s) => polynomialMmd2(gather(a, idx), gather(b, ib[s]), m, d));
  }
  const kid = values.reduce((acc, v) => acc + v, 0) / values.length;
  const variance = values.reduce((acc, v) => acc + (v - kid) ** 2, 0) / values.length;
  return { kid, std: Math.sqrt(variance), subsets: values.length, subsetSize: m };
}
