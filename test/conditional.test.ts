// Class-conditional models in the microtask: the class embedding (G), conditional
// batch norm (G, model.conditionalNorm) and the projection head (D) against central
// finite differences, R1/R2 with the labels fixed, the fakes' classes as a pure
// function of the noise seed, and microbatch pieces summing to the whole batch with
// their labels.
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { generatorLayersModel } from "../coordinator/export.js";
import { initBackend } from "../shared/backend.js";
import { parseConfig } from "../shared/config.js";
import { chunkFeatures, EVAL_CHUNK } from "../shared/evaluation.js";
import { loadClassifier } from "../shared/features/classifier.js";
import { type GanLoss, selectLoss } from "../shared/losses.js";
import {
  computeMicrotask,
  fakeClasses,
  type MicrotaskInput,
  type Phase,
} from "../shared/microtask.js";
import { G_EMBED_INIT } from "../shared/models/dcgan.js";
import { buildModel, type GanModel, initWeights } from "../shared/models/index.js";
import { Rng } from "../shared/rng.js";
import { generateSamples, sampleClasses, sampleGridCells } from "../shared/runner.js";
import { directionalErrors as gradErrors, paramRange as range } from "./helpers/gradcheck.js";

beforeAll(async () => {
  await initBackend("cpu");
});

const CLASSES = 4;
const BATCH = 6;
/** The reals' classes: class 3 appears once, class 0 twice. */
const LABELS = Int32Array.from([0, 1, 2, 3, 1, 0]);

type LossCfg = Record<string, unknown>;

interface Setup {
  model: GanModel;
  g: Float32Array;
  d: Float32Array;
  real: Float32Array;
  loss: GanLoss;
}

/** `scale`: weights this many times their init, so the losses are far from flat. */
function setup(
  model: Record<string, unknown>,
  lossCfg: LossCfg = { name: "non-saturating" },
  scale = 3,
) {
  const cfg = parseConfig({
    model: {
      name: "dcgan",
      latentDim: 3,
      gFilters: 2,
      dFilters: 2,
      conditional: true,
      classes: CLASSES,
      ...model,
    },
    loss: lossCfg,
    dataset: { name: "mnist" },
    steps: 1,
  });
  const built = buildModel(cfg.model, [16, 16, 1]);
  const rng = new Rng(7);
  const g = initWeights(built.g, 11);
  const d = initWeights(built.d, 12);
  // G's class embedding is drawn N(0, 0.1²) (G_EMBED_INIT); at N(0, 1) here, as z's scale,
  // so G's loss is far from flat in it, as the other weights are by `scale`.
  if (built.g.params.some((p) => p.name === "g.embed.embeddings")) {
    const [embed, embedSize] = range(built.g, "g.embed.embeddings");
    for (let i = embed; i < embed + embedSize; i++) g[i] /= G_EMBED_INIT.std;
  }
  for (const [net, flat] of [
    [built.g, g],
    [built.d, d],
  ] as const) {
    for (let i = 0; i < net.trainableSize; i++) flat[i] = flat[i] * scale + 0.05 * rng.nextNormal();
    for (let i = 0; i < 60; i++) net.advanceState(flat);
  }
  return {
    model: built,
    g,
    d,
    real: rng.normalArray(BATCH * 16 * 16, 0, 0.5),
    loss: selectLoss(cfg.loss),
  } as Setup;
}

function input(s: Setup, phase: Phase, g: Float32Array, d: Float32Array): MicrotaskInput {
  return {
    phase,
    gWeights: g,
    dWeights: d,
    real: s.real,
    labels: LABELS,
    batch: BATCH,
    noiseSeed: 99,
  };
}

function run(s: Setup, phase: Phase, g: Float32Array, d: Float32Array) {
  return computeMicrotask(s.model, s.loss, input(s, phase, g, d));
}

/**
 * Relative errors |fd − analytic| / ‖grad restricted to the parameter‖ of the phase's
 * loss along random unit directions that move only parameter `name`.
 */
function errorsAlong(s: Setup, phase: Phase, name: string): number[] {
  const net = phase === "D" ? s.model.d : s.model.g;
  const [start, n] = range(net, name);
  const grad = run(s, phase, s.g, s.d).grad.subarray(start, start + n);
  expect(Math.hypot(...grad)).toBeGreaterThan(1e-4);
  const loss = (w: Float32Array) => {
    const r = phase === "D" ? run(s, phase, s.g, w) : run(s, phase, w, s.d);
    return phase === "D" ? r.dLoss! : r.gLoss;
  };
  return gradErrors(phase === "D" ? s.d : s.g, start, grad, loss, new Rng(3), 4);
}

