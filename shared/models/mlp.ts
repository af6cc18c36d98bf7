// The MLP GAN: for any sample shape (images are flattened; 2-D points stay 2-D).
import * as tf from "@tensorflow/tfjs-core";
import type { ModelConfig } from "../config.js";
import { LEAK, NetBuilder } from "./layers.js";
import type { GanModel } from "./types.js";

export type MlpConfig = Extract<ModelConfig, { name: "mlp" }>;

function dense(b: NetBuilder, prefix: string, fanIn: number, fanOut: number) {
  const kernel = b.param(`${prefix}.kernel`, [fanIn, fanOut], { kind: "glorot", fanIn, fanOut });
  const bias = b.param(`${prefix}.bias`, [fanOut], { kind: "zeros" });
  return (w: tf.Tensor[], h: tf.Tensor) => tf.add(tf.matMul(h, kernel(w)), bias(w));
}

/**
 * G: z → [dense → ReLU]* → dense → tanh (images) or linear (points).
 * D: x → [dense → LeakyReLU(0.2)]* → dense → logit. No state.
 */
export function buildMlp(cfg: MlpConfig, sampleShape: number[]): GanModel {
  const out = sampleShape.reduce((a, b) => a * b, 1);
  const isImage = sampleShape.length === 3;
  const gWidths = [cfg.latentDim, ...cfg.gHidden, out];
  const dWidths = [out, ...cfg.dHidden, 1];
  const gb = new NetBuilder("G");
  const gLayers = gWidths.slice(1).map((w, i) => dense(gb, `g.dense${i}`, gWidths[i], w));
  const db = new NetBuilder("D");
  const dLayers = dWidths.slice(1).map((w, i) => dense(db, `d.dense${i}`, dWidths[i], w));

  const g = gb.build((w, z) => {
    let h = z;
    gLayers.forEach((layer, i) => {
      h = layer(w, h);
      if (i < gLayers.length - 1) h = tf.relu(h);
    });
    if (isImage) h = tf.tanh(h);
    return tf.reshape(h, [z.shape[0], ...sampleShape]);
  });
  const d = db.build((w, x) => {
    let h = tf.reshape(x, [x.shape[0], out]);
    dLayers.forEach((layer, i) => {
      h = layer(w, h);
      if (i < dLayers.length - 1) h = tf.leakyRelu(h, LEAK);
    });
    return h;
  });
  return { latentDim: cfg.latentDim, classes: 0, sampleShape, g, d };
}
