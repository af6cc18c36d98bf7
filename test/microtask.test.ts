import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "../shared/backend.js";
import { LOSS_NAMES, parseConfig } from "../shared/config.js";
import { selectLoss } from "../shared/losses.js";
import { computeMicrotask, type MicrotaskInput, type Phase } from "../shared/microtask.js";
import { buildModel, initWeights } from "../shared/models/index.js";
import { Rng } from "../shared/rng.js";

beforeAll(async () => {
  await initBackend("cpu");
});

function tinySetup(lossName: (typeof LOSS_NAMES)[number]) {
  const cfg = parseConfig({
    model: { name: "mlp", latentDim: 3, gHidden: [6], dHidden: [6] },
    loss: { name: lossName },
    dataset: { name: "ring" },
    steps: 1,
  });
  const model = buildModel(cfg.model, [2]);
  const loss = selectLoss(cfg.loss);
  const rng = new Rng(7);
  // Larger-than-default weights so the losses are far from flat and differences are well above float32 noise.
  const g = initWeights(model.g, 11).map((v) => v * 2);
  const d = initWeights(model.d, 12).map((v) => v * 2);
  const real = rng.normalArray(8 * 2, 0, 1.5);
  return { model, loss, g, d, real };
}

function phaseLoss(
  setup: ReturnType<typeof tinySetup>,
  phase: Phase,
  g: Float32Array,
  d: Float32Array,
): number {
  const input: MicrotaskInput = {
    phase,
    gWeights: g,
    dWeights: d,
    real: setup.real,
    batch: 8,
    noiseSeed: 99,
  };
  const r = computeMicrotask(setup.model, setup.loss, input);
  return phase === "D" ? r.dLoss! : r.gLoss;
}

/** Largest relative error between the analytic directional derivative and central differences. */
function directionalErrors(setup: ReturnType<typeof tinySetup>, phase: Phase): number[] {
  const { g, d } = setup;
  const grad = computeMicrotask(setup.model, setup.loss, {
    phase,
    gWeights: g,
    dWeights: d,
    real: setup.real,
    batch: 8,
    noiseSeed: 99,
  }).grad;
  const target = phase === "D" ? d : g;
  const rng = new Rng(phase === "D" ? 1 : 2);
  const errors: number[] = [];
  // The gradient direction itself, then random unit directions.
  const directions = [
    grad.map((v) => v),
    ...[0, 1, 2, 3].map(() => rng.normalArray(target.length)),
  ];
  for (const dir of directions) {
    const n = Math.hypot(...dir);
    const v = dir.map((x) => x / n);
    const h = 3e-3;
    const plus = target.map((w, i) => w + h * v[i]);
    const minus = target.map((w, i) => w - h * v[i]);
    const lp = phase === "D" ? phaseLoss(setup, phase, g, plus) : phaseLoss(setup, phase, plus, d);
    const lm =
      phase === "D" ? phaseLoss(setup, phase, g, minus) : phaseLoss(setup, phase, minus, d);
    const fd = (lp - lm) / (2 * h);
    let analytic = 0;
    for (let i = 0; i < v.length; i++) analytic += grad[i] * v[i];
    // Relative to the gradient's norm: the scale of any directional derivative.
    const norm = Math.hypot(...grad);
    errors.push(Math.abs(fd - analytic) / norm);
  }
  return errors;
}

