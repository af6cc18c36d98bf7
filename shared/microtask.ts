// One microtask: the gradient of one phase's network on one shard's batch.
// Workers run this; `agon train` runs the same code, so both give the same bits.
import * as tf from "@tensorflow/tfjs-core";
// tfjs-core registers no gradient functions; the umbrella package's Node build
// does (tfjs-core's own ESM registration file cannot be loaded by Node).
import "@tensorflow/tfjs";
import {
  applyDiffAugment,
  type DiffAugmentDraw,
  type DiffAugmentOp,
  drawDiffAugment,
} from "./augment.js";
import "./gradients.js"; // our gradient registrations (LeakyReLU, Greater)
import type { GanLoss } from "./losses.js";
import { type GanModel, type Network, toFlat, toTensors } from "./models/index.js";
import { hashSeed, Rng, SeedDomain } from "./rng.js";

export type Phase = "D" | "G";

export interface MicrotaskInput {
  phase: Phase;
  gWeights: Float32Array;
  dWeights: Float32Array;
  /**
   * `batch` real samples, flat NHWC; required in the D phase and, for losses
   * that pair reals with fakes (rpgan), in the G phase; ignored otherwise.
   */
  real?: Float32Array;
  /** D phase: whether this phase applies the loss's R1/R2 (lazy regularisation); default true. */
  regularize?: boolean;
  /**
   * The real samples' class labels (0 when the dataset is unlabelled), given
   * with `real`. Unconditional models ignore them; conditional models need
   * them (and draw their fakes' classes with fakeClasses).
   */
  labels?: Int32Array;
  batch: number;
  noiseSeed: number;
  /** DiffAugment ops on every image D sees (config `augment.policy`); absent or empty: none. */
  augment?: readonly DiffAugmentOp[];
  /** The probability in [0, 1] that each op is applied to each image (config `augment.p`); absent: 1. */
  augmentP?: number;
  /** Samples per pass (config `microbatch`); absent or ≥ batch: one pass. */
  microbatch?: number;
  /**
   * G's and D's weights already on the device, holding the same values as
   * gWeights and dWeights (in parameter order); used instead of uploading
   * them. The caller owns and disposes them.
   */
  resident?: { g: tf.Tensor[]; d: tf.Tensor[] };
}

export interface MicrotaskResult {
  /**
   * Gradient of the phase's loss (mean over the batch) w.r.t. that phase's
   * parameters only (`trainableSize` values), followed by the network's report
   * (`reportSize` values: batch-norm moments for the coordinator's running statistics).
   */
  grad: Float32Array;
  /** Samples the gradient averages over; the coordinator weights by it. */
  count: number;
  /** D loss (D phase only; null in the G phase). */
  dLoss: number | null;
  /** G loss on this batch's fakes (in the D phase computed from the same D outputs, no extra pass). */
  gLoss: number;
  /** Mean D(x) on real samples (D phase only), as the loss reports it. */
  dReal: number | null;
  /** Mean D(G(z)). */
  dFake: number;
}

/**
 * Classes of a conditional model's generated samples: `count` uniform draws
 * in [0, classes) from hashSeed(seed, SeedDomain.classes) (pure JS). A
 * microtask's fakes use its noise seed; `agon eval` its evaluation seed.
 */
export function fakeClasses(seed: number, count: number, classes: number): Int32Array {
  const rng = new Rng(hashSeed(seed, SeedDomain.classes));
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) out[i] = rng.nextInt(classes);
  return out;
}

/** Standard-normal latent vectors for a batch, from a seed (pure JS, backend-independent). */
export function latentNoise(seed: number, batch: number, latentDim: number): Float32Array {
  return new Rng(seed).normalArray(batch * latentDim);
}

export function computeMicrotask(
  model: GanModel,
  loss: GanLoss,
  input: MicrotaskInput,
): MicrotaskResult {
  const out = microtaskTensors(model, loss, input);
  // Read results outside tidy: tidy walks what it returns, which is slow for big arrays.
  const net = input.phase === "D" ? model.d : model.g;
  const grad = toFlat(net, out.grads);
  const s = out.stats.dataSync();
  tf.dispose([out.grads, out.stats]);
  return microtaskResult(input, net, grad, s);
}

/**
 * The same as computeMicrotask, reading the results back asynchronously: the
 * only way on backends that cannot read synchronously (webgpu in Node). The
 * gradient is flattened on the device and read in one transfer.
 */
