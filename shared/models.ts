// The GAN networks as plain functions of an ordered parameter list. The order of
// `params` is the order of the flat Float32Array that travels and is checkpointed.
import * as tf from "@tensorflow/tfjs-core";
import type { ModelConfig } from "./config.js";
import { Rng } from "./rng.js";

export interface ParamSpec {
  /** e.g. "g.dense0.kernel"; unique within a network. */
  name: string;
  shape: number[];
  /** How the initial value is drawn. */
  init:
    | { kind: "zeros" }
    | { kind: "normal"; std: number }
    | { kind: "glorot"; fanIn: number; fanOut: number };
}

export interface Network {
  /** "G" or "D". */
  role: "G" | "D";
  params: ParamSpec[];
  /** Total number of float32 values in the flat array. */
  size: number;
  /** G: [b, latentDim] → [b, ...sampleShape]; D: [b, ...sampleShape] → [b, 1] logits. */
  apply(weights: tf.Tensor[], input: tf.Tensor): tf.Tensor;
}

export interface GanModel {
  latentDim: number;
  sampleShape: number[];
  g: Network;
  d: Network;
}

const LEAK = 0.2;

function network(role: "G" | "D", params: ParamSpec[], apply: Network["apply"]): Network {
  const size = params.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
  return { role, params, size, apply };
}

function dense(prefix: string, fanIn: number, fanOut: number): ParamSpec[] {
  return [
    { name: `${prefix}.kernel`, shape: [fanIn, fanOut], init: { kind: "glorot", fanIn, fanOut } },
    { name: `${prefix}.bias`, shape: [fanOut], init: { kind: "zeros" } },
  ];
}

/**
 * MLP GAN for any sample shape (images are flattened; 2-D points stay 2-D).
 * G: z → [dense → ReLU]* → dense → tanh (images) or linear (points).
 * D: x → [dense → LeakyReLU(0.2)]* → dense → logit.
 */
function mlpGan(cfg: Extract<ModelConfig, { name: "mlp" }>, sampleShape: number[]): GanModel {
  const out = sampleShape.reduce((a, b) => a * b, 1);
  const isImage = sampleShape.length === 3;
  const gWidths = [cfg.latentDim, ...cfg.gHidden, out];
  const dWidths = [out, ...cfg.dHidden, 1];
  const gParams = gWidths.slice(1).flatMap((w, i) => dense(`g.dense${i}`, gWidths[i], w));
  const dParams = dWidths.slice(1).flatMap((w, i) => dense(`d.dense${i}`, dWidths[i], w));

  const g = network("G", gParams, (w, z) => {
    let h = z;
    const layers = gWidths.length - 1;
    for (let i = 0; i < layers; i++) {
      h = tf.add(tf.matMul(h, w[2 * i]), w[2 * i + 1]);
      if (i < layers - 1) h = tf.relu(h);
    }
    if (isImage) h = tf.tanh(h);
    return tf.reshape(h, [z.shape[0], ...sampleShape]);
  });
  const d = network("D", dParams, (w, x) => {
    let h = tf.reshape(x, [x.shape[0], out]);
    const layers = dWidths.length - 1;
    for (let i = 0; i < layers; i++) {
      h = tf.add(tf.matMul(h, w[2 * i]), w[2 * i + 1]);
      if (i < layers - 1) h = tf.leakyRelu(h, LEAK);
    }
    return h;
  });
  return { latentDim: cfg.latentDim, sampleShape, g, d };
}

/**
 * DCGAN for 28×28×C images (Radford et al. 2015, without batch norm so that a
 * microtask's result depends on its own samples only; see docs/ARCHITECTURE.md).
 * G: z → dense 7·7·2f → ReLU → convT 5×5/2 → 14·14·f → ReLU → convT 5×5/2 → 28·28·C → tanh.
 * D: x → conv 5×5/2 → 14·14·f → LReLU → conv 5×5/2 → 7·7·2f → LReLU → dense → logit.
 */
