// Registers the gradients (tfjs-core alone has none).
import "@tensorflow/tfjs";
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import {
  applyDiffAugment,
  CUTOUT_RATIO,
  type DiffAugmentDraw,
  drawDiffAugment,
  TRANSLATION_RATIO,
} from "../shared/augment.js";
import { initBackend } from "../shared/backend.js";
import { Rng } from "../shared/rng.js";

beforeAll(async () => {
  await initBackend("wasm");
});

/**
 * The reference implementation's formulas (DiffAugment_pytorch.py), element by element in
 * float64, for [B, H, W, C] data.
 */
function reference(x: Float32Array, [B, H, W, C]: number[], d: DiffAugmentDraw): Float64Array {
  const at = (b: number, i: number, j: number, c: number) => ((b * H + i) * W + j) * C + c;
  let y = Float64Array.from(x);
  if (d.brightness && d.saturation && d.contrast) {
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < H * W * C; i++) y[b * H * W * C + i] += d.brightness[b];
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          let m = 0;
          for (let c = 0; c < C; c++) m += y[at(b, i, j, c)] / C;
          for (let c = 0; c < C; c++)
            y[at(b, i, j, c)] = (y[at(b, i, j, c)] - m) * d.saturation[b] + m;
        }
      }
      let m = 0;
      for (let i = 0; i < H * W * C; i++) m += y[b * H * W * C + i] / (H * W * C);
      for (let i = 0; i < H * W * C; i++) {
        const k = b * H * W * C + i;
        y[k] = (y[k] - m) * d.contrast[b] + m;
      }
    }
  }
  if (d.shiftY && d.shiftX) {
    const out = new Float64Array(y.length);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          const si = i + d.shiftY[b];
          const sj = j + d.shiftX[b];
          if (si < 0 || si >= H || sj < 0 || sj >= W) continue;
          for (let c = 0; c < C; c++) out[at(b, i, j, c)] = y[at(b, si, sj, c)];
        }
      }
    }
    y = out;
  }
  if (d.cutoutY && d.cutoutX) {
    const cy = Math.floor(H * CUTOUT_RATIO + 0.5);
    const cx = Math.floor(W * CUTOUT_RATIO + 0.5);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          const inside =
            i >= d.cutoutY[b] &&
            i < d.cutoutY[b] + cy &&
            j >= d.cutoutX[b] &&
            j < d.cutoutX[b] + cx;
          if (inside) for (let c = 0; c < C; c++) y[at(b, i, j, c)] = 0;
        }
      }
    }
  }
  return y;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe("DiffAugment", () => {
  const shapes: [number, number, number, number][] = [
    [6, 16, 16, 3],
    [4, 28, 28, 1],
    [3, 9, 12, 2],
  ];
  for (const shape of shapes) {
    it(`matches the reference formulas on ${shape.join("×")}`, () => {
      const [B, H, W] = shape;
      const x = new Rng(3).normalArray(shape.reduce((p, v) => p * v, 1));
      for (const ops of [
        ["color"],
        ["translation"],
        ["cutout"],
        ["color", "translation", "cutout"],
      ] as const) {
        const draw = drawDiffAugment(11, B, H, W, ops);
        const got = tf.tidy(() => applyDiffAugment(tf.tensor4d(x, shape), draw).dataSync());
        expect(maxAbsDiff(got, reference(x, shape, draw)), ops.join(",")).toBeLessThan(1e-5);
      }
    });
  }

  it("draws are a pure function of the seed, within the reference ranges", () => {
    const a = drawDiffAugment(5, 500, 32, 32, ["color", "translation", "cutout"]);
    expect(drawDiffAugment(5, 500, 32, 32, ["color", "translation", "cutout"])).toEqual(a);
    expect(drawDiffAugment(6, 500, 32, 32, ["color", "translation", "cutout"])).not.toEqual(a);
    const s = Math.floor(32 * TRANSLATION_RATIO + 0.5);
    expect(Math.min(...(a.shiftY as Int32Array))).toBe(-s);
    expect(Math.max(...(a.shiftX as Int32Array))).toBe(s);
    expect(Math.min(...(a.brightness as Float32Array))).toBeGreaterThanOrEqual(-0.5);
    expect(Math.max(...(a.saturation as Float32Array))).toBeLessThan(2);
    expect(Math.min(...(a.contrast as Float32Array))).toBeGreaterThanOrEqual(0.5);
    // Cutout squares are 16×16, centred anywhere in the image: some clip at the border.
    expect(Math.min(...(a.cutoutY as Int32Array))).toBe(-8);
    expect(Math.max(...(a.cutoutX as Int32Array))).toBe(32 - 8);
  });

  it("translation and cutout move and zero pixels exactly (no rounding)", () => {
    const shape: [number, number, number, number] = [8, 16, 16, 3];
    const x = new Rng(9).normalArray(8 * 16 * 16 * 3);
    const draw = drawDiffAugment(2, 8, 16, 16, ["translation", "cutout"]);
    const got = tf.tidy(() => applyDiffAugment(tf.tensor4d(x, shape), draw).dataSync());
    const want = reference(x, shape, draw);
    for (let i = 0; i < got.length; i++) {
      if (got[i] !== Math.fround(want[i])) throw new Error(`element ${i}: ${got[i]} != ${want[i]}`);
    }
  });

  it("is differentiable: the gradient of Σ w·aug(x) matches central differences", () => {
    const shape: [number, number, number, number] = [2, 8, 8, 3];
    const n = 2 * 8 * 8 * 3;
    const x = new Rng(4).normalArray(n);
    const w = new Rng(5).normalArray(n);
    const draw = drawDiffAugment(7, 2, 8, 8, ["color", "translation", "cutout"]);
    const f = (v: tf.Tensor) =>
      tf.sum(tf.mul(applyDiffAugment(v as tf.Tensor4D, draw), tf.tensor4d(w, shape)));
    const grad = tf.tidy(() => tf.grad(f)(tf.tensor4d(x, shape)).dataSync());
    // The map is affine in x, so differences are exact up to float32 rounding of f.
    const refF = (v: Float32Array) => {
      const y = reference(v, shape, draw);
      let s = 0;
      for (let i = 0; i < n; i++) s += y[i] * w[i];
      return s;
    };
    const rng = new Rng(8);
    for (let t = 0; t < 20; t++) {
      const i = rng.nextInt(n);
      const plus = Float32Array.from(x);
      const minus = Float32Array.from(x);
      plus[i] += 0.5;
      minus[i] -= 0.5;
      const fd = refF(plus) - refF(minus);
      expect(Math.abs(grad[i] - fd)).toBeLessThan(1e-4 * Math.max(1, Math.abs(fd)));
    }
  });

  it("p = 1 draws exactly what a draw without p does (runs from before augment.p keep their trajectory)", () => {
    const ops = ["color", "translation", "cutout"] as const;
    const old = drawDiffAugment(5, 64, 16, 16, ops);
    expect(drawDiffAugment(5, 64, 16, 16, ops, 1)).toEqual(old);
    expect(old.colorOn).toBeUndefined();
    // p < 1 keeps every image's parameters and only adds the choices.
    const half = drawDiffAugment(5, 64, 16, 16, ops, 0.5);
    const { colorOn, translationOn, cutoutOn, ...params } = half;
    expect(params).toEqual(old);
    expect([colorOn, translationOn, cutoutOn].every((a) => a?.length === 64)).toBe(true);
  });

  it("applies each op to a fraction ≈ p of the images, independently per image and op", () => {
    const n = 20_000;
    const frac = (a: Int32Array) => a.reduce((s, v) => s + v, 0) / a.length;
    for (const p of [0.1, 0.5, 0.8]) {
      const d = drawDiffAugment(17, n, 8, 8, ["color", "translation", "cutout"], p);
      const on = [d.colorOn!, d.translationOn!, d.cutoutOn!];
      // 5 standard deviations of a Bernoulli mean over n images (at most 0.018 here).
      const tol = 5 * Math.sqrt((p * (1 - p)) / n);
      for (const a of on) expect(Math.abs(frac(a) - p)).toBeLessThan(tol);
      // Independent: colour and translation both on for ≈ p² of the images.
      const both = on[0].map((v, i) => v * on[1][i]);
      expect(Math.abs(frac(both) - p * p)).toBeLessThan(5 * Math.sqrt((p * p * (1 - p * p)) / n));
    }
    const none = drawDiffAugment(17, 100, 8, 8, ["color", "cutout"], 0);
    expect(frac(none.colorOn!)).toBe(0);
    expect(frac(none.cutoutOn!)).toBe(0);
    expect(none.translationOn).toBeUndefined();
    const all = drawDiffAugment(17, 100, 8, 8, ["color"], 1);
    expect(all.colorOn).toBeUndefined();
  });

  it("with p < 1 an image an op skips passes it exactly, values and gradient; the others are augmented as with p = 1", () => {
    const shape: [number, number, number, number] = [16, 8, 8, 3];
    const n = 16 * 8 * 8 * 3;
    const per = n / 16;
    const x = new Rng(21).normalArray(n);
    const w = new Rng(22).normalArray(n);
    for (const op of ["color", "translation", "cutout"] as const) {
      const full = drawDiffAugment(3, 16, 8, 8, [op]);
      const some = drawDiffAugment(3, 16, 8, 8, [op], 0.5);
      const on = some[`${op}On`]!;
      expect(on.some((v) => v === 1) && on.some((v) => v === 0)).toBe(true);
      const run = (draw: DiffAugmentDraw) =>
        tf.tidy(() => {
          const f = (v: tf.Tensor) =>
            tf.sum(tf.mul(applyDiffAugment(v as tf.Tensor4D, draw), tf.tensor4d(w, shape)));
          const xT = tf.tensor4d(x, shape);
          return {
            y: applyDiffAugment(xT, draw).dataSync() as Float32Array,
            g: tf.grad(f)(xT).dataSync() as Float32Array,
          };
        });
      const a = run(some);
      const b = run(full);
      for (let i = 0; i < 16; i++) {
        const rows = (t: Float32Array) => t.subarray(i * per, (i + 1) * per);
        if (on[i] === 1) {
          expect(rows(a.y), `${op} image ${i}`).toEqual(rows(b.y));
          expect(rows(a.g), `${op} image ${i}`).toEqual(rows(b.g));
        } else {
          expect(rows(a.y), `${op} image ${i}`).toEqual(x.subarray(i * per, (i + 1) * per));
          expect(rows(a.g), `${op} image ${i}`).toEqual(w.subarray(i * per, (i + 1) * per));
        }
      }
    }
  });

  it("refuses a draw for another batch size and unknown ops", () => {
    const draw = drawDiffAugment(1, 3, 8, 8, ["color"]);
    expect(() =>
      tf.tidy(() => applyDiffAugment(tf.zeros([4, 8, 8, 1]) as tf.Tensor4D, draw)),
    ).toThrow(/batch is 4/);
    expect(() => drawDiffAugment(1, 3, 8, 8, ["zoom" as "color"])).toThrow(
      /unknown DiffAugment op 'zoom'/,
    );
    expect(() => drawDiffAugment(1, 3, 8, 8, ["color"], 1.5)).toThrow(/p must be in \[0, 1\]/);
    expect(() => drawDiffAugment(1, 3, 8, 8, ["color"], Number.NaN)).toThrow(/got NaN/);
  });
});
