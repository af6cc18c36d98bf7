// The EMA generator: an exponential moving average of G's parameters, kept by
// whoever owns the canonical weights (the coordinator, `agon train`) and never
// sent to workers. It is what samples, eval and export use by default.
import type { EmaConfig } from "../shared/config.js";
import type { Network } from "../shared/models/index.js";

/**
 * β per G update as StyleGAN2-ADA's training loop computes it
 * (training/training_loop.py): h = halfLifeImages, capped at rampup · images
 * G has been trained on when rampup is set; β = 0.5^(batch / h).
 */
export function emaBeta(cfg: EmaConfig, batch: number, gUpdates: number): number {
  let halfLife = cfg.halfLifeImages;
  if (cfg.rampup !== null) halfLife = Math.min(halfLife, gUpdates * batch * cfg.rampup);
  return 0.5 ** (batch / Math.max(halfLife, 1e-8));
}

export class EmaGenerator {
  /** G's flat layout: the averaged parameters, then G's state copied as is (batch-norm statistics). */
  readonly weights: Float32Array;

  constructor(
    readonly cfg: EmaConfig,
    readonly batch: number,
    readonly net: Network,
    initial: Float32Array,
  ) {
    this.weights = initial.slice();
  }

  /** Replaces the average (from a checkpoint). */
  restore(weights: Float32Array): void {
    if (weights.length !== this.weights.length) {
      throw new RangeError(`EMA has ${weights.length} values, G has ${this.weights.length}`);
    }
    this.weights.set(weights);
  }

  /**
   * Folds in G after its `gUpdates`-th update: ema ← β·ema + (1−β)·G per
   * parameter in double precision, rounded once; state is copied (as
   * StyleGAN2-ADA copies buffers).
   */
  update(g: Float32Array, gUpdates: number): void {
    const beta = emaBeta(this.cfg, this.batch, gUpdates);
    const n = this.net.trainableSize;
    const ema = this.weights;
    for (let i = 0; i < n; i++) ema[i] = g[i] + (ema[i] - g[i]) * beta;
    ema.set(g.subarray(n), n);
  }
}