function dcgan(cfg: Extract<ModelConfig, { name: "dcgan" }>, sampleShape: number[]): GanModel {
  const [height, width, channels] = sampleShape;
  if (height !== 28 || width !== 28) {
    throw new Error(`dcgan expects 28×28 images, got ${sampleShape.join("×")}`);
  }
  const gf = cfg.gFilters;
  const df = cfg.dFilters;
  const std = 0.02;
  const gParams: ParamSpec[] = [
    ...dense("g.dense0", cfg.latentDim, 7 * 7 * 2 * gf),
    // conv2dTranspose filters are [kh, kw, outChannels, inChannels].
    { name: "g.convT1.kernel", shape: [5, 5, gf, 2 * gf], init: { kind: "normal", std } },
    { name: "g.convT1.bias", shape: [gf], init: { kind: "zeros" } },
    { name: "g.convT2.kernel", shape: [5, 5, channels, gf], init: { kind: "normal", std } },
    { name: "g.convT2.bias", shape: [channels], init: { kind: "zeros" } },
  ];
  const dParams: ParamSpec[] = [
    { name: "d.conv1.kernel", shape: [5, 5, channels, df], init: { kind: "normal", std } },
    { name: "d.conv1.bias", shape: [df], init: { kind: "zeros" } },
    { name: "d.conv2.kernel", shape: [5, 5, df, 2 * df], init: { kind: "normal", std } },
    { name: "d.conv2.bias", shape: [2 * df], init: { kind: "zeros" } },
    ...dense("d.dense3", 7 * 7 * 2 * df, 1),
  ];
  const g = network("G", gParams, (w, z) => {
    const b = z.shape[0];
    let h: tf.Tensor = tf.relu(tf.add(tf.matMul(z, w[0]), w[1]));
    h = tf.reshape(h, [b, 7, 7, 2 * gf]);
    h = tf.conv2dTranspose(h as tf.Tensor4D, w[2] as tf.Tensor4D, [b, 14, 14, gf], 2, "same");
    h = tf.relu(tf.add(h, w[3]));
    h = tf.conv2dTranspose(h as tf.Tensor4D, w[4] as tf.Tensor4D, [b, 28, 28, channels], 2, "same");
    return tf.tanh(tf.add(h, w[5]));
  });
  const d = network("D", dParams, (w, x) => {
    const b = x.shape[0];
    let h: tf.Tensor = tf.conv2d(x as tf.Tensor4D, w[0] as tf.Tensor4D, 2, "same");
    h = tf.leakyRelu(tf.add(h, w[1]), LEAK);
    h = tf.conv2d(h as tf.Tensor4D, w[2] as tf.Tensor4D, 2, "same");
    h = tf.leakyRelu(tf.add(h, w[3]), LEAK);
    h = tf.reshape(h, [b, 7 * 7 * 2 * df]);
    return tf.add(tf.matMul(h, w[4]), w[5]);
  });
  return { latentDim: cfg.latentDim, sampleShape, g, d };
}

export const MODEL_NAMES = ["mlp", "dcgan"] as const;

export function buildModel(cfg: ModelConfig, sampleShape: number[]): GanModel {
  switch (cfg.name) {
    case "mlp":
      return mlpGan(cfg, sampleShape);
    case "dcgan":
      return dcgan(cfg, sampleShape);
  }
}

/** Draws a network's initial flat weights from a seed (pure JS, backend-independent). */
export function initWeights(net: Network, seed: number): Float32Array {
  const rng = new Rng(seed);
  const flat = new Float32Array(net.size);
  let offset = 0;
  for (const p of net.params) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const init = p.init;
    if (init.kind === "normal") {
      for (let i = 0; i < n; i++) flat[offset + i] = init.std * rng.nextNormal();
    } else if (init.kind === "glorot") {
      const limit = Math.sqrt(6 / (init.fanIn + init.fanOut));
      for (let i = 0; i < n; i++) flat[offset + i] = (2 * rng.nextFloat() - 1) * limit;
    }
    offset += n;
  }
  return flat;
}

/** Splits a flat array into tensors in parameter order (copies; caller disposes). */
export function toTensors(net: Network, flat: Float32Array): tf.Tensor[] {
  if (flat.length !== net.size) {
    throw new RangeError(`${net.role} weights: expected ${net.size} values, got ${flat.length}`);
  }
  let offset = 0;
  return net.params.map((p) => {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const t = tf.tensor(flat.subarray(offset, offset + n), p.shape, "float32");
    offset += n;
    return t;
  });
}

/** Concatenates tensors (in parameter order) into one flat array. Reads outside any tidy. */
export function toFlat(net: Network, tensors: tf.Tensor[]): Float32Array {
  const flat = new Float32Array(net.size);
  let offset = 0;
  tensors.forEach((t, i) => {
    const data = t.dataSync() as Float32Array;
    const expected = net.params[i].shape.reduce((a, b) => a * b, 1);
    if (data.length !== expected) throw new RangeError(`${net.params[i].name}: size mismatch`);
    flat.set(data, offset);
    offset += data.length;
  });
  return flat;
}
