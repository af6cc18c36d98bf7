// Adam on flat Float32Arrays: what the coordinator applies to the canonical
// weights. Arithmetic is plain IEEE double in a fixed loop order, so the same
// inputs give the same bits on every machine; its state is exportable for checkpoints.
//
// The update runs in a small hand-written WebAssembly module (shared/wasm/adam.wat) two
// values at a time; its bits are those of `jsAdamStep`, the textbook loop kept here as the
// specification (test/adam.test.ts compares them).
import type { AdamConfig } from "./config.js";
import { WASM_BYTES } from "./wasm/adam-bytes.js";
import { CHUNK, type FlatInstance, flatInstance } from "./wasm/flat.js";

export interface AdamState {
  /** Number of updates applied so far. */
  t: number;
  /** First moments, one per parameter. */
  m: Float32Array;
  /** Second moments, one per parameter. */
  v: Float32Array;
}

/**
 * One Adam update of `weights` in place, and of the moments `m`, `v` (all of one length),
 * at step `t` (1 for the first update): PyTorch's bias-corrected form (Kingma & Ba 2015,
 * "Adam: A Method for Stochastic Optimization", Algorithm 1; torch.optim.Adam without
 * weight decay or amsgrad), every operation in IEEE double, the moments rounded to float32
 * when stored. This is the specification of the bits; `FlatAdam` runs the same arithmetic
 * in WebAssembly. Returns Σ grad[i]² (double, added in index order): the gradient's squared
 * L2 norm, which the coordinator reports.
 */
export function jsAdamStep(
  weights: Float32Array,
  grad: Float32Array,
  m: Float32Array,
  v: Float32Array,
  cfg: AdamConfig,
  t: number,
): number {
  const { lr, beta1, beta2, eps } = cfg;
  const c1 = 1 - beta1 ** t;
  const c2 = 1 - beta2 ** t;
  // Loop invariants hoisted; the float32-rounded moments are taken with Math.fround
  // instead of re-read.
  const b1c = 1 - beta1;
  const b2c = 1 - beta2;
  const n = weights.length;
  let sq = 0;
  for (let i = 0; i < n; i++) {
    const g = grad[i];
    sq += g * g;
    const mi = Math.fround(beta1 * m[i] + b1c * g);
    const vi = Math.fround(beta2 * v[i] + b2c * g * g);
    m[i] = mi;
    v[i] = vi;
    weights[i] = weights[i] - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
  }
  return sq;
}

interface AdamExports {
  adam(
    w: number,
    g: number,
    m: number,
    v: number,
    n: number,
    beta1: number,
    b1c: number,
    beta2: number,
    b2c: number,
    lr: number,
    c1: number,
    c2: number,
    eps: number,
    sq: number,
  ): number;
}

/**
 * Adam's state and update for one flat parameter vector of `size` float32 values.
 * The moments live in the WebAssembly module's memory (8 bytes per parameter).
 */
export class FlatAdam {
  private t: number;
  /** The module, its memory holding m and v (resident) and a chunk each of w and g. */
  private readonly mem: FlatInstance<AdamExports> | null;
  private readonly m: Float32Array;
  private readonly v: Float32Array;

  /**
   * @param size parameters in the vector
   * @param cfg learning rate, betas, eps
   * @param state moments and step count to continue from (copied)
   * @throws RangeError when `state`'s moments are not `size` long
   */
  constructor(
    readonly size: number,
    readonly cfg: AdamConfig,
    state?: AdamState,
  ) {
    if (state && (state.m.length !== size || state.v.length !== size)) {
      throw new RangeError(`Adam state has ${state.m.length} values, expected ${size}`);
    }
    this.mem = flatInstance<AdamExports>(WASM_BYTES, size, 2, 2);
    this.m = this.mem?.resident[0] ?? new Float32Array(size);
    this.v = this.mem?.resident[1] ?? new Float32Array(size);
    this.t = state?.t ?? 0;
    if (state) {
      this.m.set(state.m);
      this.v.set(state.v);
    }
  }

  /** Updates applied so far. */
  get steps(): number {
    return this.t;
  }

  /**
   * Applies one update to `weights` in place (the bits of `jsAdamStep`) and returns the
   * gradient's squared L2 norm (Σ grad[i]² in index order, in double).
   * @throws RangeError when `weights` or `grad` is not `size` long
   */
  step(weights: Float32Array, grad: Float32Array): number {
    if (weights.length !== this.size || grad.length !== this.size) {
      throw new RangeError(
        `Adam.step: expected ${this.size} values, got ${weights.length}/${grad.length}`,
      );
    }
    const t = ++this.t;
    const mem = this.mem;
    if (!mem) return jsAdamStep(weights, grad, this.m, this.v, this.cfg, t);
    const { lr, beta1, beta2, eps } = this.cfg;
    const c1 = 1 - beta1 ** t;
    const c2 = 1 - beta2 ** t;
    const { exports } = mem;
    const [w, g] = mem.scratch;
    const mOff = this.m.byteOffset;
    const vOff = this.v.byteOffset;
    let sq = 0;
    for (let lo = 0; lo < this.size; lo += CHUNK) {
      const hi = Math.min(this.size, lo + CHUNK);
      w.set(weights.subarray(lo, hi));
      g.set(grad.subarray(lo, hi));
      sq = exports.adam(
        w.byteOffset,
        g.byteOffset,
        mOff + lo * 4,
        vOff + lo * 4,
        hi - lo,
        beta1,
        1 - beta1,
        beta2,
        1 - beta2,
        lr,
        c1,
        c2,
        eps,
        sq,
      );
      weights.set(w.subarray(0, hi - lo), lo);
    }
    return sq;
  }

  /** A copy of the state, safe to write out while training continues. */
  exportState(): AdamState {
    return { t: this.t, m: this.m.slice(), v: this.v.slice() };
  }
}
