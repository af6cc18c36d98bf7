// The canonical training state the coordinator owns: both networks' weights,
// their optimizers, the version counters and the position in the schedule.
// Applying a phase is the only way it changes.
import { FlatAdam } from "../shared/adam.js";
import type { RunConfig } from "../shared/config.js";
import { weightsHash } from "../shared/hash.js";
import type { Phase } from "../shared/microtask.js";
import { type GanModel, initWeights } from "../shared/models/index.js";
import { hashSeed, SeedDomain } from "../shared/rng.js";
import { phaseKind, phasesPerStep } from "../shared/schedule.js";
import { completeTree, type TreePart, treeMean } from "../shared/tree.js";
import type { CheckpointData } from "./checkpoint.js";
import { EmaGenerator } from "./ema.js";

export interface PhaseSummary {
  step: number;
  phase: number;
  kind: Phase;
  dLoss: number | null;
  gLoss: number;
  dReal: number | null;
  dFake: number;
  /** L2 norm of the mean gradient (trainable parameters), summed in parameter order in double. */
  gradNorm: number;
  versions: { G: number; D: number };
}

/**
 * One phase's outcome before it is applied: the mean gradient over the K
 * shards (trainable parameters, then the network's mean reports), the sample
 * count the reports were summed over, and the phase's mean losses.
 */
export interface PhaseUpdate {
  step: number;
  phase: number;
  kind: Phase;
  /** Mean gradient then mean reports, float32; length trainableSize + reportSize. */
  grad: Float32Array;
  /** Samples the phase's reports were summed over (the tree root's count). */
  count: number;
  dLoss: number | null;
  gLoss: number;
  dReal: number | null;
  dFake: number;
}

export class TrainingState {
  /** Steps completed; the next phase belongs to step `step`. */
  step = 0;
  /** Next phase index within the current step. */
  phase = 0;
  /** Optimizer updates applied to each network; travels with parameters. */
  versions = { G: 0, D: 0 };
  /** Each network's flat array: trainable parameters, then state (see shared/models). */
  readonly weights: { G: Float32Array; D: Float32Array };
  adam: { G: FlatAdam; D: FlatAdam };
  /** The EMA generator (config `ema`), never sent to workers; null when off. */
  readonly ema: EmaGenerator | null;

  constructor(
    readonly cfg: RunConfig,
    readonly model: GanModel,
  ) {
    this.weights = {
      G: initWeights(model.g, hashSeed(cfg.seed, SeedDomain.initG)),
      D: initWeights(model.d, hashSeed(cfg.seed, SeedDomain.initD)),
    };
    this.adam = {
      G: new FlatAdam(model.g.trainableSize, cfg.optimizer.g),
      D: new FlatAdam(model.d.trainableSize, cfg.optimizer.d),
    };
    this.ema = cfg.ema ? new EmaGenerator(cfg.ema, cfg.batch, model.g, this.weights.G) : null;
  }

  /** Continues from a checkpoint; sizes must match this model. */
  restore(data: CheckpointData): void {
    for (const net of ["G", "D"] as const) {
      if (data.weights[net].length !== this.weights[net].length) {
        throw new RangeError(
          `checkpoint ${net} has ${data.weights[net].length} weights, model has ${this.weights[net].length}`,
        );
      }
      this.weights[net].set(data.weights[net]);
    }
    this.adam.G = new FlatAdam(this.model.g.trainableSize, this.cfg.optimizer.g, data.adam.G);
    this.adam.D = new FlatAdam(this.model.d.trainableSize, this.cfg.optimizer.d, data.adam.D);
    // A checkpoint without an EMA blob (written with ema off, or before it existed) starts it from G.
    this.ema?.restore(data.ema ?? this.weights.G);
    this.step = data.step;
    this.phase = data.phase;
    this.versions = { ...data.versions };
  }

  /** A copy of everything a checkpoint holds, safe to write while training goes on. */
  snapshot(): CheckpointData {
    return {
      step: this.step,
      phase: this.phase,
      versions: { ...this.versions },
      weights: { G: this.weights.G.slice(), D: this.weights.D.slice() },
      adam: { G: this.adam.G.exportState(), D: this.adam.D.exportState() },
      ...(this.ema ? { ema: this.ema.weights.slice() } : {}),
    };
  }

