// Building blocks shared by the architectures: a builder that lays out
// parameters and state in the flat array, and the layers that own state
// (batch norm, spectral norm) together with how the coordinator advances it.
import * as tf from "@tensorflow/tfjs-core";
import type { ApplyContext, InitSpec, Network, ParamSpec } from "./types.js";

/** LeakyReLU slope of D (Radford et al. 2015). */
export const LEAK = 0.2;
/** Batch-norm ε and running-statistics momentum, as PyTorch's BatchNorm defaults. */
export const BN_EPS = 1e-5;
export const BN_MOMENTUM = 0.1;
/** PyTorch's normalize() floor in spectral norm's power iteration. */
const SN_EPS = 1e-12;

export type Weights = tf.Tensor[];
export type Layer = (w: Weights, x: tf.Tensor, ctx: ApplyContext) => tf.Tensor;

/** The layers applied in order, each to the last one's output: a network's apply. */
export function sequential(layers: Layer[]): Layer {
  return (w, x, ctx) => layers.reduce((h, layer) => layer(w, h, ctx), x);
}

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** The identity with a zero gradient (power-iteration vectors are constants to backprop). */
export const stopGradient = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => [tf.zerosLike(dy)],
})) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;

interface BnEntry {
  /** Index into the network's state list of the running mean (the variance follows). */
  state: number;
  channels: number;
  /** Values per channel per sample (H·W for images, 1 for vectors). */
  spatial: number;
  /** Where this layer's [means, means of squares] start in the report. */
  reportOffset: number;
}

interface SnEntry {
  /** Index into params of the kernel, seen as a [fanIn, out] matrix. */
  param: number;
  fanIn: number;
  out: number;
  /** Index into state of the unit vector u (length out). */
  state: number;
}

/**
 * Collects a network's parameters and state in declaration order and hands out
 * accessors into the tensor list `apply` receives (params, then state).
 */
export class NetBuilder {
  readonly params: ParamSpec[] = [];
  readonly state: ParamSpec[] = [];
  private readonly bn: BnEntry[] = [];
  private readonly sn: SnEntry[] = [];
  private reportSize = 0;

  constructor(readonly role: "G" | "D") {}

  /** A trainable parameter; returns a getter from the weights list. */
  param(name: string, shape: number[], init: InitSpec): (w: Weights) => tf.Tensor {
    const i = this.params.length;
    this.params.push({ name, shape, init });
    return (w) => w[i];
  }

  /** A state tensor; returns a getter (state follows all params in the list). */
  stateVar(name: string, shape: number[], init: InitSpec): (w: Weights) => tf.Tensor {
    const i = this.state.length;
    this.state.push({ name, shape, init });
    return (w) => w[this.params.length + i];
  }

  /**
   * A kernel, spectrally normalised when `spectral` (Miyato et al. 2018): W / σ(W)
   * with σ from one power iteration started at the state vector u, u and v held
   * constant for the gradient (as torch.nn.utils.spectral_norm in training mode).
   * The kernel's last axis is its output; the rest are flattened into fanIn.
   */
  kernel(
    name: string,
    shape: number[],
    init: InitSpec,
    spectral: boolean,
  ): (w: Weights) => tf.Tensor {
    const index = this.params.length;
    const get = this.param(`${name}.kernel`, shape, init);
    if (!spectral) return get;
    const out = shape[shape.length - 1];
    const fanIn = count(shape) / out;
    const stateIndex = this.state.length;
    const getU = this.stateVar(`${name}.u`, [out], { kind: "unit" });
    this.sn.push({ param: index, fanIn, out, state: stateIndex });
    return (w) => spectralNormalize(get(w), getU(w), fanIn, out);
  }

  /**
   * Batch norm over all axes but the last (Ioffe & Szegedy 2015; BatchNorm2d's
   * semantics for NHWC). `running`: keep running statistics as state, used in
   * eval mode and advanced from the training passes' reports; without them
   * the layer always normalises with the batch (D, which never runs in eval mode).
   * `affine`, when given, replaces the learned per-channel scale and shift (its
   * parameters declared by the caller before this call): (w, x, ctx) → [γ, β], each
   * broadcastable to x (conditional batch norm, see conditional.ts).
   */
  batchNorm(
    name: string,
    channels: number,
    spatial: number,
    running: boolean,
    gammaInit: InitSpec = { kind: "ones" },
    affine?: (w: Weights, x: tf.Tensor, ctx: ApplyContext) => [tf.Tensor, tf.Tensor],
  ): Layer {
    const scaleShift =
      affine ??
      (() => {
        const gamma = this.param(`${name}.gamma`, [channels], gammaInit);
        const beta = this.param(`${name}.beta`, [channels], { kind: "zeros" });
        return (w: Weights): [tf.Tensor, tf.Tensor] => [gamma(w), beta(w)];
      })();
    let mean: ((w: Weights) => tf.Tensor) | null = null;
    let variance: ((w: Weights) => tf.Tensor) | null = null;
    let slot = -1;
    if (running) {
      const state = this.state.length;
      mean = this.stateVar(`${name}.mean`, [channels], { kind: "zeros" });
      variance = this.stateVar(`${name}.var`, [channels], { kind: "ones" });
      slot = this.bn.length;
      this.bn.push({ state, channels, spatial, reportOffset: this.reportSize });
      this.reportSize += 2 * channels;
    }
    return (w, x, ctx) => {
      const [gamma, beta] = scaleShift(w, x, ctx);
      if (!ctx.training && mean && variance) {
        return normalize(x, mean(w), variance(w), gamma, beta);
      }
      const axes = x.shape.slice(0, -1).map((_, i) => i);
      const m = tf.moments(x, axes);
      if (ctx.training && ctx.report && slot >= 0) {
        const meanSq = tf.add(m.variance, tf.square(m.mean));
        ctx.report[slot] = tf.keep(tf.concat([m.mean, meanSq]));
      }
      return normalize(x, m.mean, m.variance, gamma, beta);
    };
  }

