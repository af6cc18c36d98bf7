// Class conditioning shared by the architectures (config `model.conditional`):
// G's learned class embedding, concatenated to z at G's input, and D's
// projection head (Miyato & Koyama 2018, "cGANs with Projection Discriminator").
// Both look a class up as one-hot(y) · E, a matrix product, so the gradient
// reaches the embedding through matMul alone on every backend (no scatter).
import * as tf from "@tensorflow/tfjs-core";
import { ModelError } from "./errors.js";
import type { NetBuilder, Weights } from "./layers.js";
import type { ApplyContext, InitSpec } from "./types.js";

/** Largest class count a conditional model takes (a prepared dataset's labels are uint32). */
export const MAX_CLASSES = 65536;

/**
 * The class count of a conditional model config (`model.classes`, filled in
 * from the dataset when the run starts), or 0 for an unconditional one.
 * Throws ModelError when `conditional` is set without a class count.
 */
export function classCount(cfg: { conditional?: boolean; classes?: number }): number {
  if (!cfg.conditional) return 0;
  const k = cfg.classes;
  if (k === undefined || !Number.isInteger(k) || k < 1 || k > MAX_CLASSES) {
    throw new ModelError(
      `model.conditional needs model.classes (an integer 1..${MAX_CLASSES}; filled in from a labelled dataset), got ${k}`,
    );
  }
  return k;
}

/**
 * The labels a conditional network reads from its ApplyContext: int32 [b]
 * class indices in [0, classes). Throws ModelError when they are absent or
 * their shape does not match the batch.
 */
export function contextLabels(ctx: ApplyContext, batch: number): tf.Tensor {
  const y = ctx.labels;
  if (!y) throw new ModelError("a conditional model needs the samples' classes (ctx.labels)");
  if (y.rank !== 1 || y.shape[0] !== batch) {
    throw new ModelError(`labels: expected shape [${batch}], got [${y.shape}]`);
  }
  return y;
}

/** one-hot(y) as float32 [b, classes]; classes outside [0, classes) give a zero row. */
function oneHot(y: tf.Tensor, classes: number): tf.Tensor {
  return tf.cast(tf.oneHot(tf.cast(y, "int32") as tf.Tensor1D, classes), "float32");
}

/**
 * A learned class embedding E: [classes, dim] (parameter `<name>.embeddings`,
 * the name tf.layers.embedding gives its weight, so `agon export` maps it
 * one to one). Returns (w, y) → E[y]: [b, dim] for int32 labels y: [b].
 */
export function classEmbedding(
  b: NetBuilder,
  name: string,
  classes: number,
  dim: number,
  init: InitSpec,
): (w: Weights, y: tf.Tensor) => tf.Tensor {
  const table = b.param(`${name}.embeddings`, [classes, dim], init);
  return (w, y) => tf.matMul(oneHot(y, classes), table(w));
}

/**
 * G's conditional input: [z, E[y]] ([b, latentDim + dim]), the class embedding
 * concatenated to the latent (as the Keras conditional-GAN example and
 * Mirza & Osindero 2014 feed the class at G's input). G reads y from ctx.labels.
 */
export function conditionalInput(
  b: NetBuilder,
  name: string,
  classes: number,
  dim: number,
  init: InitSpec,
): (w: Weights, z: tf.Tensor, ctx: ApplyContext) => tf.Tensor {
  const embed = classEmbedding(b, name, classes, dim, init);
  return (w, z, ctx) => tf.concat([z, embed(w, contextLabels(ctx, z.shape[0]))], 1);
}

/**
 * The projection discriminator's class term (Miyato & Koyama 2018, eq. 3):
 * ⟨E_D[y], h⟩ per sample, added to D's unconditional logit ψ(h), where h:
 * [b, features] are D's final (flattened or pooled) features. E_D: [classes,
 * features] is the kernel `<name>.kernel`, spectrally normalised when D is
 * (as the paper's SNEmbedId). Returns (w, h, ctx) → [b, 1].
 */
export function projectionHead(
  b: NetBuilder,
  name: string,
  classes: number,
  features: number,
  init: InitSpec,
  spectral: boolean,
): (w: Weights, h: tf.Tensor, ctx: ApplyContext) => tf.Tensor {
  const table = b.kernel(name, [classes, features], init, spectral);
  return (w, h, ctx) => {
    const e = tf.matMul(oneHot(contextLabels(ctx, h.shape[0]), classes), table(w));
    return tf.sum(tf.mul(e, h), 1, true);
  };
}

/**
 * Conditional batch norm's scale and shift (de Vries et al. 2017, Dumoulin et al. 2017;
 * the generator of Miyato & Koyama 2018 and of BigGAN, Brock et al. 2019): one learned
 * (γ, β) pair per class and channel, `<name>.gamma` and `<name>.beta`: [classes,
 * channels], drawn ones and zeros as in the projection paper's code
 * (CategoricalConditionalBatchNormalization). The batch statistics and running
 * statistics stay per channel, shared by all classes. Pass the result as
 * NetBuilder.batchNorm's `affine`: (w, x, ctx) → [γ[y], β[y]], each [b, 1, …, 1,
 * channels] for x of rank r (b samples, labels from ctx.labels).
 */
export function conditionalScaleShift(
  b: NetBuilder,
  name: string,
  classes: number,
  channels: number,
): (w: Weights, x: tf.Tensor, ctx: ApplyContext) => [tf.Tensor, tf.Tensor] {
  const gamma = b.param(`${name}.gamma`, [classes, channels], { kind: "ones" });
  const beta = b.param(`${name}.beta`, [classes, channels], { kind: "zeros" });
  return (w, x, ctx) => {
    const n = x.shape[0];
    const y = oneHot(contextLabels(ctx, n), classes);
    const shape = [n, ...x.shape.slice(1, -1).map(() => 1), channels];
    return [tf.reshape(tf.matMul(y, gamma(w)), shape), tf.reshape(tf.matMul(y, beta(w)), shape)];
  };
}
