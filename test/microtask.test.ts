import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "../shared/backend.js";
import { LOSS_NAMES, parseConfig } from "../shared/config.js";
import { selectLoss } from "../shared/losses.js";
import { computeMicrotask, type MicrotaskInput, type Phase } from "../shared/microtask.js";
import { buildModel, initWeights, toTensors } from "../shared/models/index.js";
import { Rng } from "../shared/rng.js";

beforeAll(async () => {
  await initBackend("cpu");
});

function tinySetup(
  lossName: (typeof LOSS_NAMES)[number],
  lossOptions: Record<string, number> = {},
) {
  const cfg = parseConfig({
    model: { name: "mlp", latentDim: 3, gHidden: [6], dHidden: [6] },
    loss: { name: lossName, ...lossOptions },
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

  describe("R1/R2 zero-centred penalties", () => {
    for (const [what, opts] of [
      ["R1", { r1: 0.7 }],
      ["R2", { r2: 0.9 }],
      ["R1 and R2 with rpgan", { r1: 0.5, r2: 0.5 }],
    ] as const) {
      it(`D gradient with ${what} matches central finite differences (second order through D)`, () => {
        const setup = tinySetup(what.includes("rpgan") ? "rpgan" : "non-saturating", opts);
        const errors = directionalErrors(setup, "D");
        expect(Math.max(...errors)).toBeLessThan(1e-3);
      });
    }

    it("adds γ/2·E‖∇x D(x)‖² on the reals, with ∇x D checked by finite differences in x", () => {
      const gamma = 0.8;
      const plain = tinySetup("non-saturating");
      const withR1 = tinySetup("non-saturating", { r1: gamma });
      const base = {
        gWeights: plain.g,
        dWeights: plain.d,
        real: plain.real,
        batch: 8,
        noiseSeed: 3,
      };
      const l0 = computeMicrotask(plain.model, plain.loss, { ...base, phase: "D" }).dLoss!;
      const l1 = computeMicrotask(withR1.model, withR1.loss, { ...base, phase: "D" }).dLoss!;
      // ‖∇x D(x)‖² per real sample from central differences of D's output in x.
      const dWeights = toTensors(plain.model.d, plain.d);
      const dOut = (x: Float32Array) =>
        tf.tidy(() =>
          plain.model.d
            .apply(dWeights, tf.tensor2d(x, [8, 2]), { training: true })
            .dataSync()
            .slice(),
        );
      const h = 1e-2;
      let sum = 0;
      for (let i = 0; i < 8; i++) {
        for (let j = 0; j < 2; j++) {
          const plus = plain.real.slice();
          const minus = plain.real.slice();
          plus[i * 2 + j] += h;
          minus[i * 2 + j] -= h;
          sum += ((dOut(plus)[i] - dOut(minus)[i]) / (2 * h)) ** 2;
        }
      }
      tf.dispose(dWeights);
      const expected = (gamma / 2) * (sum / 8);
      expect(expected).toBeGreaterThan(1e-2);
      expect(Math.abs(l1 - l0 - expected) / expected).toBeLessThan(1e-3);
    });

    it("lazy regularisation: off in skipped D phases, scaled by regEvery in the others", () => {
      const plain = tinySetup("non-saturating");
      const lazy = tinySetup("non-saturating", { r1: 0.5, regEvery: 4 });
      const eager = tinySetup("non-saturating", { r1: 2 });
      const base = {
        gWeights: plain.g,
        dWeights: plain.d,
        real: plain.real,
        batch: 8,
        noiseSeed: 4,
        phase: "D" as const,
      };
      const skipped = computeMicrotask(lazy.model, lazy.loss, { ...base, regularize: false });
      expect(skipped.grad).toEqual(computeMicrotask(plain.model, plain.loss, base).grad);
      const applied = computeMicrotask(lazy.model, lazy.loss, { ...base, regularize: true });
      expect(applied.grad).toEqual(computeMicrotask(eager.model, eager.loss, base).grad);
      expect(applied.grad).not.toEqual(skipped.grad);
    });
  });

  it("rpgan pairs reals with fakes in the G phase: the G gradient depends on the reals", () => {
    const setup = tinySetup("rpgan");
    const base = {
      gWeights: setup.g,
      dWeights: setup.d,
      batch: 8,
      noiseSeed: 6,
      phase: "G" as const,
    };
    const a = computeMicrotask(setup.model, setup.loss, { ...base, real: setup.real });
    const other = setup.real.map((v) => v * 0.5 + 0.3);
    const b = computeMicrotask(setup.model, setup.loss, { ...base, real: other });
    expect(b.grad).not.toEqual(a.grad);
    expect(() => computeMicrotask(setup.model, setup.loss, base)).toThrow(/G phase needs 16 real/);
    // softplus(D(x_r) − D(x_f)) and D's softplus(D(x_f) − D(x_r)) on the same pairs.
    const d = computeMicrotask(setup.model, setup.loss, { ...base, phase: "D", real: setup.real });
    expect(d.gLoss).toBeCloseTo(a.gLoss, 5);
  });

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
    for (const lossName of ["non-saturating", "wgan-gp", "rpgan"] as const) {
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
