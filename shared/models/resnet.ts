// R3GAN's residual G and D without normalization layers (Huang et al. 2024,
// "The GAN is dead; long live the GAN!"; brownvc/R3GAN's Networks.py): stages of
// residual blocks at 4×4 (7×7 for 28) … full size, joined by fixed low-pass
// resampling, with a fix-up initialisation instead of normalisation.
// Conditional (model.conditional): G's input is [z, E_G[y]], D adds the
// projection ⟨E_D[y], h⟩ on its final feature vector h (see conditional.ts).
import * as tf from "@tensorflow/tfjs-core";
import { type ModelConfig, resnetSides } from "../config.js";
import { classCount, conditionalInput, projectionHead } from "./conditional.js";
import { checkImageShape } from "./dcgan.js";
import { ModelError } from "./errors.js";
import { type Layer, LEAK, NetBuilder, sequential, type Weights } from "./layers.js";
import type { GanModel, InitSpec } from "./types.js";

export type ResnetConfig = Extract<ModelConfig, { name: "resnet" }>;

/** Width of every stage when `model.channels` is absent. */
export const RESNET_DEFAULT_WIDTH = 64;
/** Side of the middle convolution of a residual branch (R3GAN: 3). */
const KERNEL = 3;
/** Linear layers per residual branch (R3GAN's NumberOfLinearLayers). */
const BRANCH_LAYERS = 3;
/** LeakyReLU(0.2)'s gain √(2 / (1 + 0.2²)) (He et al. 2015), R3GAN's BiasedActivation.Gain. */
const ACT_GAIN = Math.sqrt(2 / (1 + LEAK * LEAK));

/**
 * The layout: the stages' map sides (smallest first) and their widths, in G's
 * order (D runs them in reverse). Throws ModelError for an unsupported shape or
 * a channel list whose length is not the number of stages.
 */
export function resnetLayout(cfg: ResnetConfig, sampleShape: number[]) {
  const [height, _width, channels] = sampleShape;
  checkImageShape("resnet", sampleShape);
  const sides = resnetSides(height);
  const widths = cfg.channels ?? sides.map(() => RESNET_DEFAULT_WIDTH);
  if (widths.length !== sides.length) {
    throw new ModelError(
      `resnet at ${height}×${height} has ${sides.length} stages (maps ${sides.join(", ")}): model.channels needs ${sides.length} widths, got ${widths.length}`,
    );
  }
  return { res: height, channels, sides, widths };
}

/** R3GAN's MSRInitializer: N(0, (gain / √fanIn)²) (He et al. 2015); gain 0 gives zeros. */
function msr(fanIn: number, gain = 1): InitSpec {
  return gain === 0 ? { kind: "zeros" } : { kind: "normal", std: gain / Math.sqrt(fanIn) };
}

/** A stride-1 "same" convolution without bias, kernel [k, k, inC, outC], MSR-initialised. */
function conv(b: NetBuilder, name: string, k: number, inC: number, outC: number, gain = 1) {
  const kernel = b.param(`${name}.kernel`, [k, k, inC, outC], msr(k * k * inC, gain));
  return (w: Weights, x: tf.Tensor) =>
    tf.conv2d(x as tf.Tensor4D, kernel(w) as tf.Tensor4D, 1, "same");
}

/** R3GAN's BiasedActivation: LeakyReLU(0.2) of x plus a per-channel bias (zeros at init). */
function biasedActivation(b: NetBuilder, name: string, c: number) {
  const bias = b.param(`${name}.bias`, [c], { kind: "zeros" });
  return (w: Weights, x: tf.Tensor) => tf.leakyRelu(tf.add(x, bias(w)), LEAK);
}

/**
 * A residual block x + f(x) on a map of C channels (R3GAN's ResidualBlock):
 * f = 1×1 conv C → E, bias + LeakyReLU, 3×3 conv E → E, bias + LeakyReLU,
 * 1×1 conv E → C, with E = max(1, round(expansion·C)). The middle conv is a plain
 * (dense) convolution: TF.js has no grouped one, where R3GAN groups it.
 * Fix-up initialisation: the last conv starts at zero (the block is the identity),
 * the others at MSR with gain ACT_GAIN · L^(−1/4), L = the network's block count
 * (R3GAN's variance scaling, L^(−1/(2·3−2)) for 3 linear layers), so the output
 * variance grows with depth at a rate independent of L once trained.
 */
