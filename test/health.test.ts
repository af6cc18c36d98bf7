// GAN health signals (shared/health.ts): pure checks, each raised once per episode.
import { describe, expect, it } from "vitest";
import { HealthMonitor, meanPairwiseDistance, type PhaseHealthInput } from "../shared/health.js";

const healthyD = (step: number): PhaseHealthInput => ({
  step,
  kind: "D",
  dLoss: 1.2,
  gLoss: 0.8,
  dReal: 0.6,
  dFake: 0.4,
});
const healthyG = (step: number): PhaseHealthInput => ({
  step,
  kind: "G",
  dLoss: null,
  gLoss: 0.9,
  dReal: null,
  dFake: 0.45,
});
const winningD = (step: number): PhaseHealthInput => ({
  step,
  kind: "D",
  dLoss: 0.01,
  gLoss: 6,
  dReal: 0.995,
  dFake: 0.005,
});

/** `count` samples of `size` values spread by `spread` around a common point. */
function samplesWithSpread(count: number, size: number, spread: number): Float32Array {
  const out = new Float32Array(count * size);
  for (let i = 0; i < count; i++) {
    for (let k = 0; k < size; k++) out[i * size + k] = 0.3 + spread * Math.sin(i * 7.1 + k * 1.3);
  }
  return out;
}

describe("nonFinite", () => {
  it("fires once per episode on NaN, Inf or a null loss, and re-arms after finite losses", () => {
    const h = new HealthMonitor();
    expect(h.observePhase(healthyD(0))).toEqual([]);
    expect(h.observePhase(healthyG(0))).toEqual([]);

    const nan = h.observePhase({ ...healthyD(1), dLoss: Number.NaN });
    expect(nan).toHaveLength(1);
    expect(nan[0]).toMatchObject({ type: "nonFinite", step: 1 });
    expect(nan[0].message).toMatch(/D loss is NaN at step 1/);
    // Still diverged: no repeat.
    expect(h.observePhase({ ...healthyG(1), gLoss: Number.POSITIVE_INFINITY })).toEqual([]);
    expect(h.observePhase({ ...healthyD(2), gLoss: Number.NaN })).toEqual([]);
    // Recovers, then diverges again: a new episode.
    expect(h.observePhase(healthyD(3))).toEqual([]);
    const inf = h.observePhase({ ...healthyG(3), gLoss: Number.NEGATIVE_INFINITY });
    expect(inf.map((s) => s.type)).toEqual(["nonFinite"]);
    expect(inf[0].value).toBe(Number.NEGATIVE_INFINITY);
    expect(h.observePhase(healthyD(4))).toEqual([]);
    // A NaN sent as JSON arrives as null: a D phase without a D loss.
    expect(h.observePhase({ ...healthyD(5), dLoss: null }).map((s) => s.type)).toEqual([
      "nonFinite",
    ]);
  });

  it("does not treat a G phase's null D loss as a problem", () => {
    const h = new HealthMonitor();
    for (let s = 0; s < 10; s++) {
      expect(h.observePhase(healthyD(s))).toEqual([]);
      expect(h.observePhase(healthyG(s))).toEqual([]);
    }
  });
});

describe("dWinning", () => {
  it("fires after dWinsPhases consecutive winning D phases, once per episode", () => {
    const h = new HealthMonitor({ dWinsPhases: 5 });
    const fired: number[] = [];
    const feed = (m: PhaseHealthInput) => {
      for (const s of h.observePhase(m)) if (s.type === "dWinning") fired.push(s.step);
    };
    // 4 winning phases, then a normal one: the count starts over.
    for (let s = 0; s < 4; s++) {
      feed(winningD(s));
      feed(healthyG(s));
    }
    feed(healthyD(4));
    expect(fired).toEqual([]);
    // G phases in between do not break a run of D phases.
    for (let s = 5; s < 20; s++) {
      feed(winningD(s));
      feed(healthyG(s));
    }
    expect(fired).toEqual([9]); // the 5th winning D phase in a row, and only once
    // The episode ends; a new run of 5 fires again.
    feed(healthyD(20));
    for (let s = 21; s < 26; s++) feed(winningD(s));
    expect(fired).toEqual([9, 25]);
  });

  it("needs both D(x) > 0.99 and D(G(z)) < 0.01", () => {
    const h = new HealthMonitor({ dWinsPhases: 2 });
    for (let s = 0; s < 10; s++) {
      expect(h.observePhase({ ...winningD(s), dReal: 0.98 })).toEqual([]);
      expect(h.observePhase({ ...winningD(s), dFake: 0.02 })).toEqual([]);
    }
  });

  it("is off for the non-logistic losses, where D(x) is a critic value", () => {
    for (const loss of ["wgan-gp", "hinge"]) {
      const h = new HealthMonitor({ dWinsPhases: 2, loss });
      expect(h.dWinningEnabled).toBe(false);
      for (let s = 0; s < 10; s++) expect(h.observePhase({ ...winningD(s), dReal: 5 })).toEqual([]);
    }
    expect(new HealthMonitor({ loss: "minimax" }).dWinningEnabled).toBe(true);
    expect(new HealthMonitor({ loss: "non-saturating" }).dWinningEnabled).toBe(true);
  });

  it("uses the documented defaults", () => {
    const h = new HealthMonitor();
    expect(h.dWinsPhases).toBe(50);
    expect(h.collapseRatio).toBe(0.25);
    const fired: number[] = [];
    for (let s = 0; s < 60; s++) {
      for (const sig of h.observePhase(winningD(s))) fired.push(sig.step);
    }
    expect(fired).toEqual([49]);
  });
});