export async function computeMicrotaskAsync(
  model: GanModel,
  loss: GanLoss,
  input: MicrotaskInput,
): Promise<MicrotaskResult> {
  const out = microtaskTensors(model, loss, input);
  const flat = tf.tidy(() => tf.concat(out.grads.map((g) => tf.reshape(g, [-1]))));
  tf.dispose(out.grads);
  const [grad, s] = await Promise.all([flat.data(), out.stats.data()]);
  tf.dispose([flat, out.stats]);
  const net = input.phase === "D" ? model.d : model.g;
  if (grad.length !== net.trainableSize) throw new RangeError(`gradient has ${grad.length} values`);
  return microtaskResult(input, net, grad as Float32Array, s as Float32Array);
}

/** Loss statistics at the head of the stats vector; the network's report follows them. */
const STATS = { D: 4, G: 2 } as const;

function microtaskResult(
  input: MicrotaskInput,
  net: Network,
  gradient: Float32Array,
  s: ArrayLike<number>,
): MicrotaskResult {
  const batch = input.batch;
  const head = STATS[input.phase];
  let grad = gradient;
  if (net.reportSize > 0) {
    // The report (batch-norm moments) travels as the gradient's tail.
    grad = new Float32Array(net.trainableSize + net.reportSize);
    grad.set(gradient);
    for (let i = 0; i < net.reportSize; i++) grad[net.trainableSize + i] = s[head + i];
  }
  if (input.phase === "D") {
    return { grad, count: batch, dLoss: s[0], gLoss: s[1], dReal: s[2], dFake: s[3] };
  }
  return { grad, count: batch, dLoss: null, gLoss: s[0], dReal: null, dFake: s[1] };
}

/**
 * The phase's gradients (parameter order) and its stats vector (loss
 * statistics, then the network's report), as tensors the caller disposes.
 */
function microtaskTensors(
  model: GanModel,
  loss: GanLoss,
  input: MicrotaskInput,
): { grads: tf.Tensor[]; stats: tf.Tensor } {
  const { phase, batch } = input;
  if (!Number.isInteger(batch) || batch < 1)
    throw new RangeError(`batch must be ≥ 1, got ${batch}`);
  const micro = input.microbatch ?? batch;
  if (!Number.isInteger(micro) || micro < 1)
    throw new RangeError(`microbatch must be ≥ 1, got ${micro}`);
  const needsReal = phase === "D" || loss.pairsReal;
  if (needsReal && (!input.real || input.real.length !== batch * sampleSize(model))) {
    throw new RangeError(
      `${phase} phase needs ${batch * sampleSize(model)} real values, got ${input.real?.length ?? 0}`,
    );
  }
  const conditional = model.classes > 0;
  if (conditional && needsReal && input.labels?.length !== batch) {
    throw new RangeError(
      `a conditional model's ${phase} phase needs ${batch} labels, got ${input.labels?.length ?? 0}`,
    );
  }
  const reg = phase === "D" && input.regularize !== false ? loss.regEvery : 0;
  const penalties = { r1: (reg * loss.r1) / 2, r2: (reg * loss.r2) / 2 };
  const z = latentNoise(input.noiseSeed, batch, model.latentDim);
  return tf.tidy(() => {
    const gW = input.resident?.g ?? toTensors(model.g, input.gWeights);
    const dW = input.resident?.d ?? toTensors(model.d, input.dWeights);
    const zT = tf.tensor2d(z, [batch, model.latentDim]);
    const x = needsReal ? tf.tensor(input.real!, [batch, ...model.sampleShape]) : null;
    const alpha =
      phase === "D" && loss.gradientPenalty > 0
        ? interpolationWeights(input.noiseSeed, batch, model)
        : null;
    const aug = augmentDraws(input, model);
    const classes: Classes | null = conditional
      ? {
          real: needsReal ? tf.tensor1d(input.labels!.subarray(0, batch), "int32") : null,
          fake: tf.tensor1d(fakeClasses(input.noiseSeed, batch, model.classes), "int32"),
        }
      : null;
    if (micro >= batch)
      return passTensors(model, loss, penalties, phase, gW, dW, zT, x, alpha, aug, classes);

    // Pieces of `micro` samples in order; each piece's mean-loss gradient weighs n/batch,
    // so the sum is the whole batch's mean-loss gradient (and the report's moments are
    // the whole microtask's). Each piece's intermediates are freed before the next runs.
    type Sums = { grads: tf.Tensor[]; stats: tf.Tensor };
    let acc: Sums | null = null;
    for (let start = 0; start < batch; start += micro) {
      const n = Math.min(micro, batch - start);
      const prev: Sums | null = acc;
      acc = tf.tidy((): Sums => {
        const rows = (t: tf.Tensor) => tf.slice(t, start, n);
        const part = passTensors(
          model,
          loss,
          penalties,
          phase,
          gW,
          dW,
          rows(zT),
          x && rows(x),
          alpha && rows(alpha),
          aug && { real: sliceDraw(aug.real, start, n), fake: sliceDraw(aug.fake, start, n) },
          classes && { real: classes.real && rows(classes.real), fake: rows(classes.fake) },
        );
        const w = n / batch;
        const grads: tf.Tensor[] = part.grads.map((g, i) =>
          prev ? tf.add(prev.grads[i], tf.mul(g, w)) : tf.mul(g, w),
        );
        const stats = prev ? tf.add(prev.stats, tf.mul(part.stats, w)) : tf.mul(part.stats, w);
        return { grads, stats };
      });
      if (prev) tf.dispose([...prev.grads, prev.stats]);
    }
    return acc!;
  });
}