  get done(): boolean {
    return this.step >= this.cfg.steps;
  }

  get kind(): Phase {
    return phaseKind(this.cfg, this.phase);
  }

  /** G's weights for samples, eval and export: the EMA generator when kept, else G itself. */
  get sampleWeights(): Float32Array {
    return this.ema?.weights ?? this.weights.G;
  }

  /**
   * Applies the current phase from `parts`: reduction-tree nodes
   * (shared/tree.ts) that tile the K shards, each with its value. The tree is
   * completed above them and its root divided by K (reducePhase), then the
   * mean is applied (applyUpdate). Throws RangeError when the parts do not
   * tile the shards or have the wrong length. Consumes the parts' gradients.
   */
  applyPhase(parts: ReadonlyArray<TreePart>): PhaseSummary {
    return this.applyUpdate(this.reducePhase(parts));
  }

  /**
   * The current phase's outcome from `parts` (see applyPhase), not yet
   * applied: what the leader appends to the replicated log (coordinator/ha).
   */
  reducePhase(parts: ReadonlyArray<TreePart>): PhaseUpdate {
    const kind = this.kind;
    const net = kind === "G" ? this.model.g : this.model.d;
    const n = net.trainableSize;
    const expected = n + net.reportSize;
    for (const p of parts) {
      if (p.result.grad.length !== expected)
        throw new RangeError(
          `applyPhase: a ${kind} result has ${p.result.grad.length} values, expected ${expected}`,
        );
    }
    const root = completeTree(parts, this.cfg.shards, this.cfg.transport.gradients);
    // The norm is taken in applyUpdate, in Adam's pass over the same values.
    const mean = treeMean(root, this.cfg.shards);
    return {
      step: this.step,
      phase: this.phase,
      kind,
      grad: mean.grad,
      count: root.count,
      dLoss: kind === "D" ? mean.dLoss : null,
      gLoss: mean.gLoss,
      dReal: kind === "D" ? mean.dReal : null,
      dFake: mean.dFake,
    };
  }

  /**
   * Applies a phase's mean gradient: one Adam update to the network's
   * parameters; its state then advances from the phase's mean reports
   * (batch-norm running statistics: the phase batch's mean and E[x²], summed
   * along the same tree) and from the new weights (spectral-norm vectors);
   * after a G update the EMA generator follows. The leader and a standby
   * replaying the log run exactly this, so both hold the same bits. Throws
   * RangeError when `u` is not the current phase or has the wrong length.
   */
  applyUpdate(u: PhaseUpdate): PhaseSummary {
    const kind = this.kind;
    if (u.step !== this.step || u.phase !== this.phase || u.kind !== kind) {
      throw new RangeError(
        `update for step ${u.step} phase ${u.phase} (${u.kind}) does not follow step ${this.step} phase ${this.phase}`,
      );
    }
    const net = kind === "G" ? this.model.g : this.model.d;
    const n = net.trainableSize;
    if (u.grad.length !== n + net.reportSize) {
      throw new RangeError(
        `update has ${u.grad.length} values, ${kind} needs ${n + net.reportSize}`,
      );
    }
    const weights = this.weights[kind];
    const squaredNorm = this.adam[kind].step(weights.subarray(0, n), u.grad.subarray(0, n));
    if (net.reportSize > 0) net.absorbReports(weights, [u.grad.subarray(n)], [u.count]);
    net.advanceState(weights);
    this.versions[kind] += 1;
    if (kind === "G") this.ema?.update(weights, this.versions.G);
    const summary: PhaseSummary = {
      step: this.step,
      phase: this.phase,
      kind,
      dLoss: u.dLoss,
      gLoss: u.gLoss,
      dReal: u.dReal,
      dFake: u.dFake,
      gradNorm: Math.sqrt(squaredNorm),
      versions: { ...this.versions },
    };
    this.phase += 1;
    if (this.phase === phasesPerStep(this.cfg)) {
      this.phase = 0;
      this.step += 1;
    }
    return summary;
  }

  /** sha256 of each network's flat array (parameters and state) and of the EMA generator when kept. */
  hashes(): { G: string; D: string; ema?: string } {
    const h = { G: weightsHash(this.weights.G), D: weightsHash(this.weights.D) };
    return this.ema ? { ...h, ema: weightsHash(this.ema.weights) } : h;
  }
}
