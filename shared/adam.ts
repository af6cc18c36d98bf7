// Adam on flat Float32Arrays: what the coordinator applies to the canonical
// weights. Arithmetic is plain IEEE double in a fixed loop order, so the same
// inputs give the same bits on every machine; its state is exportable for checkpoints.
import type { AdamConfig } from "./config.js";

export interface AdamState {
  /** Number of updates applied so far. */
  t: number;
  m: Float32Array;
  v: Float32Array;
}

export class FlatAdam {
  private state: AdamState;

  constructor(
    readonly size: number,
    readonly cfg: AdamConfig,
    state?: AdamState,
  ) {
    if (state && (state.m.length !== size || state.v.length !== size)) {
      throw new RangeError(`Adam state has ${state.m.length} values, expected ${size}`);
    }
    this.state = state ?? { t: 0, m: new Float32Array(size), v: new Float32Array(size) };
  }

  get steps(): number {
    return this.state.t;
  }

  /** Applies one update to `weights` in place (PyTorch's bias-corrected form). */
  step(weights: Float32Array, grad: Float32Array): void {
    if (weights.length !== this.size || grad.length !== this.size) {
      throw new RangeError(
        `Adam.step: expected ${this.size} values, got ${weights.length}/${grad.length}`,
      );
    }
    const { lr, beta1, beta2, eps } = this.cfg;
    const { m, v } = this.state;
    const t = ++this.state.t;
    const c1 = 1 - beta1 ** t;
    const c2 = 1 - beta2 ** t;
    // The same arithmetic, in the same order, as the textbook loop; only loop invariants are
    // hoisted and the float32-rounded moments are taken with Math.fround instead of re-read.
    const b1c = 1 - beta1;
    const b2c = 1 - beta2;
    const n = weights.length;
    for (let i = 0; i < n; i++) {
      const g = grad[i];
      const mi = Math.fround(beta1 * m[i] + b1c * g);
      const vi = Math.fround(beta2 * v[i] + b2c * g * g);
      m[i] = mi;
      v[i] = vi;
      weights[i] = weights[i] - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
    }
  }

  /** A copy of the state, safe to write out while training continues. */
  exportState(): AdamState {
    return { t: this.state.t, m: this.state.m.slice(), v: this.state.v.slice() };
  }
}