describe("conditional gradients match central finite differences", () => {
  for (const gNorm of ["none", "batch"]) {
    it(`G's class embedding (G ${gNorm} norm)`, () => {
      // Without batch norm, default-scale weights leave G's loss nearly flat in E.
      const s = setup({ gNorm, dNorm: "none" }, undefined, 10);
      expect(Math.max(...errorsAlong(s, "G", "g.embed.embeddings"))).toBeLessThan(1e-2);
    });
  }

  for (const name of ["g.bn0.gamma", "g.bn0.beta", "g.bn1.gamma", "g.bn1.beta"]) {
    it(`G's conditional batch norm: ${name} [classes, channels] (model.conditionalNorm)`, () => {
      // At scale 3 the loss is flat enough in γ, β that float32 noise is 2 % of the gradient.
      const s = setup({ gNorm: "batch", dNorm: "none", conditionalNorm: true }, undefined, 10);
      const shape = s.model.g.params.find((p) => p.name === name)?.shape;
      expect(shape).toEqual([CLASSES, name.includes("bn0") ? 4 : 2]);
      expect(s.model.g.params.some((p) => p.name === "g.embed.embeddings")).toBe(false);
      expect(Math.max(...errorsAlong(s, "G", name))).toBeLessThan(1e-2);
    });
  }

  for (const dNorm of ["none", "spectral", "batch"]) {
    it(`D's projection head (D ${dNorm} norm)`, () => {
      const s = setup({ gNorm: "none", dNorm });
      expect(Math.max(...errorsAlong(s, "D", "d.embed.kernel"))).toBeLessThan(1e-2);
    });
  }

  it("rpgan + R1/R2 (second order through the projection head, labels fixed)", () => {
    const s = setup({ gNorm: "none", dNorm: "none" }, { name: "rpgan", r1: 1, r2: 1 });
    expect(Math.max(...errorsAlong(s, "D", "d.embed.kernel"))).toBeLessThan(1e-2);
    // rpgan's G phase also sees the reals, each judged as of its own class.
    const strong = setup({ gNorm: "none", dNorm: "none" }, { name: "rpgan" }, 10);
    expect(Math.max(...errorsAlong(strong, "G", "g.embed.embeddings"))).toBeLessThan(1e-2);
  });

  it("can fail: the gradient of another class's samples is far off", () => {
    const s = setup({ gNorm: "none", dNorm: "none" });
    const net = s.model.d;
    const [start, n] = range(net, "d.embed.kernel");
    const want = run(s, "D", s.g, s.d).grad.subarray(start, start + n);
    const other = computeMicrotask(s.model, s.loss, {
      ...input(s, "D", s.g, s.d),
      labels: Int32Array.from([1, 2, 3, 0, 2, 1]),
    }).grad.subarray(start, start + n);
    let num = 0;
    for (let i = 0; i < n; i++) num += (want[i] - other[i]) ** 2;
    expect(Math.sqrt(num) / Math.hypot(...want)).toBeGreaterThan(0.05);
  });
});

