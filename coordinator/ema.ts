// The EMA generator: an exponential moving average of G's parameters, kept by
// whoever owns the canonical weights (the coordinator, `agon train`) and never
// sent to workers. It is what samples, eval and export use by default.
import type { EmaConfig } from "../shared/config.js";
import type { Network } from "../shared/models/index.js";
import { WASM_BYTES } from "../shared/wasm/ema-bytes.js";
import { CHUNK, type FlatInstance, flatInstance } from "../shared/wasm/flat.js";

/**
 * ema ← g + (ema − g)·β per value in IEEE double, rounded once to float32 (for ema and g of
 * one length, β in [0, 1]): the specification of the bits; EmaGenerator runs the same
 * arithmetic in WebAssembly (shared/wasm/ema.wat), two values at a time.
 */
export function jsEmaUpdate(ema: Float32Array, g: Float32Array, beta: number): void {
  const n = ema.length;
  for (let i = 0; i < n; i++) ema[i] = g[i] + (ema[i] - g[i]) * beta;
}

interface EmaExports {
  ema(g: number, e: number, n: number, beta: number): void;
}

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
  /** The module: its memory holds the averaged parameters (resident) and a chunk of G's. */
  private readonly mem: FlatInstance<EmaExports> | null;
  /** The averaged parameters: weights' first trainableSize values, in the module's memory. */
  private readonly avg: Float32Array;

  constructor(
    readonly cfg: EmaConfig,
    readonly batch: number,
    readonly net: Network,
    initial: Float32Array,
  ) {
    const n = net.trainableSize;
    this.weights = initial.slice();
    this.mem = flatInstance<EmaExports>(WASM_BYTES, n, 1, 1);
    this.avg = this.mem?.resident[0] ?? this.weights.subarray(0, n);
    this.avg.set(this.weights.subarray(0, n));
  }

  /** Replaces the average (from a checkpoint). */
  restore(weights: Float32Array): void {
    if (weights.length !== this.weights.length) {
      throw new RangeError(`EMA has ${weights.length} values, G has ${this.weights.length}`);
    }
    this.weights.set(weights);
    this.avg.set(weights.subarray(0, this.avg.length));
  }

  /**
   * Folds in G after its `gUpdates`-th update: ema ← β·ema + (1−β)·G per
   * parameter in double precision, rounded once; state is copied (as
   * StyleGAN2-ADA copies buffers).
   */
  update(g: Float32Array, gUpdates: number): void {
    const beta = emaBeta(this.cfg, this.batch, gUpdates);
    const n = this.net.trainableSize;
    const mem = this.mem;
    if (mem == null) {
      jsEmaUpdate(this.avg, g.subarray(0, n), beta);
    } else {
      const [chunk] = mem.scratch;
      for (let lo = 0; lo < n; lo += CHUNK) {
        const hi = Math.min(n, lo + CHUNK);
        chunk.set(g.subarray(lo, hi));
        mem.exports.ema(chunk.byteOffset, this.avg.byteOffset + lo * 4, hi - lo, beta);
      }
      this.weights.set(this.avg, 0);
    }
    this.weights.set(g.subarray(n), n);
  }
}
