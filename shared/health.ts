// GAN health signals: pure checks on the per-phase metrics and the fixed-noise
// samples that say "this run has gone wrong" early, each reported once per
// episode (when it starts), not on every phase it lasts.
//
//   nonFinite          a loss is NaN or ±Inf (JSON turns NaN into null, so a
//                      null where the phase must have a loss counts too).
//   dWinning           D(x) > 0.99 and D(G(z)) < 0.01 for `dWinsPhases`
//                      consecutive D phases: D separates real from fake
//                      perfectly and G's gradient vanishes. Only meaningful
//                      for the logistic losses (non-saturating, minimax),
//                      where D(x) is a probability; for wgan-gp and hinge it is
//                      a critic value, so pass `loss` and it is switched off.
//   runawayLoss        a loss is finite but |loss| > `runawayLoss` (1e6): the
//                      weights are blowing up and NaN is a few phases away.
//   dSaturated         D's outputs are pinned at 0 or 1 (D(x) and D(G(z)) each
//                      within 1e-6 of 0 or 1) for `saturatedPhases` D phases in
//                      a row: its sigmoid has saturated and neither network
//                      gets a gradient. Logistic losses only, like dWinning.
//   diversityCollapse  the mean pairwise L2 distance of the fixed-noise
//                      samples falls below `collapseRatio` × its maximum so
//                      far (from the third observation on): G maps different
//                      noise to the same few outputs (mode collapse).

export type HealthSignalType =
  | "nonFinite"
  | "runawayLoss"
  | "dWinning"
  | "dSaturated"
  | "diversityCollapse";

/** The signals after which training cannot usefully go on: stop, or roll back (health.rollback). */
export const DIVERGENCE_SIGNALS: ReadonlySet<HealthSignalType> = new Set(["nonFinite"]);

export interface HealthSignal {
  type: HealthSignalType;
  /** The step the signal was raised at. */
  step: number;
  /** One line for a person. */
  message: string;
  /** The offending value: the loss, the number of phases, the distance ratio. */
  value?: number;
}

/** What observePhase reads: a PhaseSummary or a metrics message (schema 1). */
export interface PhaseHealthInput {
  step: number;
  kind: "D" | "G";
  dLoss: number | null;
  gLoss: number | null;
  dReal: number | null;
  dFake: number | null;
}

export interface HealthOptions {
  /** Consecutive D phases with D(x) > 0.99 and D(G(z)) < 0.01 before dWinning. Default 50. */
  dWinsPhases?: number;
  /** Share of the maximum mean pairwise distance below which samples have collapsed. Default 0.25. */
  collapseRatio?: number;
  /** The run's loss name; dWinning is off unless it is a logistic one (or not given). */
  loss?: string;
  /** Sample observations needed before diversityCollapse can fire (this one included). Default 3. */
  minSampleObservations?: number;
  /** A finite |loss| above this is runawayLoss. Default 1e6. */
  runawayLoss?: number;
  /** Consecutive D phases with outputs pinned at 0/1 before dSaturated. Default 5. */
  saturatedPhases?: number;
}

const LOGISTIC_LOSSES = new Set(["non-saturating", "minimax"]);
const D_REAL_WINS = 0.99;
const D_FAKE_WINS = 0.01;
/** Within this of 0 or 1, a sigmoid output is pinned (float32 cannot tell it from saturation). */
const PINNED = 1e-6;

const pinned = (p: number) => p < PINNED || p > 1 - PINNED;

export class HealthMonitor {
  readonly dWinsPhases: number;
  readonly collapseRatio: number;
  readonly dWinningEnabled: boolean;
  private readonly minSamples: number;
  readonly runawayLoss: number;
  readonly saturatedPhases: number;
  private runawayActive = false;
  private saturatedRun = 0;

  private nonFiniteActive = false;
  private dWinsRun = 0;
  private dWinningActive = false;
  private maxDistance = 0;
  private sampleObservations = 0;
  private collapseActive = false;

  constructor(opts: HealthOptions = {}) {
    this.dWinsPhases = opts.dWinsPhases ?? 50;
    this.collapseRatio = opts.collapseRatio ?? 0.25;
    this.minSamples = opts.minSampleObservations ?? 3;
    this.dWinningEnabled = opts.loss === undefined || LOGISTIC_LOSSES.has(opts.loss);
    this.runawayLoss = opts.runawayLoss ?? 1e6;
    this.saturatedPhases = opts.saturatedPhases ?? 5;
    if (!Number.isInteger(this.dWinsPhases) || this.dWinsPhases < 1) {
      throw new RangeError(`dWinsPhases must be a positive integer, got ${this.dWinsPhases}`);
    }
    if (!(this.collapseRatio > 0 && this.collapseRatio < 1)) {
      throw new RangeError(`collapseRatio must be in (0, 1), got ${this.collapseRatio}`);
    }
  }

