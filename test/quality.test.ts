// Fréchet distance from sufficient statistics and the Kernel Inception Distance, checked
// against closed forms and against an independent NumPy/SciPy implementation.
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import {
  addSums,
  emptySums,
  type FeatureMatrix,
  featureSums,
  frechetDistance,
  frechetDistanceFromStats,
  gaussianStats,
  JACOBI_MAX_DIM,
  statsFromSums,
  symmetricEigen,
  symmetricEigenvalues,
} from "../shared/fid.js";
import {
  kernelInceptionDistance,
  kidSubsets,
  polynomialMmd2,
  sampleWithoutReplacement,
} from "../shared/kid.js";
import { Rng } from "../shared/rng.js";
import { tempDir } from "./helpers/cli.js";

const REFERENCE = resolve(import.meta.dirname, "fixtures/quality/reference_metrics.py");

/**
 * ReLU-like, correlated features, as a classifier's hidden layer gives: max(0, z·W + c),
 * with W fixed (one distribution per shift) and z drawn from `seed`.
 */
function features(seed: number, n: number, dim: number, shift: number): FeatureMatrix {
  const wRng = new Rng(1000 + dim);
  const w = Float64Array.from({ length: dim * dim }, () => wRng.nextNormal() / Math.sqrt(dim));
  const rng = new Rng(seed);
  const data = new Float64Array(n * dim);
  const z = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < dim; k++) z[k] = rng.nextNormal();
    for (let j = 0; j < dim; j++) {
      let v = shift;
      for (let k = 0; k < dim; k++) v += z[k] * w[k * dim + j];
      data[i * dim + j] = Math.max(0, v);
    }
  }
  return { n, dim, data };
}

function slice(f: FeatureMatrix, from: number, to: number): FeatureMatrix {
  return {
    n: to - from,
    dim: f.dim,
    data: (f.data as Float64Array).subarray(from * f.dim, to * f.dim),
  };
}

/** NumPy is enough: the reference takes SciPy's sqrtm when it is there, NumPy's eigvals otherwise. */
function hasNumpy(): boolean {
  const r = spawnSync("python3", ["-c", "import numpy"], { stdio: "ignore" });
  if (r.status !== 0)
    console.log(
      "quality: NumPy reference skipped: python3 has no numpy (apt-get install python3-numpy)",
    );
  return r.status === 0;
}

describe("sufficient statistics", () => {
  it("give the two-pass mean and covariance, and the same FD, to 1e-9 relative", () => {
    const a = features(1, 700, 16, 0.3);
    const b = features(2, 500, 16, 0.1);
    const direct = gaussianStats(a);
    const viaSums = statsFromSums(featureSums(a));
    for (let i = 0; i < direct.cov.length; i++) {
      expect(Math.abs(viaSums.cov[i] - direct.cov[i])).toBeLessThan(
        1e-9 * (1 + Math.abs(direct.cov[i])),
      );
    }
    const fd = frechetDistance(a, b);
    const fdSums = frechetDistanceFromStats(statsFromSums(featureSums(a)), gaussianStats(b));
    expect(Math.abs(fdSums - fd) / fd).toBeLessThan(1e-9);
  });

  it("combined from pieces in a fixed order give the same bits however they were computed", () => {
    const a = features(3, 600, 8, 0.2);
    const pieces = [0, 150, 300, 450, 600];
    const combine = () => {
      const total = emptySums(8);
      for (let k = 0; k + 1 < pieces.length; k++)
        addSums(total, featureSums(slice(a, pieces[k], pieces[k + 1])));
      return total;
    };
    // Pieces computed in another order (as workers finish), then added in piece order.
    const computed = [3, 1, 0, 2].map((k) => ({
      k,
      s: featureSums(slice(a, pieces[k], pieces[k + 1])),
    }));
    const reordered = emptySums(8);
    for (const { s } of computed.sort((x, y) => x.k - y.k)) addSums(reordered, s);
    expect(Buffer.from(reordered.outer.buffer).equals(Buffer.from(combine().outer.buffer))).toBe(
      true,
    );
    expect(Buffer.from(reordered.sum.buffer).equals(Buffer.from(combine().sum.buffer))).toBe(true);
    expect(reordered.n).toBe(600);
  });

  it("refuse fewer than 2 vectors and mismatched dims", () => {
    expect(() => statsFromSums(featureSums(features(4, 1, 4, 0)))).toThrow(RangeError);
    expect(() => addSums(emptySums(4), emptySums(5))).toThrow(/dims differ/);
  });
});

