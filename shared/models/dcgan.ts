// DCGAN (Radford et al. 2015) for square images of 16–256 pixels (powers of
// two) or 28 (MNIST-shaped), 1 or 3 channels: G projects z to a 4×4 (7×7 for
// 28) map and doubles it with k×k (model.kernel, default 5) stride-2 transposed
// convolutions; D halves with k×k stride-2 convolutions down to the same map and
// ends in a dense logit.
// Conditional (model.conditional): G's input is [z, E_G[y]] (a learned class
// embedding of latentDim values, drawn N(0, 0.1²)); D adds the projection ⟨E_D[y], h⟩ on its
// flattened final features h (see conditional.ts). With model.conditionalNorm, G's input
// is z alone and the class sets the scale and shift of each of G's batch norms instead
// (conditional batch norm, as Miyato & Koyama 2018's and BigGAN's generators).
import * as tf from "@tensorflow/tfjs-core";
import { DCGAN_SIZES, type ModelConfig } from "../config.js";
import {
  classCount,
  conditionalInput,
  conditionalScaleShift,
  projectionHead,
} from "./conditional.js";
import { ModelError } from "./errors.js";
import { type Layer, LEAK, NetBuilder, sequential } from "./layers.js";
import type { GanModel } from "./types.js";

export type DcganConfig = Extract<ModelConfig, { name: "dcgan" }>;

export { DCGAN_SIZES };

/** DCGAN's weight init: N(0, 0.02) for kernels, N(1, 0.02) for batch-norm scales. */
const STD = 0.02;

/** Init of a conditional G's class embedding `g.embed.embeddings` (see buildDcgan). */
export const G_EMBED_INIT = { kind: "normal", std: 0.1 } as const;

/** One resolution step of G or D: the map side before and after, and the channel counts. */
export interface DcganStage {
  from: number;
  to: number;
  inChannels: number;
  outChannels: number;
}

/**
 * Checks that `sampleShape` is a square DCGAN_SIZES image with 1 or 3 channels
 * (what the image models build). Throws ModelError naming `model`.
 */
export function checkImageShape(model: string, sampleShape: number[]): void {
  const [height, width, channels] = sampleShape;
  if (
    sampleShape.length !== 3 ||
    height !== width ||
    !(DCGAN_SIZES as readonly number[]).includes(height) ||
    (channels !== 1 && channels !== 3)
  ) {
    throw new ModelError(
      `${model} supports square ${DCGAN_SIZES.join(", ")} pixel images with 1 or 3 channels, got ${sampleShape.join("×")}`,
    );
  }
}

/** The layout: the smallest map side and the width of every map side below full size. */
export function dcganLayout(cfg: DcganConfig, sampleShape: number[]) {
  const [height, , channels] = sampleShape;
  checkImageShape("dcgan", sampleShape);
  const res = height;
  const base = res === 28 ? 7 : 4;
  /** Channels of a map of side s (s < res): base width doubling per halving, capped. */
  const widthAt = (filters: number, s: number) =>
    Math.min(cfg.maxFilters, Math.max(1, Math.round((filters * res) / (2 * s))));
  const sides: number[] = [];
  for (let s = base; s <= res; s *= 2) sides.push(s);
  return { res, base, channels, sides, widthAt };
}

