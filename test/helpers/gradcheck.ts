// The directional finite-difference gradient check the model tests share.
import type { Network } from "../../shared/models/index.js";
import type { Rng } from "../../shared/rng.js";

/**
 * Relative errors |fd − analytic| / ‖grad‖ along `count` random unit directions (normal
 * draws from `rng`, one direction after another) that move only target[start, start +
 * grad.length): fd is the central difference (loss(w + h·u) − loss(w − h·u)) / 2h, analytic
 * the gradient's component along u. Random directions rather than the gradient itself:
 * along it the loss curves most, so a step large enough to rise above float32 noise would
 * measure curvature instead.
 */
export function directionalErrors(
  target: Float32Array,
  start: number,
  grad: Float32Array,
  loss: (w: Float32Array) => number,
  rng: Rng,
  count: number,
  h = 1e-2,
): number[] {
  const n = grad.length;
  const norm = Math.hypot(...grad);
  const errors: number[] = [];
  for (let k = 0; k < count; k++) {
    const dir = Array.from(rng.normalArray(n));
    const len = Math.hypot(...dir);
    const moved = (sign: number) => {
      const w = target.slice();
      for (let i = 0; i < n; i++) w[start + i] += (sign * h * dir[i]) / len;
      return w;
    };
    const fd = (loss(moved(1)) - loss(moved(-1))) / (2 * h);
    let analytic = 0;
    for (let i = 0; i < n; i++) analytic += (grad[i] * dir[i]) / len;
    errors.push(Math.abs(fd - analytic) / norm);
  }
  return errors;
}

/** [offset, length] of parameter `name` in a network's flat array; throws when it has none. */
export function paramRange(net: Network, name: string): [number, number] {
  let offset = 0;
  for (const p of net.params) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    if (p.name === name) return [offset, n];
    offset += n;
  }
  throw new Error(`no parameter ${name}`);
}