describe("microtask gradients", () => {
  for (const lossName of LOSS_NAMES) {
    for (const phase of ["D", "G"] as const) {
      it(`${phase}-phase gradient matches central finite differences (${lossName})`, () => {
        const setup = tinySetup(lossName);
        const errors = directionalErrors(setup, phase);
        expect(Math.max(...errors)).toBeLessThan(1e-3);
      });
    }
  }

  it("returns the gradient of the phase's network only and leaves the weights untouched", () => {
    const setup = tinySetup("non-saturating");
    const gBefore = setup.g.slice();
    const dBefore = setup.d.slice();
    const base = { gWeights: setup.g, dWeights: setup.d, real: setup.real, batch: 8, noiseSeed: 5 };
    const dRes = computeMicrotask(setup.model, setup.loss, { ...base, phase: "D" });
    const gRes = computeMicrotask(setup.model, setup.loss, { ...base, phase: "G" });
    expect(dRes.grad.length).toBe(setup.model.d.size);
    expect(gRes.grad.length).toBe(setup.model.g.size);
    expect(setup.g).toEqual(gBefore);
    expect(setup.d).toEqual(dBefore);
    expect(dRes.dReal).not.toBeNull();
    expect(gRes.dReal).toBeNull();
    expect(dRes.dFake).toBeCloseTo(gRes.dFake, 6);
  });

  it("is deterministic and depends on the noise seed", () => {
    const setup = tinySetup("hinge");
    const base = {
      gWeights: setup.g,
      dWeights: setup.d,
      real: setup.real,
      batch: 8,
      phase: "G" as const,
    };
    const a = computeMicrotask(setup.model, setup.loss, { ...base, noiseSeed: 1 });
    const b = computeMicrotask(setup.model, setup.loss, { ...base, noiseSeed: 1 });
    const c = computeMicrotask(setup.model, setup.loss, { ...base, noiseSeed: 2 });
    expect(b.grad).toEqual(a.grad);
    expect(c.grad).not.toEqual(a.grad);
  });

  it("does not leak tensors", () => {
    const setup = tinySetup("wgan-gp");
    const base = { gWeights: setup.g, dWeights: setup.d, real: setup.real, batch: 8, noiseSeed: 5 };
    computeMicrotask(setup.model, setup.loss, { ...base, phase: "D" });
    const before = tf.memory().numTensors;
    computeMicrotask(setup.model, setup.loss, { ...base, phase: "D" });
    computeMicrotask(setup.model, setup.loss, { ...base, phase: "G" });
    expect(tf.memory().numTensors).toBe(before);
  });

  describe("microbatch", () => {
    const relErr = (a: Float32Array, b: Float32Array) => {
      let num = 0;
      let den = 0;
      for (let i = 0; i < a.length; i++) {
        num += (a[i] - b[i]) ** 2;
        den += b[i] ** 2;
      }
      return Math.sqrt(num / den);
    };
    for (const lossName of ["non-saturating", "wgan-gp"] as const) {
      for (const phase of ["D", "G"] as const) {
        it(`pieces of 3 and 4 sum to the whole batch's ${phase} gradient and stats (${lossName})`, () => {
          const setup = tinySetup(lossName);
          const base = {
            gWeights: setup.g,
            dWeights: setup.d,
            real: setup.real,
            batch: 8,
            noiseSeed: 9,
            phase,
          };
          const whole = computeMicrotask(setup.model, setup.loss, base);
          for (const microbatch of [3, 4]) {
            const before = tf.memory().numTensors;
            const split = computeMicrotask(setup.model, setup.loss, { ...base, microbatch });
            expect(tf.memory().numTensors).toBe(before);
            expect(relErr(split.grad, whole.grad)).toBeLessThan(1e-5);
            expect(split.gLoss).toBeCloseTo(whole.gLoss, 5);
            expect(split.dFake).toBeCloseTo(whole.dFake, 5);
            if (phase === "D") expect(split.dLoss!).toBeCloseTo(whole.dLoss!, 5);
            // Deterministic: the same pieces in the same order give the same bits.
            const again = computeMicrotask(setup.model, setup.loss, { ...base, microbatch });
            expect(again.grad).toEqual(split.grad);
          }
          // A microbatch of the whole batch (or more) is one pass: the very same bits.
          const one = computeMicrotask(setup.model, setup.loss, { ...base, microbatch: 8 });
          expect(one.grad).toEqual(whole.grad);
        });
      }
    }
  });
});