describe("kernel inception distance", () => {
  it("draws distinct indices, the same for the same seed", () => {
    const idx = sampleWithoutReplacement(new Rng(9), 50, 50);
    expect(new Set(idx).size).toBe(50);
    expect(kidSubsets(300, 200, { subsets: 3, subsetSize: 100, seed: 5 })).toEqual(
      kidSubsets(300, 200, { subsets: 3, subsetSize: 100, seed: 5 }),
    );
    expect(kidSubsets(300, 200, { subsets: 1 }).subsetSize).toBe(200);
    expect(() => sampleWithoutReplacement(new Rng(1), 3, 4)).toThrow(RangeError);
  });

  it("is near 0 for two samples of one distribution and grows with the shift", () => {
    const opts = { subsets: 10, subsetSize: 200, seed: 1 };
    const same = kernelInceptionDistance(features(5, 400, 8, 0), features(6, 400, 8, 0), opts);
    const near = kernelInceptionDistance(features(5, 400, 8, 0), features(6, 400, 8, 0.3), opts);
    const far = kernelInceptionDistance(features(5, 400, 8, 0), features(6, 400, 8, 1), opts);
    // Unbiased: the same-distribution estimate scatters around 0 within a few std errors.
    expect(Math.abs(same.kid)).toBeLessThan(4 * (same.std / Math.sqrt(10)) + 1e-3);
    expect(near.kid).toBeGreaterThan(same.kid);
    expect(far.kid).toBeGreaterThan(near.kid);
  });

  it("from dot products computed once gives the same bits as summing per subset", () => {
    const a = features(21, 120, 16, 0.1);
    const b = features(22, 90, 16, 0.2);
    const opts = { subsets: 6, subsetSize: 80, seed: 4 };
    const r = kernelInceptionDistance(a, b, opts);
    const { a: ia, b: ib } = kidSubsets(a.n, b.n, opts);
    const rows = (f: FeatureMatrix, idx: Uint32Array) =>
      Float64Array.from(Array.from(idx).flatMap((i) => Array.from(slice(f, i, i + 1).data)));
    const values = ia.map((x, s) => polynomialMmd2(rows(a, x), rows(b, ib[s]), 80, 16));
    expect(r.kid).toBe(values.reduce((acc, v) => acc + v, 0) / values.length);
  });

  it("refuses mismatched dims and subsets of fewer than 2 rows", () => {
    expect(() => kernelInceptionDistance(features(1, 10, 4, 0), features(1, 10, 5, 0))).toThrow(
      /dims differ/,
    );
    expect(() => kernelInceptionDistance(features(1, 1, 4, 0), features(1, 10, 4, 0))).toThrow(
      RangeError,
    );
  });
});

describe("the Fréchet distance above JACOBI_MAX_DIM (Inception's 2048)", () => {
  it("symmetricEigenvalues gives Jacobi's eigenvalues", () => {
    const n = 90;
    const rng = new Rng(3);
    const m = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = i; j < n; j++) {
        const v = rng.nextNormal();
        m[i * n + j] = v;
        m[j * n + i] = v;
      }
    const ql = Array.from(symmetricEigenvalues(m, n)).sort((x, y) => x - y);
    const jacobi = Array.from(symmetricEigen(m, n).values).sort((x, y) => x - y);
    for (let i = 0; i < n; i++) expect(Math.abs(ql[i] - jacobi[i])).toBeLessThan(1e-10);
  });
});