/** A conditional model's classes in a pass: the reals' (when the phase has reals) and the fakes'. */
interface Classes {
  real: tf.Tensor | null;
  fake: tf.Tensor;
}

/** Weights of the zero-centred penalties in this pass: r1 = γ₁/2 (× regEvery), r2 likewise; 0: off. */
interface Penalties {
  r1: number;
  r2: number;
}

/**
 * One forward/backward pass of the phase over the samples in zT (and x, alpha
 * where the phase needs them). `gW`, `dW`: parameters then state; the gradient
 * is taken with respect to the phase's parameters only.
 */
function passTensors(
  model: GanModel,
  loss: GanLoss,
  penalties: Penalties,
  phase: Phase,
  gW: tf.Tensor[],
  dW: tf.Tensor[],
  zT: tf.Tensor,
  x: tf.Tensor | null,
  alpha: tf.Tensor | null,
  aug: AugmentDraws | null,
  classes: Classes | null,
): { grads: tf.Tensor[]; stats: tf.Tensor } {
  return tf.tidy(() => {
    // D as it sees reals and fakes: behind DiffAugment when the run has it, so every
    // image D sees (and every gradient of D in x, for the penalties) goes through it.
    // A conditional D judges each sample as of its class (labels fixed: R1/R2 and the
    // WGAN-GP term differentiate in the images only).
    const critic =
      (draw: DiffAugmentDraw | undefined, labels: tf.Tensor | undefined): Critic =>
      (w, t) =>
        model.d.apply(w, draw ? applyDiffAugment(t as tf.Tensor4D, draw) : t, {
          training: true,
          labels,
        });
    const dReal = critic(aug?.real, classes?.real ?? undefined);
    const dFake = critic(aug?.fake, classes?.fake);
    const gCtx = { training: true, labels: classes?.fake };
    if (phase === "D") {
      const fake = model.g.apply(gW, zT, gCtx);
      const dState = dW.slice(model.d.params.length);
      let realOut: tf.Tensor | undefined;
      let fakeOut: tf.Tensor | undefined;
      const { value, grads } = tf.valueAndGrads((...params: tf.Tensor[]) => {
        const w = [...params, ...dState];
        realOut = tf.keep(dReal(w, x!));
        fakeOut = tf.keep(dFake(w, fake));
        let l = loss.discriminator(realOut, fakeOut);
        if (alpha)
          l = tf.add(l, tf.mul(loss.gradientPenalty, gradientPenalty(dReal, w, x!, fake, alpha)));
        if (penalties.r1 > 0) l = tf.add(l, tf.mul(penalties.r1, squaredGradNorm(dReal, w, x!)));
        if (penalties.r2 > 0) l = tf.add(l, tf.mul(penalties.r2, squaredGradNorm(dFake, w, fake)));
        return l as tf.Scalar;
      })(dW.slice(0, model.d.params.length));
      const stats = tf.stack([
        value,
        loss.generator(fakeOut!, realOut),
        loss.report(realOut!),
        loss.report(fakeOut!),
      ]);
      tf.dispose([realOut!, fakeOut!]); // kept past valueAndGrads' own tidy; outer tidy skips kept tensors
      return { grads, stats };
    }
    const gState = gW.slice(model.g.params.length);
    const report: tf.Tensor[] = [];
    let fakeOut: tf.Tensor | undefined;
    // Relativistic losses compare each fake with its paired real; D(x_r) does not depend on G.
    const realOut = loss.pairsReal ? dReal(dW, x!) : undefined;
    const { value, grads } = tf.valueAndGrads((...params: tf.Tensor[]) => {
      const fake = model.g.apply([...params, ...gState], zT, { ...gCtx, report });
      fakeOut = tf.keep(dFake(dW, fake));
      return loss.generator(fakeOut, realOut);
    })(gW.slice(0, model.g.params.length));
    const head = tf.stack([value, loss.report(fakeOut!)]);
    const stats = report.length > 0 ? tf.concat([head, ...report]) : head;
    tf.dispose([fakeOut!, ...report]);
    return { grads, stats };
  });
}

