// DiffAugment: differentiable augmentation applied to every image D sees, real and fake,
// in both phases, so that D cannot memorise a small dataset (Zhao et al. 2020,
// "Differentiable Augmentation for Data-Efficient GAN Training", reference
// implementation mit-han-lab/data-efficient-gans, DiffAugment_pytorch.py).
// With a probability p < 1 (config `augment.p`) each op is applied to each image
// with probability p, an independent Bernoulli draw per image and op, as
// StyleGAN2-ADA's p (Karras et al. 2020, NVlabs/stylegan2-ada-pytorch,
// training/augment.py); the reference DiffAugment always applies every op (p = 1).
//
// The random draws are made in plain JS from our seeded Rng (backend-independent, a pure
// function of the seed), and the ops are written so that their results are exact
// regardless of summation order: translation is a product with 0/1 shift matrices (each
// output element is one input element or 0), cutout a 0/1 mask. So augmented batches are
// bit-identical on every worker and in `agon train`.
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "./rng.js";

/** DiffAugment's ops, applied in this order when listed: color, then translation, then cutout. */
export const DIFF_AUGMENT_OPS = ["color", "translation", "cutout"] as const;
export type DiffAugmentOp = (typeof DIFF_AUGMENT_OPS)[number];

/** Translation by up to ±round(ratio·size) pixels (zero fill) and a cutout square of round(ratio·size). */
export const TRANSLATION_RATIO = 0.125;
export const CUTOUT_RATIO = 0.5;

/**
 * The random parameters of one augmented batch, one entry per sample (length = batch).
 * Drawn by `drawDiffAugment`; applying the same draw twice gives the same images.
 */
export interface DiffAugmentDraw {
  /** Added to every pixel: uniform in [−0.5, 0.5). Absent without "color". */
  brightness?: Float32Array;
  /** Scales the deviation from the per-pixel channel mean: uniform in [0, 2). */
  saturation?: Float32Array;
  /** Scales the deviation from the per-image mean: uniform in [0.5, 1.5). */
  contrast?: Float32Array;
  /** Row shift: output row i reads input row i + shiftY (0 outside). Integers in [−s, s]. */
  shiftY?: Int32Array;
  /** Column shift, as shiftY. */
  shiftX?: Int32Array;
  /** Top-left corner of the zeroed square, before clamping to the image (may be negative). */
  cutoutY?: Int32Array;
  cutoutX?: Int32Array;
  /**
   * With p < 1: per image, 1 where the op is applied, 0 where the image passes
   * through it unchanged (Bernoulli(p)). Absent: the op is applied to every image.
   */
  colorOn?: Int32Array;
  translationOn?: Int32Array;
  cutoutOn?: Int32Array;
}

/**
 * Draws the parameters for a batch of `batch` images of `height`×`width`, in the reference
 * implementation's order (brightness, saturation, contrast, translation x/y, cutout x/y),
 * each as `batch` consecutive draws from one Rng seeded with `seed`. With `p` < 1, then
 * for each op of `ops` in DIFF_AUGMENT_OPS order, `batch` more draws u: the op is applied
 * to image i when u < p. The parameters do not depend on p, and p = 1 draws nothing more
 * (the same draw as before p existed).
 * @throws RangeError for an unknown op, a non-positive size or p outside [0, 1].
 */
export function drawDiffAugment(
  seed: number,
  batch: number,
  height: number,
  width: number,
  ops: readonly DiffAugmentOp[],
  p = 1,
): DiffAugmentDraw {
  for (const op of ops) {
    if (!DIFF_AUGMENT_OPS.includes(op)) throw new RangeError(`unknown DiffAugment op '${op}'`);
  }
  if (!(p >= 0 && p <= 1)) {
    throw new RangeError(`DiffAugment's probability p must be in [0, 1], got ${p}`);
  }
  if (!(batch > 0 && height > 0 && width > 0)) {
    throw new RangeError(
      `DiffAugment needs a positive batch and size, got ${batch}×${height}×${width}`,
    );
  }
  const rng = new Rng(seed);
  const floats = (lo: number, span: number) => {
    const a = new Float32Array(batch);
    for (let i = 0; i < batch; i++) a[i] = lo + span * rng.nextFloat();
    return a;
  };
  const ints = (lo: number, count: number) => {
    const a = new Int32Array(batch);
    for (let i = 0; i < batch; i++) a[i] = lo + rng.nextInt(count);
    return a;
  };
  const draw: DiffAugmentDraw = {};
  if (ops.includes("color")) {
    draw.brightness = floats(-0.5, 1);
    draw.saturation = floats(0, 2);
    draw.contrast = floats(0.5, 1);
  }
  if (ops.includes("translation")) {
    const sy = Math.floor(height * TRANSLATION_RATIO + 0.5);
    const sx = Math.floor(width * TRANSLATION_RATIO + 0.5);
    draw.shiftY = ints(-sy, 2 * sy + 1);
    draw.shiftX = ints(-sx, 2 * sx + 1);
  }
  if (ops.includes("cutout")) {
    const cy = Math.floor(height * CUTOUT_RATIO + 0.5);
    const cx = Math.floor(width * CUTOUT_RATIO + 0.5);
    // As the reference: the centre is uniform over [0, size + (1 − c mod 2)), the square
    // spans centre − ⌊c/2⌋ … centre − ⌊c/2⌋ + c − 1, clipped to the image.
    draw.cutoutY = ints(0, height + (1 - (cy % 2))).map((o) => o - Math.floor(cy / 2));
    draw.cutoutX = ints(0, width + (1 - (cx % 2))).map((o) => o - Math.floor(cx / 2));
  }
  if (p < 1) {
    const on = () => Int32Array.from({ length: batch }, () => (rng.nextFloat() < p ? 1 : 0));
    for (const op of DIFF_AUGMENT_OPS) if (ops.includes(op)) draw[`${op}On`] = on();
  }
  return draw;
}