describe("diversityCollapse", () => {
  it("meanPairwiseDistance is the mean L2 distance over pairs", () => {
    // Three 2-D points: (0,0), (3,4), (0,4): distances 5, 4, 3.
    const pts = new Float32Array([0, 0, 3, 4, 0, 4]);
    expect(meanPairwiseDistance(pts, 3, 2)).toBeCloseTo(4, 6);
    expect(meanPairwiseDistance(pts, 1, 2)).toBe(0);
    expect(() => meanPairwiseDistance(pts, 4, 2)).toThrow(RangeError);
  });

  it("fires when the distance falls below collapseRatio × its max, after 3 observations, once per episode", () => {
    const h = new HealthMonitor({ collapseRatio: 0.25 });
    const obs = (step: number, spread: number) =>
      h.observeSamples(step, samplesWithSpread(16, 10, spread), 16, 10);
    // A collapse at the second observation is too early to call.
    expect(obs(100, 1)).toEqual([]);
    expect(obs(200, 0.1)).toEqual([]);
    // Third observation, still collapsed: fires.
    const third = obs(300, 0.1);
    expect(third).toHaveLength(1);
    expect(third[0]).toMatchObject({ type: "diversityCollapse", step: 300 });
    expect(third[0].value).toBeCloseTo(0.1, 5);
    expect(third[0].message).toMatch(/sample diversity collapsed/);
    // Still collapsed: no repeat.
    expect(obs(400, 0.05)).toEqual([]);
    // Recovers (≥ 25% of the max), then collapses again: a new episode.
    expect(obs(500, 0.5)).toEqual([]);
    expect(obs(600, 0.2).map((s) => s.step)).toEqual([600]);
  });

  it("follows the running maximum and ignores NaN samples", () => {
    const h = new HealthMonitor({ collapseRatio: 0.5 });
    const obs = (step: number, spread: number) =>
      h.observeSamples(step, samplesWithSpread(8, 4, spread), 8, 4);
    expect(obs(1, 0.5)).toEqual([]);
    expect(obs(2, 1)).toEqual([]);
    expect(obs(3, 2)).toEqual([]); // growing diversity is healthy
    expect(h.observeSamples(4, new Float32Array(32).fill(Number.NaN), 8, 4)).toEqual([]);
    expect(obs(5, 1.2)).toEqual([]); // 60% of the max
    expect(obs(6, 0.9).map((s) => s.type)).toEqual(["diversityCollapse"]); // 45%
  });

  it("rejects bad options", () => {
    expect(() => new HealthMonitor({ dWinsPhases: 0 })).toThrow(RangeError);
    expect(() => new HealthMonitor({ collapseRatio: 1 })).toThrow(RangeError);
  });
});

describe("runawayLoss", () => {
  it("fires once when a finite loss passes ±1e6, and re-arms after sane losses", () => {
    const h = new HealthMonitor({ loss: "non-saturating" });
    const runaway = (step: number, gLoss: number): PhaseHealthInput => ({
      ...healthyG(step),
      gLoss,
    });
    const types = (m: PhaseHealthInput) => h.observePhase(m).map((s) => s.type);
    expect(types(runaway(1, 999_999))).toEqual([]);
    expect(types(runaway(2, -2e6))).toEqual(["runawayLoss"]);
    expect(types(runaway(3, 3e7))).toEqual([]); // the same episode
    expect(types(healthyG(4))).toEqual([]);
    expect(types({ ...healthyD(5), dLoss: 5e6 })).toEqual(["runawayLoss"]);
    expect(types(runaway(6, Number.NaN))).toEqual(["nonFinite"]); // NaN is nonFinite's, not runaway
  });
});

describe("dSaturated", () => {
  const pinnedD = (step: number, dReal: number, dFake: number): PhaseHealthInput => ({
    ...healthyD(step),
    dReal,
    dFake,
  });

  it("fires when D's outputs are pinned at 0/1 for 5 D phases in a row, from the first phases on", () => {
    const h = new HealthMonitor({ loss: "non-saturating" });
    const fired: number[] = [];
    for (let step = 0; step < 8; step++) {
      for (const s of h.observePhase(pinnedD(step, 1, 1)))
        if (s.type === "dSaturated") fired.push(s.step);
      h.observePhase(healthyG(step));
    }
    expect(fired).toEqual([4]);
  });

  it("re-arms after outputs leave the rails, and is off for critic losses", () => {
    const h = new HealthMonitor({ loss: "minimax" });
    const count = (m: PhaseHealthInput) =>
      h.observePhase(m).filter((s) => s.type === "dSaturated").length;
    let n = 0;
    for (let s = 0; s < 4; s++) n += count(pinnedD(s, 0, 0));
    n += count(pinnedD(4, 0.5, 0)); // off the rails: the run restarts
    for (let s = 5; s < 10; s++) n += count(pinnedD(s, 1, 1e-9));
    expect(n).toBe(1);
    const critic = new HealthMonitor({ loss: "wgan-gp" });
    for (let s = 0; s < 10; s++) expect(critic.observePhase(pinnedD(s, 1, 0))).toEqual([]);
  });
});