/** D's output on a batch x with weights w (parameters then state), augmentation included. */
type Critic = (w: tf.Tensor[], x: tf.Tensor) => tf.Tensor;

/** One microtask's DiffAugment draws: one for its reals, one for its fakes. */
interface AugmentDraws {
  real: DiffAugmentDraw;
  fake: DiffAugmentDraw;
}

/**
 * The microtask's DiffAugment draws (with the per-image, per-op Bernoulli(p)
 * choices when p < 1), a pure function of its noise seed (SeedDomain.augment;
 * 0 = reals, 1 = fakes), so every worker augments alike.
 */
function augmentDraws(input: MicrotaskInput, model: GanModel): AugmentDraws | null {
  const ops = input.augment;
  if (!ops || ops.length === 0) return null;
  if (model.sampleShape.length !== 3)
    throw new RangeError(`DiffAugment needs images [H, W, C], got [${model.sampleShape}]`);
  const [h, w] = model.sampleShape;
  const draw = (which: number) =>
    drawDiffAugment(
      hashSeed(input.noiseSeed, SeedDomain.augment, which),
      input.batch,
      h,
      w,
      ops,
      input.augmentP,
    );
  return { real: draw(0), fake: draw(1) };
}

/** Rows [start, start + n) of every per-sample array of a draw (for microbatch pieces). */
function sliceDraw(draw: DiffAugmentDraw, start: number, n: number): DiffAugmentDraw {
  const out: Record<string, Float32Array | Int32Array> = {};
  for (const [k, v] of Object.entries(draw)) if (v) out[k] = v.subarray(start, start + n);
  return out as DiffAugmentDraw;
}

function sampleSize(model: GanModel): number {
  return model.sampleShape.reduce((a, b) => a * b, 1);
}

/** Per-sample mixing weights ε ~ U(0,1) for the WGAN-GP interpolates, from the task's seed. */
function interpolationWeights(seed: number, batch: number, model: GanModel): tf.Tensor {
  const rng = new Rng(hashSeed(seed, SeedDomain.interpolation));
  const eps = new Float32Array(batch);
  for (let i = 0; i < batch; i++) eps[i] = rng.nextFloat();
  return tf.tensor(eps, [batch, ...model.sampleShape.map(() => 1)]);
}

/** E[(‖∇x̂ D(x̂)‖₂ − 1)²] on x̂ = εx + (1−ε)G(z); differentiable w.r.t. D's weights. */
function gradientPenalty(
  d: Critic,
  w: tf.Tensor[],
  real: tf.Tensor,
  fake: tf.Tensor,
  eps: tf.Tensor,
): tf.Scalar {
  const xHat = tf.add(tf.mul(eps, real), tf.mul(tf.sub(1, eps), fake));
  const dx = tf.grad((x: tf.Tensor) => tf.sum(d(w, x)))(xHat);
  const axes = dx.shape.slice(1).map((_, i) => i + 1);
  const norm = tf.sqrt(tf.add(tf.sum(tf.square(dx), axes), 1e-12));
  return tf.mean(tf.square(tf.sub(norm, 1))) as tf.Scalar;
}

/**
 * E‖∇x D(x)‖² over the batch (per-sample squared L2 norm of D's input gradient,
 * then the mean): the zero-centred R1 (x real) / R2 (x fake) penalty of
 * Mescheder et al. 2018 without its γ/2. Differentiable w.r.t. D's weights
 * (second order through D, like the WGAN-GP term).
 */
function squaredGradNorm(d: Critic, w: tf.Tensor[], x: tf.Tensor): tf.Scalar {
  const dx = tf.grad((v: tf.Tensor) => tf.sum(d(w, v)))(x);
  const axes = dx.shape.slice(1).map((_, i) => i + 1);
  return tf.mean(tf.sum(tf.square(dx), axes)) as tf.Scalar;
}
