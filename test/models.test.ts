// The model registry's architectures: shapes at every supported size, the
// stateful layers' gradients against central finite differences, and how
// their state (batch-norm statistics, spectral-norm vectors, the EMA) advances.
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { EmaGenerator, emaBeta, jsEmaUpdate } from "../coordinator/ema.js";
import { initBackend } from "../shared/backend.js";
import { parseConfig } from "../shared/config.js";
import { selectLoss } from "../shared/losses.js";
import { computeMicrotask, type MicrotaskInput, type Phase } from "../shared/microtask.js";
import {
  buildModel,
  type GanModel,
  initWeights,
  MODEL_NAMES,
  toTensors,
} from "../shared/models/index.js";
import { Rng } from "../shared/rng.js";
import { directionalErrors as gradErrors } from "./helpers/gradcheck.js";

beforeAll(async () => {
  await initBackend("cpu");
});

function dcganCfg(model: Record<string, unknown>) {
  return parseConfig({
    model: { name: "dcgan", latentDim: 3, gFilters: 2, dFilters: 2, ...model },
    dataset: { name: "mnist" },
    steps: 1,
  }).model;
}

describe("the model registry", () => {
  it("names every architecture and rejects unsupported sizes with a clear error", () => {
    expect(MODEL_NAMES).toEqual(["mlp", "dcgan", "resnet"]);
    expect(() => buildModel(dcganCfg({}), [24, 24, 1])).toThrow(/dcgan supports square 16, 28/);
    expect(() => buildModel(dcganCfg({}), [32, 32, 2])).toThrow(/1 or 3 channels/);
  });

  for (const size of [16, 28, 32, 64]) {
    for (const channels of [1, 3]) {
      it(`dcgan at ${size}×${size}×${channels}: G makes [b,${size},${size},${channels}] in [-1,1], D one logit per sample`, () => {
        const model = buildModel(dcganCfg({ dNorm: size === 32 ? "spectral" : "batch" }), [
          size,
          size,
          channels,
        ]);
        const before = tf.memory().numTensors;
        const g = toTensors(model.g, initWeights(model.g, 1));
        const d = toTensors(model.d, initWeights(model.d, 2));
        const z = tf.randomNormal([3, model.latentDim], 0, 1, "float32", 3);
        for (const training of [true, false]) {
          const [x, logits] = tf.tidy(() => {
            const x = model.g.apply(g, z, { training });
            return [x, model.d.apply(d, x, { training: true })];
          });
          expect(x.shape).toEqual([3, size, size, channels]);
          const range = tf.tidy(() => [tf.min(x).dataSync()[0], tf.max(x).dataSync()[0]]);
          expect(range[0]).toBeGreaterThanOrEqual(-1);
          expect(range[1]).toBeLessThanOrEqual(1);
          expect(logits.shape).toEqual([3, 1]);
          tf.dispose([x, logits]);
        }
        tf.dispose([...g, ...d, z]);
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  }

  it("caps widths at maxFilters and lays G out from a 4×4 map (7×7 for 28)", () => {
    const m64 = buildModel(dcganCfg({ gFilters: 64, maxFilters: 512, kernel: 4 }), [64, 64, 3]);
    // 4×4×512 → 8×8×256 → 16×16×128 → 32×32×64 → 64×64×3 (PyTorch's DCGAN at ngf = 64, kernel 4).
    const shapes = m64.g.params.filter((p) => p.name.includes("convT")).map((p) => p.shape);
    expect(shapes).toEqual([
      [4, 4, 256, 512],
      [4, 4, 128, 256],
      [4, 4, 64, 128],
      [4, 4, 3, 64],
      [3],
    ]);
    const m28 = buildModel(dcganCfg({ gFilters: 32 }), [28, 28, 1]);
    expect(m28.g.params[0].shape).toEqual([3, 7 * 7 * 64]);
    // The default kernel is 5×5 (Radford et al.'s code; the PyTorch reference of BENCHMARKS §10).
    expect(m28.g.params.find((p) => p.name === "g.convT1.kernel")?.shape).toEqual([5, 5, 32, 64]);
  });

  it("declares state after parameters: G's batch-norm statistics, D's spectral-norm vectors", () => {
    const bn = buildModel(dcganCfg({}), [28, 28, 1]);
    expect(bn.g.state.map((s) => s.name)).toEqual([
      "g.bn0.mean",
      "g.bn0.var",
      "g.bn1.mean",
      "g.bn1.var",
    ]);
    expect(bn.g.reportSize).toBe(2 * (4 + 2));
    expect(bn.d.state).toEqual([]); // D never runs in eval mode: batch statistics only
    const sn = buildModel(dcganCfg({ dNorm: "spectral" }), [28, 28, 1]);
    expect(sn.d.state.map((s) => s.name)).toEqual(["d.conv1.u", "d.conv2.u", "d.dense3.u"]);
    expect(sn.d.size - sn.d.trainableSize).toBe(2 + 4 + 1);
    const plain = buildModel(dcganCfg({ gNorm: "none", dNorm: "none" }), [28, 28, 1]);
    expect(plain.g.size).toBe(plain.g.trainableSize);
    expect(plain.d.size).toBe(plain.d.trainableSize);
  });
});

// ---------------------------------------------------------------------------
// Gradient checks.

interface Setup {
  model: GanModel;
  g: Float32Array;
  d: Float32Array;
  real: Float32Array;
}

function setup(norms: { gNorm: string; dNorm: string }): Setup {
  const model = buildModel(dcganCfg(norms), [16, 16, 1]);
  const rng = new Rng(7);
  // Larger-than-default weights so the losses are far from flat.
  const g = initWeights(model.g, 11);
  const d = initWeights(model.d, 12);
  for (const [net, flat] of [
    [model.g, g],
    [model.d, d],
  ] as const) {
    for (let i = 0; i < net.trainableSize; i++) flat[i] = flat[i] * 3 + 0.05 * rng.nextNormal();
    // Spectral-norm vectors converged, as after many coordinator updates.
    for (let i = 0; i < 60; i++) net.advanceState(flat);
  }
  return { model, g, d, real: rng.normalArray(6 * 16 * 16, 0, 0.5) };
}

const loss = selectLoss({ name: "non-saturating", gpWeight: 10, r1: 0, r2: 0, regEvery: 1 });

function run(s: Setup, phase: Phase, g: Float32Array, d: Float32Array, noiseSeed = 99) {
  const input: MicrotaskInput = {
    phase,
    gWeights: g,
    dWeights: d,
    real: s.real,
    batch: 6,
    noiseSeed,
  };
  return computeMicrotask(s.model, loss, input);
}

/** Relative errors |fd − analytic| / ‖grad‖ along random unit directions (helpers/gradcheck). */
function directionalErrors(s: Setup, phase: Phase, gradSeed = 99): number[] {
  const net = phase === "D" ? s.model.d : s.model.g;
  const grad = run(s, phase, s.g, s.d, gradSeed).grad.subarray(0, net.trainableSize);
  const loss = (w: Float32Array) => {
    const r = phase === "D" ? run(s, phase, s.g, w) : run(s, phase, w, s.d);
    return phase === "D" ? r.dLoss! : r.gLoss;
  };
  return gradErrors(phase === "D" ? s.d : s.g, 0, grad, loss, new Rng(phase === "D" ? 1 : 2), 5);
}

describe("stateful layers' gradients match central finite differences", () => {
  const cases = [
    { gNorm: "none", dNorm: "none" },
    { gNorm: "batch", dNorm: "batch" },
    { gNorm: "none", dNorm: "spectral" },
    { gNorm: "batch", dNorm: "spectral" },
  ];
  for (const norms of cases) {
    for (const phase of ["D", "G"] as const) {
      it(`${phase} phase, G ${norms.gNorm} norm, D ${norms.dNorm} norm`, () => {
        const errors = directionalErrors(setup(norms), phase);
        // float32 noise alone gives a few 1e-3 here (the no-norm case included).
        expect(Math.max(...errors)).toBeLessThan(1e-2);
      });
    }
  }

  it("can fail: another batch's gradient is far off", () => {
    const errors = directionalErrors(setup({ gNorm: "batch", dNorm: "batch" }), "G", 100);
    expect(Math.max(...errors)).toBeGreaterThan(0.05);
  });
});

// ---------------------------------------------------------------------------
// State.

describe("network state", () => {
  it("G's report holds its batch-norm moments; the running statistics follow them in shard order", () => {
    const s = setup({ gNorm: "batch", dNorm: "none" });
    const { g: net } = s.model;
    const r1 = run(s, "G", s.g, s.d);
    expect(r1.grad.length).toBe(net.trainableSize + net.reportSize);
    const report = r1.grad.subarray(net.trainableSize);
    // Layer 0's means are G's projected, reshaped pre-norm activations averaged per channel.
    const flat = s.g.slice();
    net.absorbReports(flat, [report, report], [3, 3]);
    const channels = net.state[0].shape[0];
    const mean0 = flat.subarray(net.trainableSize, net.trainableSize + channels);
    for (let c = 0; c < channels; c++) expect(mean0[c]).toBeCloseTo(0.1 * report[c], 6);
    // Parameters are untouched; another report order is another (deterministic) result.
    expect(flat.subarray(0, net.trainableSize)).toEqual(s.g.subarray(0, net.trainableSize));
    const other = run(s, "D", s.g, s.d); // a different batch: only to have a second report
    expect(other.grad.length).toBe(s.model.d.trainableSize);
  });

  it("spectral norm's power iteration converges to the kernel's largest singular value", () => {
    const model = buildModel(
      dcganCfg({ gNorm: "none", dNorm: "spectral", kernel: 4 }),
      [16, 16, 1],
    );
    const flat = initWeights(model.d, 5);
    for (let i = 0; i < 100; i++) model.d.advanceState(flat);
    // Layer 1's kernel [4,4,1,2] as a 16×2 matrix; u: its right singular vector.
    const p = model.d.params[0];
    expect(p.name).toBe("d.conv1.kernel");
    const w = tf.tensor2d(flat.subarray(0, 32), [16, 2]);
    const sigma = tf.tidy(() => {
      const gram = tf.matMul(w, w, true, false).arraySync() as number[][];
      const [a, b, c] = [gram[0][0], gram[0][1], gram[1][1]];
      return Math.sqrt((a + c) / 2 + Math.sqrt(((a - c) / 2) ** 2 + b * b));
    });
    const u = flat.subarray(model.d.trainableSize, model.d.trainableSize + 2);
    const wu = tf.tidy(() => tf.norm(tf.matMul(w, tf.tensor2d(u, [2, 1]))).dataSync()[0]);
    expect(wu).toBeCloseTo(sigma, 5);
    w.dispose();
  });

  it("EMA: β = 0.5^(batch/h) with StyleGAN2-ADA's ramp-up; parameters averaged, state copied", () => {
    const cfg = { halfLifeImages: 10000, rampup: 0.05 };
    // After 100 G updates of 64 images, the ramp-up caps h at 0.05·6400 = 320 images.
    expect(emaBeta(cfg, 64, 100)).toBeCloseTo(0.5 ** (64 / 320), 12);
    expect(emaBeta(cfg, 64, 1e6)).toBeCloseTo(0.5 ** (64 / 10000), 12);
    expect(emaBeta({ halfLifeImages: 64, rampup: null }, 64, 1)).toBe(0.5);
    const model = buildModel(dcganCfg({}), [16, 16, 1]);
    const start = initWeights(model.g, 1);
    const ema = new EmaGenerator({ halfLifeImages: 64, rampup: null }, 64, model.g, start);
    const next = start.map((v) => v + 1);
    ema.update(next, 1);
    const n = model.g.trainableSize;
    expect(ema.weights[0]).toBe(Math.fround(next[0] + (start[0] - next[0]) * 0.5));
    expect(ema.weights.subarray(n)).toEqual(next.subarray(n));
  });

  it("EMA: the WebAssembly update (shared/wasm/ema.wat) gives jsEmaUpdate's bits over many updates, across chunks, and after restore", () => {
    const model = buildModel(dcganCfg({ latentDim: 9, gFilters: 16 }), [16, 16, 1]);
    const n = model.g.trainableSize;
    expect(n).toBeGreaterThan(16384); // more than one chunk, and an odd tail when n is odd
    const start = initWeights(model.g, 3);
    const cfg = { halfLifeImages: 500, rampup: 0.05 };
    const ema = new EmaGenerator(cfg, 64, model.g, start);
    const ref = start.slice();
    const rng = new Rng(9);
    let g = start.slice();
    const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
    for (let t = 1; t <= 6; t++) {
      g = g.map((v) => v + (rng.nextFloat() - 0.5) * 10 ** (rng.nextFloat() * 6 - 5));
      ema.update(g, t);
      jsEmaUpdate(ref.subarray(0, n), g.subarray(0, n), emaBeta(cfg, 64, t));
      ref.set(g.subarray(n), n);
      expect(bits(ema.weights)).toEqual(bits(ref));
    }
    expect(ema.weights.some((v, i) => v !== g[i] && i < n)).toBe(true);
    // restore (a checkpoint) replaces the average that later updates start from
    const again = new EmaGenerator(cfg, 64, model.g, start);
    again.restore(ema.weights);
    g = g.map((v) => v * 0.99);
    again.update(g, 7);
    ema.update(g, 7);
    expect(bits(again.weights)).toEqual(bits(ema.weights));
  });
});