export function buildDcgan(cfg: DcganConfig, sampleShape: number[]): GanModel {
  const { res, base, channels, sides, widthAt } = dcganLayout(cfg, sampleShape);
  const gBatch = cfg.gNorm === "batch";
  const dBatch = cfg.dNorm === "batch";
  const dSpectral = cfg.dNorm === "spectral";
  const normal = { kind: "normal" as const, std: STD };
  const gammaInit = { kind: "normal" as const, std: STD, mean: 1 };
  const classes = classCount(cfg);
  /** The class enters G through conditional batch norm rather than at G's input. */
  const classNorm = classes > 0 && gBatch && cfg.conditionalNorm === true;

  // G: dense z → base×base×w0 (bias only without batch norm) → [BN] → ReLU,
  // then one transposed conv per doubling; the last one → C channels, tanh.
  const gb = new NetBuilder("G");
  const w0 = widthAt(cfg.gFilters, base);
  const gLayers: Layer[] = [];
  {
    // The class embedding is drawn N(0, 0.1²): norm ≈ 0.1·√latentDim, the scale of the
    // one-hot class the Keras conditional-GAN example concatenates to z, and a tenth of
    // z's. Drawn N(0, 1) (z's scale), G made every sample of a class from the class
    // alone and ignored z (intra-class collapse; even with an unconditional D). See
    // docs/RECIPES.md for the measurements.
    const input =
      classes && !classNorm
        ? conditionalInput(gb, "g.embed", classes, cfg.latentDim, G_EMBED_INIT)
        : null;
    const inDim = input ? 2 * cfg.latentDim : cfg.latentDim;
    const kernel = gb.param("g.dense0.kernel", [inDim, base * base * w0], normal);
    const bias = gBatch ? null : gb.param("g.dense0.bias", [base * base * w0], { kind: "zeros" });
    gLayers.push((w, z, ctx) => {
      const h = tf.matMul(input ? input(w, z, ctx) : z, kernel(w));
      return tf.reshape(bias ? tf.add(h, bias(w)) : h, [z.shape[0], base, base, w0]);
    });
    if (gBatch) gLayers.push(gNorm("g.bn0", w0, base * base));
    gLayers.push((_w, h) => tf.relu(h));
  }
  sides.slice(1).forEach((side, i) => {
    const last = side === res;
    const inC = widthAt(cfg.gFilters, side / 2);
    const outC = last ? channels : widthAt(cfg.gFilters, side);
    const name = `g.convT${i + 1}`;
    // conv2dTranspose filters are [kh, kw, outChannels, inChannels].
    const kernel = gb.param(`${name}.kernel`, [cfg.kernel, cfg.kernel, outC, inC], normal);
    const bias = last || !gBatch ? gb.param(`${name}.bias`, [outC], { kind: "zeros" }) : null;
    gLayers.push((w, h) => {
      const b = h.shape[0];
      const y = tf.conv2dTranspose(
        h as tf.Tensor4D,
        kernel(w) as tf.Tensor4D,
        [b, side, side, outC],
        2,
        "same",
      );
      return bias ? tf.add(y, bias(w)) : y;
    });
    if (last) gLayers.push((_w, h) => tf.tanh(h));
    else {
      if (gBatch) gLayers.push(gNorm(`g.bn${i + 1}`, outC, side * side));
      gLayers.push((_w, h) => tf.relu(h));
    }
  });

  // D: one strided conv per halving (no norm on the first), LeakyReLU(0.2), then a dense logit.
  const db = new NetBuilder("D");
  const dLayers: Layer[] = [];
  const down = sides.slice().reverse();
  down.slice(1).forEach((side, i) => {
    const first = i === 0;
    const inC = first ? channels : widthAt(cfg.dFilters, side * 2);
    const outC = widthAt(cfg.dFilters, side);
    const name = `d.conv${i + 1}`;
    const norm = !first && dBatch;
    const kernel = db.kernel(name, [cfg.kernel, cfg.kernel, inC, outC], normal, dSpectral);
    const bias = norm ? null : db.param(`${name}.bias`, [outC], { kind: "zeros" });
    dLayers.push((w, h) => {
      const y = tf.conv2d(h as tf.Tensor4D, kernel(w) as tf.Tensor4D, 2, "same");
      return bias ? tf.add(y, bias(w)) : y;
    });
    // D never runs in eval mode, so its batch norm keeps no running statistics.
    if (norm) dLayers.push(batchNorm(db, `d.bn${i + 1}`, outC, side * side, false));
    dLayers.push((_w, h) => tf.leakyRelu(h, LEAK));
  });
  {
    const fanIn = base * base * widthAt(cfg.dFilters, base);
    const name = `d.dense${down.length}`;
    const kernel = db.kernel(name, [fanIn, 1], normal, dSpectral);
    const bias = db.param(`${name}.bias`, [1], { kind: "zeros" });
    const project = classes
      ? projectionHead(db, "d.embed", classes, fanIn, normal, dSpectral)
      : null;
    dLayers.push((w, x, ctx) => {
      const h = tf.reshape(x, [x.shape[0], fanIn]);
      const logit = tf.add(tf.matMul(h, kernel(w)), bias(w));
      return project ? tf.add(logit, project(w, h, ctx)) : logit;
    });
  }

  return {
    latentDim: cfg.latentDim,
    classes,
    sampleShape,
    g: gb.build(sequential(gLayers)),
    d: db.build(sequential(dLayers)),
  };

  /** One of G's batch norms (running statistics kept): per class with classNorm. */
  function gNorm(name: string, c: number, spatial: number): Layer {
    const affine = classNorm ? conditionalScaleShift(gb, name, classes, c) : undefined;
    return gb.batchNorm(name, c, spatial, true, gammaInit, affine);
  }

  function batchNorm(
    b: NetBuilder,
    name: string,
    c: number,
    spatial: number,
    running: boolean,
  ): Layer {
    return b.batchNorm(name, c, spatial, running, gammaInit);
  }
}
