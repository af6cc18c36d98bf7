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
    for (let i = 0; i < weights.length; i++) {
      const g = grad[i];
      const mi = beta1 * m[i] + (1 - beta1) * g;
      const vi = beta2 * v[i] + (1 - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      weights[i] = weights[i] - (lr * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + eps);
    }
  }

  /** A copy of the state, safe to write out while training continues. */
  exportState(): AdamState {
    return { t: this.state.t, m: this.state.m.slice(), v: this.state.v.slice() };
  }
}
