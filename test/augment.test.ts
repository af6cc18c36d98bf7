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

  it("refuses a draw for another batch size and unknown ops", () => {
    const draw = drawDiffAugment(1, 3, 8, 8, ["color"]);
    expect(() =>
      tf.tidy(() => applyDiffAugment(tf.zeros([4, 8, 8, 1]) as tf.Tensor4D, draw)),
    ).toThrow(/batch is 4/);
    expect(() => drawDiffAugment(1, 3, 8, 8, ["zoom" as "color"])).toThrow(
      /unknown DiffAugment op 'zoom'/,
    );
  });
});