describe.skipIf(!hasNumpy())("against an independent NumPy/SciPy implementation", () => {
  it("FD (pytorch-fid's sqrtm, or NumPy's eigvals of Σ1Σ2) and KID (StyleGAN2-ADA's) agree within 1e-6 relative", () => {
    const dim = 64;
    const a = features(11, 900, dim, 0.2);
    const b = features(12, 700, dim, 0.05);
    const opts = { subsets: 8, subsetSize: 300, seed: 7 };
    const subsets = kidSubsets(a.n, b.n, opts);
    const dir = tempDir("agon-quality-");
    const f64 = (x: ArrayLike<number>) => Buffer.from(Float64Array.from(x).buffer);
    writeFileSync(join(dir, "a.f64"), f64(a.data));
    writeFileSync(join(dir, "b.f64"), f64(b.data));
    const u32 = (xs: Uint32Array[]) =>
      Buffer.from(Uint32Array.from(xs.flatMap((x) => Array.from(x))).buffer);
    writeFileSync(join(dir, "idx_a.u32"), u32(subsets.a));
    writeFileSync(join(dir, "idx_b.u32"), u32(subsets.b));
    writeFileSync(
      join(dir, "meta.json"),
      JSON.stringify({ dim, nA: a.n, nB: b.n, subsets: 8, subsetSize: subsets.subsetSize }),
    );
    const run = spawnSync("python3", [REFERENCE, dir], { encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    const ref = JSON.parse(run.stdout) as { fd: number; kid: number; std: number; how: string };

    const fd = frechetDistance(a, b);
    const fdSums = frechetDistanceFromStats(statsFromSums(featureSums(a)), gaussianStats(b));
    const kid = kernelInceptionDistance(a, b, opts);
    const rel = (x: number, y: number) => Math.abs(x - y) / Math.abs(y);
    console.log(
      `FD ${fd} (NumPy ${ref.fd}, ${ref.how}), KID ${kid.kid} ± ${kid.std} (NumPy ${ref.kid} ± ${ref.std})`,
    );
    expect(rel(fd, ref.fd)).toBeLessThan(1e-6);
    expect(rel(fdSums, ref.fd)).toBeLessThan(1e-6);
    expect(rel(kid.kid, ref.kid)).toBeLessThan(1e-6);
    expect(rel(kid.std, ref.std)).toBeLessThan(1e-6);
  });

  it("FD above JACOBI_MAX_DIM agrees within 1e-6 relative (fewer rows than dims, and more)", () => {
    const dim = 2 * JACOBI_MAX_DIM;
    const few = features(31, 180, dim, 0.2); // 180 rows < 256 dims: singular covariance
    const many = features(32, 600, dim, 0);
    const rel = (x: number, y: number) => Math.abs(x - y) / Math.abs(y);
    for (const [a, b] of [
      [few, many],
      [many, features(33, 500, dim, 0.1)],
    ]) {
      const dir = tempDir("agon-quality-");
      const f64 = (x: ArrayLike<number>) => Buffer.from(Float64Array.from(x).buffer);
      writeFileSync(join(dir, "a.f64"), f64(a.data));
      writeFileSync(join(dir, "b.f64"), f64(b.data));
      writeFileSync(join(dir, "idx_a.u32"), Buffer.alloc(0));
      writeFileSync(join(dir, "idx_b.u32"), Buffer.alloc(0));
      writeFileSync(
        join(dir, "meta.json"),
        JSON.stringify({ dim, nA: a.n, nB: b.n, subsets: 0, subsetSize: 2 }),
      );
      const run = spawnSync("python3", [REFERENCE, dir], { encoding: "utf8" });
      expect(run.status, run.stderr).toBe(0);
      const ref = JSON.parse(run.stdout) as { fd: number };
      const fd = frechetDistance(a, b);
      const fdStats = frechetDistanceFromStats(gaussianStats(a), gaussianStats(b));
      console.log(`FD dim ${dim}, n ${a.n}/${b.n}: ${fd} (from stats ${fdStats}; NumPy ${ref.fd})`);
      expect(rel(fd, ref.fd)).toBeLessThan(1e-6);
      if (a.n > dim) expect(rel(fdStats, ref.fd)).toBeLessThan(1e-6);
    }
  });
});