  /** Checks one phase's metrics; returns the signals that start with it. */
  observePhase(m: PhaseHealthInput): HealthSignal[] {
    const signals: HealthSignal[] = [];

    // A D phase reports both losses; a G phase only gLoss (dLoss is null by design).
    const losses: Array<[string, number | null]> =
      m.kind === "D"
        ? [
            ["D loss", m.dLoss],
            ["G loss", m.gLoss],
          ]
        : [["G loss", m.gLoss]];
    const bad = losses.find(([, v]) => v === null || !Number.isFinite(v));
    if (bad) {
      if (!this.nonFiniteActive) {
        this.nonFiniteActive = true;
        const value = bad[1] ?? Number.NaN;
        signals.push({
          type: "nonFinite",
          step: m.step,
          message: `${bad[0]} is ${String(value)} at step ${m.step} (${m.kind} phase): training has diverged`,
          value,
        });
      }
    } else {
      this.nonFiniteActive = false;
      const runaway = losses.find(([, v]) => Math.abs(v!) > this.runawayLoss);
      if (runaway && !this.runawayActive) {
        signals.push({
          type: "runawayLoss",
          step: m.step,
          message:
            `${runaway[0]} is ${runaway[1]!.toPrecision(3)} at step ${m.step} (${m.kind} phase), ` +
            `beyond ±${this.runawayLoss.toPrecision(1)}: the weights are blowing up; lower the learning rate`,
          value: runaway[1]!,
        });
      }
      this.runawayActive = runaway !== undefined;
    }

    if (this.dWinningEnabled && m.kind === "D" && m.dReal !== null && m.dFake !== null) {
      if (pinned(m.dReal) && pinned(m.dFake)) {
        this.saturatedRun += 1;
        if (this.saturatedRun === this.saturatedPhases) {
          signals.push({
            type: "dSaturated",
            step: m.step,
            message:
              `D's outputs are pinned at 0/1 for ${this.saturatedRun} D phases in a row ` +
              `(D(x) ${m.dReal}, D(G(z)) ${m.dFake}): its sigmoid has saturated and no gradient flows; lower the learning rate or check the data's range`,
            value: this.saturatedRun,
          });
        }
      } else {
        this.saturatedRun = 0;
      }
    }

    if (this.dWinningEnabled && m.kind === "D") {
      const winning =
        m.dReal !== null && m.dFake !== null && m.dReal > D_REAL_WINS && m.dFake < D_FAKE_WINS;
      if (winning) {
        this.dWinsRun += 1;
        if (this.dWinsRun >= this.dWinsPhases && !this.dWinningActive) {
          this.dWinningActive = true;
          signals.push({
            type: "dWinning",
            step: m.step,
            message:
              `D is winning: D(x) > ${D_REAL_WINS} and D(G(z)) < ${D_FAKE_WINS} for ${this.dWinsRun} ` +
              `D phases in a row (D(x) ${m.dReal!.toFixed(4)}, D(G(z)) ${m.dFake!.toFixed(4)}); G gets no gradient`,
            value: this.dWinsRun,
          });
        }
      } else {
        this.dWinsRun = 0;
        this.dWinningActive = false;
      }
    }
    return signals;
  }

  /**
   * Checks the fixed-noise samples (`count` samples of `sampleSize` values,
   * e.g. generateSamples' output); returns the signals that start with them.
   */
  observeSamples(
    step: number,
    samples: Float32Array,
    count: number,
    sampleSize: number,
  ): HealthSignal[] {
    const distance = meanPairwiseDistance(samples, count, sampleSize);
    if (!Number.isFinite(distance)) return []; // NaN samples: nonFinite's business
    this.sampleObservations += 1;
    this.maxDistance = Math.max(this.maxDistance, distance);
    const ratio = this.maxDistance > 0 ? distance / this.maxDistance : 1;
    if (this.sampleObservations < this.minSamples || ratio >= this.collapseRatio) {
      if (ratio >= this.collapseRatio) this.collapseActive = false;
      return [];
    }
    if (this.collapseActive) return [];
    this.collapseActive = true;
    return [
      {
        type: "diversityCollapse",
        step,
        message:
          `sample diversity collapsed: mean pairwise distance ${distance.toPrecision(4)} is ` +
          `${(ratio * 100).toFixed(1)}% of its maximum ${this.maxDistance.toPrecision(4)} (mode collapse?)`,
        value: ratio,
      },
    ];
  }
}

/** Mean L2 distance over all pairs of the `count` samples (0 for fewer than 2). */
export function meanPairwiseDistance(
  samples: Float32Array,
  count: number,
  sampleSize: number,
): number {
  if (samples.length < count * sampleSize) {
    throw new RangeError(
      `meanPairwiseDistance: ${samples.length} values for ${count} samples of ${sampleSize}`,
    );
  }
  if (count < 2) return 0;
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const a = i * sampleSize;
    for (let j = i + 1; j < count; j++) {
      const b = j * sampleSize;
      let d2 = 0;
      for (let k = 0; k < sampleSize; k++) {
        const d = samples[a + k] - samples[b + k];
        d2 += d * d;
      }
      sum += Math.sqrt(d2);
    }
  }
  return sum / ((count * (count - 1)) / 2);
}
