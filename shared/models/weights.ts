// A network's flat Float32Array (parameters, then state) and its tensors.
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../rng.js";
import type { Network, ParamSpec } from "./types.js";

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Draws a network's initial flat array (parameters, then state) from a seed,
 * in pure JS so it is backend-independent. Length: `net.size`.
 */
export function initWeights(net: Network, seed: number): Float32Array {
  const rng = new Rng(seed);
  const flat = new Float32Array(net.size);
  let offset = 0;
  for (const p of [...net.params, ...net.state]) {
    const n = count(p.shape);
    const init = p.init;
    if (init.kind === "normal") {
      const { std, mean } = init;
      for (let i = 0; i < n; i++) {
        const x = std * rng.nextNormal();
        flat[offset + i] = mean === undefined ? x : mean + x;
      }
    } else if (init.kind === "glorot") {
      const limit = Math.sqrt(6 / (init.fanIn + init.fanOut));
      for (let i = 0; i < n; i++) flat[offset + i] = (2 * rng.nextFloat() - 1) * limit;
    } else if (init.kind === "ones") {
      flat.fill(1, offset, offset + n);
    } else if (init.kind === "unit") {
      const v = Array.from({ length: n }, () => rng.nextNormal());
      const norm = Math.max(Math.hypot(...v), 1e-12);
      for (let i = 0; i < n; i++) flat[offset + i] = v[i] / norm;
    }
    offset += n;
  }
  return flat;
}

/** Splits a flat array into tensors: parameters then state, in order (copies; caller disposes). */
export function toTensors(net: Network, flat: Float32Array): tf.Tensor[] {
  if (flat.length !== net.size) {
    throw new RangeError(`${net.role} weights: expected ${net.size} values, got ${flat.length}`);
  }
  let offset = 0;
  return [...net.params, ...net.state].map((p: ParamSpec) => {
    const n = count(p.shape);
    const t = tf.tensor(flat.subarray(offset, offset + n), p.shape, "float32");
    offset += n;
    return t;
  });
}

/**
 * Concatenates the trainable parameters' tensors (gradients, in parameter
 * order) into one array of `net.trainableSize` values. Reads outside any tidy.
 */
export function toFlat(net: Network, tensors: tf.Tensor[]): Float32Array {
  const flat = new Float32Array(net.trainableSize);
  let offset = 0;
  tensors.forEach((t, i) => {
    const data = hostView(t);
    const expected = count(net.params[i].shape);
    if (data.length !== expected) throw new RangeError(`${net.params[i].name}: size mismatch`);
    flat.set(data, offset);
    offset += data.length;
  });
  return flat;
}

/**
 * A float32 tensor's values for reading at once: on the wasm backend (and blas, which is
 * wasm) a view of the wasm heap, no copy (it is valid until the next tfjs call allocates);
 * elsewhere dataSync's copy.
 */
function hostView(t: tf.Tensor): Float32Array {
  const backend = tf.engine().backend as unknown as {
    typedArrayFromHeap?: (t: tf.TensorInfo) => Float32Array;
  };
  if (t.dtype === "float32" && tf.getBackend() === "wasm" && backend.typedArrayFromHeap) {
    return backend.typedArrayFromHeap(t);
  }
  return t.dataSync() as Float32Array;
}

/** The length of a microtask's result vector in the network's own phase: gradient, then report. */
export function resultSize(net: Network): number {
  return net.trainableSize + net.reportSize;
}