/** Per-sample 0/1 shift matrices [B, n, n]: row i has a 1 in column i + shift[b] when inside. */
function shiftMatrices(shift: Int32Array, n: number): tf.Tensor3D {
  const m = new Float32Array(shift.length * n * n);
  for (let b = 0; b < shift.length; b++) {
    for (let i = 0; i < n; i++) {
      const k = i + shift[b];
      if (k >= 0 && k < n) m[b * n * n + i * n + k] = 1;
    }
  }
  return tf.tensor3d(m, [shift.length, n, n]);
}

/** Per-sample 0/1 keep-mask [B, H, W, 1] with the cutout square zeroed. */
function cutoutMask(draw: DiffAugmentDraw, batch: number, h: number, w: number): tf.Tensor4D {
  const cy = Math.floor(h * CUTOUT_RATIO + 0.5);
  const cx = Math.floor(w * CUTOUT_RATIO + 0.5);
  const m = new Float32Array(batch * h * w).fill(1);
  const oy = draw.cutoutY as Int32Array;
  const ox = draw.cutoutX as Int32Array;
  for (let b = 0; b < batch; b++) {
    for (let y = Math.max(0, oy[b]); y < Math.min(h, oy[b] + cy); y++) {
      for (let x = Math.max(0, ox[b]); x < Math.min(w, ox[b] + cx); x++) m[(b * h + y) * w + x] = 0;
    }
  }
  return tf.tensor4d(m, [batch, h, w, 1]);
}

/**
 * `op(y)` on the images whose `on` is 1 and y itself, exactly, on the others (tf.where:
 * their values and their gradients pass through unchanged). `on` absent: op(y) on all;
 * all 0: y, without running op.
 */
function onSome(
  y: tf.Tensor4D,
  on: Int32Array | undefined,
  op: (y: tf.Tensor4D) => tf.Tensor4D,
): tf.Tensor4D {
  if (!on) return op(y);
  const batch = y.shape[0];
  if (on.length !== batch)
    throw new RangeError(`DiffAugment draw is for ${on.length} images, batch is ${batch}`);
  if (on.every((v) => v === 0)) return y;
  if (on.every((v) => v === 1)) return op(y);
  return tf.where(tf.tensor4d(Uint8Array.from(on), [batch, 1, 1, 1], "bool"), op(y), y);
}

/**
 * Applies a drawn augmentation to images `x` [B, H, W, C] (NHWC, any value range; Agon's
 * are in [−1, 1]); differentiable in `x`. An op whose `<op>On` is 0 for an image leaves
 * that image exactly as it is (values and gradient). Call inside tf.tidy / a gradient function.
 * @throws RangeError when the draw's batch size differs from x's.
 */
export function applyDiffAugment(x: tf.Tensor4D, draw: DiffAugmentDraw): tf.Tensor4D {
  const [batch, h, w, c] = x.shape;
  const perSample = (a: Float32Array) => {
    if (a.length !== batch)
      throw new RangeError(`DiffAugment draw is for ${a.length} images, batch is ${batch}`);
    return tf.tensor4d(a, [batch, 1, 1, 1]);
  };
  let y: tf.Tensor4D = x;
  const { brightness, saturation, contrast } = draw;
  if (brightness && saturation && contrast) {
    y = onSome(y, draw.colorOn, (t) => {
      let u = tf.add(t, perSample(brightness));
      const channelMean = tf.mean(u, 3, true);
      u = tf.add(tf.mul(tf.sub(u, channelMean), perSample(saturation)), channelMean);
      const imageMean = tf.mean(u, [1, 2, 3], true);
      return tf.add(tf.mul(tf.sub(u, imageMean), perSample(contrast)), imageMean);
    });
  }
  const { shiftY, shiftX, cutoutY, cutoutX } = draw;
  if (shiftY && shiftX) {
    if (shiftY.length !== batch)
      throw new RangeError(`DiffAugment draw is for ${shiftY.length} images, batch is ${batch}`);
    y = onSome(y, draw.translationOn, (t) => {
      // Rows: [B, H, H] × [B, H, W·C]; then columns on the transposed image.
      const rows = tf.matMul(shiftMatrices(shiftY, h), tf.reshape(t, [batch, h, w * c]));
      const byCol = tf.reshape(tf.transpose(tf.reshape(rows, [batch, h, w, c]), [0, 2, 1, 3]), [
        batch,
        w,
        h * c,
      ]);
      const cols = tf.matMul(shiftMatrices(shiftX, w), byCol);
      return tf.transpose(tf.reshape(cols, [batch, w, h, c]), [0, 2, 1, 3]);
    });
  }
  if (cutoutY && cutoutX) {
    if (cutoutY.length !== batch)
      throw new RangeError(`DiffAugment draw is for ${cutoutY.length} images, batch is ${batch}`);
    y = onSome(y, draw.cutoutOn, (t) => tf.mul(t, cutoutMask(draw, batch, h, w)));
  }
  return y;
}