  /** The finished network: sizes, the state offsets, and how its state advances. */
  build(apply: Network["apply"]): Network {
    const trainableSize = this.params.reduce((n, p) => n + count(p.shape), 0);
    const stateOffsets: number[] = [];
    let offset = trainableSize;
    for (const s of this.state) {
      stateOffsets.push(offset);
      offset += count(s.shape);
    }
    const paramOffsets: number[] = [];
    offset = 0;
    for (const p of this.params) {
      paramOffsets.push(offset);
      offset += count(p.shape);
    }
    const bn = this.bn.slice();
    const sn = this.sn.slice();
    const reportSize = this.reportSize;
    return {
      role: this.role,
      params: this.params,
      state: this.state,
      trainableSize,
      size: trainableSize + this.state.reduce((n, s) => n + count(s.shape), 0),
      reportSize,
      apply,
      absorbReports(flat, reports, counts) {
        for (const r of reports) {
          if (r.length !== reportSize)
            throw new RangeError(`report has ${r.length} values, expected ${reportSize}`);
        }
        for (const layer of bn) {
          updateRunningStats(
            flat,
            stateOffsets[layer.state],
            stateOffsets[layer.state + 1],
            layer,
            reports,
            counts,
          );
        }
      },
      advanceState(flat) {
        for (const layer of sn) {
          powerIteration(flat, paramOffsets[layer.param], stateOffsets[layer.state], layer);
        }
      },
    };
  }
}

function normalize(
  x: tf.Tensor,
  mean: tf.Tensor,
  variance: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
): tf.Tensor {
  const inv = tf.rsqrt(tf.add(variance, BN_EPS));
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), inv), gamma), beta);
}

function l2normalize(x: tf.Tensor): tf.Tensor {
  return tf.div(x, tf.maximum(tf.norm(x), SN_EPS));
}

/** W / σ(W) for a kernel seen as [fanIn, out]; u: [out], a unit vector. */
export function spectralNormalize(
  kernel: tf.Tensor,
  u: tf.Tensor,
  fanIn: number,
  out: number,
): tf.Tensor {
  const w2 = tf.reshape(kernel, [fanIn, out]);
  const frozen = stopGradient(w2);
  const v1 = l2normalize(tf.matMul(frozen, tf.reshape(stopGradient(u), [out, 1])));
  const u1 = l2normalize(tf.matMul(frozen, v1, true, false));
  const sigma = tf.sum(tf.mul(v1, tf.matMul(w2, u1)));
  return tf.div(kernel, sigma);
}

/**
 * One power iteration in double precision, in place: v = normalize(W u),
 * u ← normalize(Wᵀ v), with W the [fanIn, out] row-major kernel at `wOffset`.
 */
function powerIteration(
  flat: Float32Array,
  wOffset: number,
  uOffset: number,
  layer: { fanIn: number; out: number },
): void {
  const { fanIn, out } = layer;
  const v = new Float64Array(fanIn);
  for (let i = 0; i < fanIn; i++) {
    let s = 0;
    const row = wOffset + i * out;
    for (let j = 0; j < out; j++) s += flat[row + j] * flat[uOffset + j];
    v[i] = s;
  }
  scaleToUnit(v);
  const u = new Float64Array(out);
  for (let i = 0; i < fanIn; i++) {
    const row = wOffset + i * out;
    const vi = v[i];
    for (let j = 0; j < out; j++) u[j] += flat[row + j] * vi;
  }
  scaleToUnit(u);
  for (let j = 0; j < out; j++) flat[uOffset + j] = u[j];
}

function scaleToUnit(a: Float64Array): void {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  const n = Math.max(Math.sqrt(s), SN_EPS);
  for (let i = 0; i < a.length; i++) a[i] /= n;
}

/**
 * running ← (1 − momentum)·running + momentum·batch, where the batch mean and
 * (unbiased) variance are the sample-weighted means over the K microtasks of
 * each microtask's own statistics: what the normalisation saw during training.
 */
function updateRunningStats(
  flat: Float32Array,
  meanOffset: number,
  varOffset: number,
  layer: BnEntry,
  reports: Float32Array[],
  counts: number[],
): void {
  const { channels, spatial, reportOffset } = layer;
  let total = 0;
  for (const n of counts) total += n;
  for (let c = 0; c < channels; c++) {
    let mean = 0;
    let variance = 0;
    reports.forEach((r, k) => {
      const n = counts[k] * spatial;
      const m = r[reportOffset + c];
      const biased = Math.max(0, r[reportOffset + channels + c] - m * m);
      mean += counts[k] * m;
      variance += counts[k] * (n > 1 ? (biased * n) / (n - 1) : biased);
    });
    mean /= total;
    variance /= total;
    flat[meanOffset + c] = (1 - BN_MOMENTUM) * flat[meanOffset + c] + BN_MOMENTUM * mean;
    flat[varOffset + c] = (1 - BN_MOMENTUM) * flat[varOffset + c] + BN_MOMENTUM * variance;
  }
}
