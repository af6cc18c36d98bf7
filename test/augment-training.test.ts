// DiffAugment inside a microtask: every image D sees goes through it, in both
// phases, with draws that are a pure function of the microtask's noise seed.
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { configHash } from "../coordinator/checkpoint.js";
import { initBackend } from "../shared/backend.js";
import { ConfigError, parseConfig } from "../shared/config.js";
import { selectLoss } from "../shared/losses.js";
import { computeMicrotask, type Phase } from "../shared/microtask.js";
import { buildModel, initWeights } from "../shared/models/index.js";
import { Rng } from "../shared/rng.js";

beforeAll(async () => {
  await initBackend("cpu");
});

function setup(loss: Record<string, unknown>) {
  const cfg = parseConfig({
    model: { name: "dcgan", latentDim: 3, gFilters: 2, dFilters: 2, gNorm: "none", dNorm: "none" },
    loss,
    dataset: { name: "mnist" },
    augment: { policy: ["color", "translation", "cutout"] },
    steps: 1,
  });
  const model = buildModel(cfg.model, [16, 16, 1]);
  const g = initWeights(model.g, 11).map((v) => v * 3);
  const d = initWeights(model.d, 12).map((v) => v * 3);
  const real = new Rng(7).normalArray(6 * 16 * 16, 0, 0.5);
  return { model, loss: selectLoss(cfg.loss), g, d, real, policy: cfg.augment!.policy };
}

const relErr = (a: Float32Array, b: Float32Array) => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
};

describe("DiffAugment in the microtask", () => {
  for (const phase of ["D", "G"] as Phase[]) {
    it(`changes the ${phase} gradient, is deterministic, and microbatch pieces sum to the whole (rpgan + R1/R2)`, () => {
      const s = setup({ name: "rpgan", r1: 1, r2: 1 });
      const base = { phase, gWeights: s.g, dWeights: s.d, real: s.real, batch: 6, noiseSeed: 5 };
      const plain = computeMicrotask(s.model, s.loss, base);
      const aug = computeMicrotask(s.model, s.loss, { ...base, augment: s.policy });
      expect(relErr(aug.grad, plain.grad)).toBeGreaterThan(1e-3);
      expect(computeMicrotask(s.model, s.loss, { ...base, augment: s.policy }).grad).toEqual(
        aug.grad,
      );
      // Another seed, other draws.
      const other = computeMicrotask(s.model, s.loss, { ...base, noiseSeed: 6, augment: s.policy });
      expect(other.grad).not.toEqual(aug.grad);
      const before = tf.memory().numTensors;
      const split = computeMicrotask(s.model, s.loss, {
        ...base,
        augment: s.policy,
        microbatch: 4,
      });
      expect(tf.memory().numTensors).toBe(before);
      expect(relErr(split.grad, aug.grad)).toBeLessThan(1e-5);
    });
  }

  for (const phase of ["D", "G"] as Phase[]) {
    it(`p = 0 gives the ${phase} gradient bit for bit of no augmentation; p = 0.5 is deterministic, between, and splits into microbatches (rpgan + R1/R2)`, () => {
      const s = setup({ name: "rpgan", r1: 1, r2: 1 });
      const base = { phase, gWeights: s.g, dWeights: s.d, real: s.real, batch: 6, noiseSeed: 5 };
      const plain = computeMicrotask(s.model, s.loss, base);
      const all = computeMicrotask(s.model, s.loss, { ...base, augment: s.policy });
      const none = computeMicrotask(s.model, s.loss, { ...base, augment: s.policy, augmentP: 0 });
      expect(none.grad).toEqual(plain.grad);
      const one = computeMicrotask(s.model, s.loss, { ...base, augment: s.policy, augmentP: 1 });
      expect(one.grad).toEqual(all.grad);
      const half = { ...base, augment: s.policy, augmentP: 0.5 };
      const a = computeMicrotask(s.model, s.loss, half);
      expect(computeMicrotask(s.model, s.loss, half).grad).toEqual(a.grad);
      expect(relErr(a.grad, plain.grad)).toBeGreaterThan(1e-3);
      expect(relErr(a.grad, all.grad)).toBeGreaterThan(1e-3);
      const before = tf.memory().numTensors;
      const split = computeMicrotask(s.model, s.loss, { ...half, microbatch: 4 });
      expect(tf.memory().numTensors).toBe(before);
      expect(relErr(split.grad, a.grad)).toBeLessThan(1e-5);
    });
  }
});

describe("augment.p in the config", () => {
  const cfg = (augment: Record<string, unknown>) =>
    parseConfig({ model: { name: "dcgan" }, dataset: { name: "mnist" }, augment, steps: 1 });

  it("p = 1 is the config without p (same config hash: older checkpoints resume); other p differ", () => {
    const without = cfg({ policy: ["color", "cutout"] });
    const one = cfg({ policy: ["color", "cutout"], p: 1 });
    expect(one).toEqual(without);
    expect(configHash(one)).toBe(configHash(without));
    const half = cfg({ policy: ["color", "cutout"], p: 0.5 });
    expect(half.augment).toEqual({ policy: ["color", "cutout"], p: 0.5 });
    expect(configHash(half)).not.toBe(configHash(without));
    expect(configHash(cfg({ policy: ["color", "cutout"], p: 0 }))).not.toBe(configHash(half));
  });

  it("a p outside [0, 1] is one config line naming augment.p", () => {
    for (const [p, want] of [
      [1.5, "augment.p: must be ≤ 1, got 1.5"],
      [-0.1, "augment.p: must be ≥ 0, got -0.1"],
      ["half", 'augment.p: expected a number, got "half"'],
    ] as const) {
      let message = "";
      try {
        cfg({ policy: ["color"], p });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        message = (err as Error).message;
      }
      expect(message).toBe(`config: ${want}`);
    }
  });
});