describe("conditional microtasks", () => {
  it("the embedding rows of a class no sample has get no gradient; labels are required", () => {
    const s = setup({ gNorm: "none", dNorm: "none" });
    const labels = Int32Array.from([0, 1, 1, 0, 1, 0]); // classes 2 and 3 absent among the reals
    const base = { ...input(s, "D", s.g, s.d), labels };
    const fakes = fakeClasses(base.noiseSeed, BATCH, CLASSES);
    const [start, n] = range(s.model.d, "d.embed.kernel");
    const grad = computeMicrotask(s.model, s.loss, base).grad;
    const features = n / CLASSES;
    for (let c = 0; c < CLASSES; c++) {
      const row = grad.subarray(start + c * features, start + (c + 1) * features);
      const seen = labels.includes(c) || fakes.includes(c);
      if (seen) expect(Math.max(...row.map(Math.abs))).toBeGreaterThan(0);
      else expect(Array.from(row).every((v) => v === 0)).toBe(true);
    }
    expect(() => computeMicrotask(s.model, s.loss, { ...base, labels: undefined })).toThrow(
      /needs 6 labels, got 0/,
    );
  });

  it("conditional batch norm: only the rows of the fakes' classes get a gradient; eval mode is per class", async () => {
    const s = setup({ gNorm: "batch", dNorm: "none", conditionalNorm: true });
    const fakes = fakeClasses(99, BATCH, CLASSES);
    const grad = run(s, "G", s.g, s.d).grad;
    for (const name of ["g.bn0.gamma", "g.bn1.beta"]) {
      const [start, n] = range(s.model.g, name);
      const channels = n / CLASSES;
      for (let c = 0; c < CLASSES; c++) {
        const row = grad.subarray(start + c * channels, start + (c + 1) * channels);
        if (fakes.includes(c)) expect(Math.max(...row.map(Math.abs))).toBeGreaterThan(0);
        else expect(Array.from(row).every((v) => v === 0)).toBe(true);
      }
    }
    // Eval mode (running statistics): the same z gives different images for different classes.
    const a = await generateSamples(s.model, s.g, 5, 2, Int32Array.from([0, 0]));
    const b = await generateSamples(s.model, s.g, 5, 2, Int32Array.from([1, 1]));
    expect(a).not.toEqual(b);
    expect(await generateSamples(s.model, s.g, 5, 2, Int32Array.from([0, 0]))).toEqual(a);
  });

  it("agon export refuses conditional batch norm in one line", () => {
    const cfg = parseConfig({
      model: { name: "dcgan", latentDim: 3, gFilters: 2, dFilters: 2, conditional: true },
      dataset: { name: "mnist" },
      steps: 1,
    });
    const model = { ...cfg.model, classes: CLASSES, conditionalNorm: true };
    const built = buildModel(model, [16, 16, 1]);
    expect(() => generatorLayersModel(model, built, initWeights(built.g, 1))).toThrow(
      /agon export does not support model\.conditionalNorm/,
    );
  });

  it("model.conditionalNorm needs a conditional model with batch norm in G", () => {
    for (const model of [
      { conditionalNorm: true },
      { conditional: true, gNorm: "none", conditionalNorm: true },
    ]) {
      expect(() =>
        parseConfig({ model: { name: "dcgan", ...model }, dataset: { name: "mnist" }, steps: 1 }),
      ).toThrow(/conditionalNorm.*only goes with model\.conditional: true and model\.gNorm: batch/);
    }
  });

  it("fakes' classes are uniform draws from the noise seed; grids hold one row per class", () => {
    expect(fakeClasses(5, 8, 10)).toEqual(fakeClasses(5, 8, 10));
    expect(fakeClasses(6, 8, 10)).not.toEqual(fakeClasses(5, 8, 10));
    const many = fakeClasses(1, 10000, 10);
    const counts = new Array(10).fill(0);
    for (const c of many) counts[c]++;
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(120);
    expect(Array.from(sampleClasses(12, 4)!)).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
    expect(Array.from(sampleClasses(5, 10)!)).toEqual([0, 1, 2, 3, 4]);
    // Every class appears when count >= classes: spread evenly, the first ones once more.
    expect(Array.from(sampleClasses(16, 10)!)).toEqual([
      0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9,
    ]);
    expect(Array.from(sampleGridCells(sampleClasses(16, 10)!, 10))).toEqual([
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 18,
    ]);
    expect(Array.from(sampleGridCells(sampleClasses(12, 4)!, 4))).toEqual(
      Array.from({ length: 12 }, (_, i) => i),
    );
    expect(sampleClasses(5, 0)).toBeNull();
  });

  for (const phase of ["D", "G"] as Phase[]) {
    it(`microbatch pieces sum to the whole batch with their labels (${phase} phase, rpgan + R1)`, () => {
      const s = setup({ gNorm: "none", dNorm: "none" }, { name: "rpgan", r1: 1 });
      const whole = computeMicrotask(s.model, s.loss, input(s, phase, s.g, s.d));
      const before = tf.memory().numTensors;
      const split = computeMicrotask(s.model, s.loss, {
        ...input(s, phase, s.g, s.d),
        microbatch: 4,
      });
      expect(tf.memory().numTensors).toBe(before);
      let num = 0;
      let den = 0;
      for (let i = 0; i < whole.grad.length; i++) {
        num += (split.grad[i] - whole.grad[i]) ** 2;
        den += whole.grad[i] ** 2;
      }
      expect(Math.sqrt(num / den)).toBeLessThan(1e-5);
    });
  }
});

describe("agon eval on a conditional model", () => {
  it("draws the classes uniformly from its seed, chunk by chunk as in one pass", async () => {
    const cfg = parseConfig({
      model: {
        name: "dcgan",
        latentDim: 3,
        gFilters: 2,
        dFilters: 2,
        conditional: true,
        classes: 10,
      },
      dataset: { name: "mnist" },
      steps: 1,
    });
    const model = buildModel(cfg.model, [28, 28, 1]);
    const g = initWeights(model.g, 5);
    const n = EVAL_CHUNK + 20;
    const seed = 1133;
    const classes = fakeClasses(seed, n, 10);
    const all = await generateSamples(model, g, seed, n, classes);
    const size = 28 * 28;
    const tail = all.subarray(EVAL_CHUNK * size);
    const want = await loadClassifier("mnist").features(tail, 20, 20);
    const got = await chunkFeatures(model, g, "mnist", seed, n, 1);
    expect(got.n).toBe(20);
    expect(got.data).toEqual(want);
  });
});