export function residualBlock(
  b: NetBuilder,
  name: string,
  c: number,
  expansion: number,
  totalBlocks: number,
): Layer {
  const inner = Math.max(1, Math.round(c * expansion));
  const gain = ACT_GAIN * totalBlocks ** (-1 / (2 * BRANCH_LAYERS - 2));
  const conv1 = conv(b, `${name}.conv1`, 1, c, inner, gain);
  const act1 = biasedActivation(b, `${name}.act1`, inner);
  const conv2 = conv(b, `${name}.conv2`, KERNEL, inner, inner, gain);
  const act2 = biasedActivation(b, `${name}.act2`, inner);
  const conv3 = conv(b, `${name}.conv3`, 1, inner, c, 0);
  return (w, x) => tf.add(x, conv3(w, act2(w, conv2(w, act1(w, conv1(w, x))))));
}

// The resampling filters as three linear maps that are each other's adjoints,
// built with tf.customGrad so every order of gradient exists: R1/R2 need the
// gradient of D's input gradient, and TF.js registers no gradient for the
// backprop kernels of depthwiseConv2d, avgPool or resizeNearestNeighbor.

type Linear = (x: tf.Tensor4D) => tf.Tensor4D;
/** A linear map with its adjoint as the gradient (the adjoint is resolved when called, so pairs may refer to each other). */
function withAdjoint(forward: Linear, adjoint: () => Linear): Linear {
  const op = tf.customGrad(((x: tf.Tensor4D) => ({
    value: forward(x),
    gradFunc: (dy: tf.Tensor4D) => [adjoint()(dy)],
  })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op as unknown as Linear;
}

/** The separable taps of the resampling low-pass filter, [1, 2, 1] (÷ 4 per axis); `agon export` writes the same filter. */
export const BLUR_TAPS = [1, 2, 1] as const;
/** The [1, 2, 1]⊗[1, 2, 1]/16 kernel for depthwiseConv2d on c channels, [3, 3, c, 1]. */
function blurKernel(c: number): tf.Tensor4D {
  const taps = BLUR_TAPS.flatMap((a) => BLUR_TAPS.map((b) => (a * b) / 16));
  return tf.tile(tf.tensor4d(taps, [3, 3, 1, 1]), [1, 1, c, 1]);
}

/**
 * [1, 2, 1]/4 along both spatial axes of [b, h, w, c], zero-padded (a border
 * pixel keeps ¾ of its value per axis, as upfirdn2d does). Symmetric kernel and
 * zero padding: the map is its own adjoint.
 */
const blur: Linear = withAdjoint(
  (x) => tf.depthwiseConv2d(x, blurKernel(x.shape[3]), 1, "same"),
  () => blur,
);
/** Mean of each 2×2 block, [b, h, w, c] → [b, h/2, w/2, c]; adjoint: nearest copies × ¼. */
const pool: Linear = withAdjoint(
  (x) => tf.avgPool(x, 2, 2, "valid"),
  () => (dy) => tf.mul(nearest(dy), 0.25),
);
/** Each pixel copied to a 2×2 block, [b, h, w, c] → [b, 2h, 2w, c]; adjoint: 2×2 sums (4 × pool). */
const nearest: Linear = withAdjoint(
  (x) => tf.image.resizeNearestNeighbor(x, [2 * x.shape[1], 2 * x.shape[2]]),
  () => (dy) => tf.mul(pool(dy), 4),
);

/**
 * 2× upsampling [b, h, w, c] → [b, 2h, 2w, c]: nearest neighbour, then the
 * [1, 2, 1] blur, which together are bilinear interpolation (half-pixel
 * centres) and equal R3GAN's InterpolativeUpsampler (upfirdn2d with the
 * [1, 3, 3, 1] filter) including its zero-padded border.
 */
export function upsample(x: tf.Tensor): tf.Tensor {
  return blur(nearest(x as tf.Tensor4D));
}

/**
 * 2× downsampling [b, h, w, c] → [b, h/2, w/2, c]: the [1, 2, 1] blur, then the
 * mean of each 2×2 block; together the [1, 3, 3, 1] low-pass filter with
 * stride 2 of R3GAN's InterpolativeDownsampler (upfirdn2d, zero-padded border).
 */
export function downsample(x: tf.Tensor): tf.Tensor {
  return pool(blur(x as tf.Tensor4D));
}

/**
 * G: z [b, latentDim] → a learned base×base×W₀ basis scaled per channel by a
 * linear map of z (R3GAN's GenerativeBasis) → per stage: [1×1 conv when the width
 * changes, 2× upsample,] `blocks` residual blocks → 1×1 conv to the image's
 * channels. No normalisation, no output bias and no tanh (as R3GAN: the samples
 * are G's linear output; the data are in [−1, 1]).
 * D: x → 1×1 conv → per stage from full size: `blocks` residual blocks[, 2×
 * downsample, 1×1 conv when the width changes] → a per-channel base×base
 * weighting summed over the map (R3GAN's DiscriminativeBasis, a depthwise
 * "valid" conv) → the feature vector [b, W₀] → linear → the logit [b, 1].
 * No state: reportSize 0, nothing to absorb or advance.
 */
export function buildResnet(cfg: ResnetConfig, sampleShape: number[]): GanModel {
  const { channels, sides, widths } = resnetLayout(cfg, sampleShape);
  const classes = classCount(cfg);
  const base = sides[0];
  const totalBlocks = cfg.blocks * sides.length;
  const stageBlocks = (b: NetBuilder, prefix: string, c: number): Layer[] =>
    Array.from({ length: cfg.blocks }, (_, j) =>
      residualBlock(b, `${prefix}.block${j}`, c, cfg.expansion, totalBlocks),
    );

  // G. Its input path is `gInput`: a conditional G concatenates a class
  // embedding of latentDim values to z, as R3GAN feeds z ‖ embed(y) into the
  // basis' linear map. The embedding is drawn N(0, 1/classes), R3GAN's
  // MSR-initialised Linear(classes → dim) on a one-hot class: drawn N(0, 1), z's
  // scale, the dcgan G made every sample of a class from the class alone (dcgan.ts).
  const gb = new NetBuilder("G");
  const w0 = widths[0];
  const embed = classes
    ? conditionalInput(gb, "g.embed", classes, cfg.latentDim, {
        kind: "normal",
        std: 1 / Math.sqrt(classes),
      })
    : null;
  const inDim = classes ? 2 * cfg.latentDim : cfg.latentDim;
  const basisLinear = gb.param("g.basis.linear", [inDim, w0], msr(inDim));
  const basis = gb.param("g.basis.const", [base, base, w0], { kind: "normal", std: 1 });
  const gInput: Layer = (w, z, ctx) => {
    const code = tf.matMul(embed ? embed(w, z, ctx) : z, basisLinear(w));
    return tf.mul(tf.reshape(code, [z.shape[0], 1, 1, w0]), basis(w));
  };
  const gLayers: Layer[] = [gInput, ...stageBlocks(gb, "g.s0", w0)];
  for (let i = 1; i < sides.length; i++) {
    if (widths[i] !== widths[i - 1]) {
      const project = conv(gb, `g.s${i}.up`, 1, widths[i - 1], widths[i]);
      gLayers.push((w, x) => project(w, x));
    }
    gLayers.push((_w, x) => upsample(x));
    gLayers.push(...stageBlocks(gb, `g.s${i}`, widths[i]));
  }
  const toImage = conv(gb, "g.out", 1, widths[widths.length - 1], channels);
  gLayers.push((w, x) => toImage(w, x));

  // D, stages from full size down. Its last feature vector is `dFeatures`' output,
  // where a conditional D adds the projection ⟨E_D[y], h⟩ to the logit (R3GAN
  // projects on the same vector, with an embedding of W₀ values).
  const db = new NetBuilder("D");
  const last = widths.length - 1;
  const fromImage = conv(db, "d.in", 1, channels, widths[last]);
  const dLayers: Layer[] = [(w, x) => fromImage(w, x)];
  for (let i = last; i >= 0; i--) {
    dLayers.push(...stageBlocks(db, `d.s${i}`, widths[i]));
    if (i === 0) break;
    dLayers.push((_w, x) => downsample(x));
    if (widths[i - 1] !== widths[i]) {
      const project = conv(db, `d.s${i}.down`, 1, widths[i], widths[i - 1]);
      dLayers.push((w, x) => project(w, x));
    }
  }
  const dBasis = db.param("d.basis.kernel", [base, base, w0], msr(base * base));
  const dHead = db.param("d.head.kernel", [w0, 1], msr(w0));
  const project = classes ? projectionHead(db, "d.embed", classes, w0, msr(w0), false) : null;
  const dFeatures: Layer = (w, x) => tf.sum(tf.mul(x, dBasis(w)), [1, 2]);
  dLayers.push(dFeatures, (w, h, ctx) => {
    const logit = tf.matMul(h, dHead(w));
    return project ? tf.add(logit, project(w, h, ctx)) : logit;
  });

  return {
    latentDim: cfg.latentDim,
    classes,
    sampleShape,
    g: gb.build(sequential(gLayers)),
    d: db.build(sequential(dLayers)),
  };
}
