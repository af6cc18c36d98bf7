// The canonical training state the coordinator owns: both networks' weights,
// their optimizers, the version counters and the position in the schedule.
// Applying a phase is the only way it changes.
import { FlatAdam } from "../shared/adam.js";
import type { RunConfig } from "../shared/config.js";
import { weightsHash } from "../shared/hash.js";
import type { Phase } from "../shared/microtask.js";
import { type GanModel, initWeights } from "../shared/models.js";
import { hashSeed, SeedDomain } from "../shared/rng.js";
import { phaseKind, phasesPerStep } from "../shared/schedule.js";
import { completeTree, type TreePart, treeMean } from "../shared/tree.js";
import type { CheckpointData } from "./checkpoint.js";

export interface PhaseSummary {
  step: number;
  phase: number;
  kind: Phase;
  dLoss: number | null;
  gLoss: number;
  dReal: number | null;
  dFake: number;
  gradNorm: number;
  versions: { G: number; D: number };
}

export class TrainingState {
  /** Steps completed; the next phase belongs to step `step`. */
  step = 0;
  /** Next phase index within the current step. */
  phase = 0;
  /** Optimizer updates applied to each network; travels with parameters. */
  versions = { G: 0, D: 0 };
  readonly weights: { G: Float32Array; D: Float32Array };
  adam: { G: FlatAdam; D: FlatAdam };

  constructor(
    readonly cfg: RunConfig,
    readonly model: GanModel,
  ) {
    this.weights = {
      G: initWeights(model.g, hashSeed(cfg.seed, SeedDomain.initG)),
      D: initWeights(model.d, hashSeed(cfg.seed, SeedDomain.initD)),
    };
    this.adam = {
      G: new FlatAdam(model.g.size, cfg.optimizer.g),
      D: new FlatAdam(model.d.size, cfg.optimizer.d),
    };
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
    this.adam.G = new FlatAdam(this.model.g.size, this.cfg.optimizer.g, data.adam.G);
    this.adam.D = new FlatAdam(this.model.d.size, this.cfg.optimizer.d, data.adam.D);
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
    };
  }

  get done(): boolean {
    return this.step >= this.cfg.steps;
  }

  get kind(): Phase {
    return phaseKind(this.cfg, this.phase);
  }

  /**
   * Applies the current phase from `parts`: tree nodes (shared/tree.ts) that
   * tile the K shards, each with its value. The tree is completed above them,
   * its root divided by K, and one Adam update is made. Throws RangeError when
   * the parts do not tile the shards. Consumes the parts' gradients.
   */
  applyPhase(parts: ReadonlyArray<TreePart>): PhaseSummary {
    const kind = this.kind;
    const root = completeTree(parts, this.cfg.shards, this.cfg.transport.gradients);
    const mean = treeMean(root, this.cfg.shards);
    this.adam[kind].step(this.weights[kind], mean.grad);
    this.versions[kind] += 1;
    const summary: PhaseSummary = {
      step: this.step,
      phase: this.phase,
      kind,
      dLoss: kind === "D" ? mean.dLoss : null,
      gLoss: mean.gLoss,
      dReal: kind === "D" ? mean.dReal : null,
      dFake: mean.dFake,
      gradNorm: mean.norm,
      versions: { ...this.versions },
    };
    this.phase += 1;
    if (this.phase === phasesPerStep(this.cfg)) {
      this.phase = 0;
      this.step += 1;
    }
    return summary;
  }

  hashes(): { G: string; D: string } {
    return { G: weightsHash(this.weights.G), D: weightsHash(this.weights.D) };
  }
}
