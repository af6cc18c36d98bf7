// The Inception-v3 network that FID is defined with (Heusel et al. 2017, TTUR's TensorFlow
// graph "inception-2015-12-05"), in the variant pytorch-fid ports it as (mseitzer/pytorch-fid,
// src/pytorch_fid/inception.py: torchvision's Inception3 with the FIDInceptionA/C/E_1/E_2
// blocks, whose average pools leave padding out of the count and whose last block max-pools),
// for TensorFlow.js: 299×299 bilinear resize (align_corners=False, i.e. half-pixel centres),
// input in [-1, 1], the 2048 channels of the final average pool as features.
// Weights come from a file the user supplies: pytorch-fid's state dict
// (pt_inception-2015-12-05-6726825d.pth) converted by bench/convert_inception.py to
// safetensors; nothing is downloaded. Batch norm is folded into the convolutions at load.
import * as tf from "@tensorflow/tfjs-core";
import { readSafetensors, SafetensorsError } from "./safetensors.js";

/** Feature dimension: the channels of the final average pool ("pool3"). */
export const INCEPTION_DIM = 2048;
/** The network's input side: images are resized to 299 × 299. */
export const INCEPTION_SIZE = 299;
/** torchvision's BasicConv2d batch-norm epsilon. */
const BN_EPS = 0.001;

export class InceptionWeightsError extends Error {
  override name = "InceptionWeightsError";
}

/** The converter, as error lines name it: shipped in the package, documented in QUALITY.md. */
export const CONVERTER =
  "bench/convert_inception.py (shipped in the agon package; docs/QUALITY.md#getting-the-inception-weights)";

/** What an unreadable or wrong Inception weights file's error line ends with. */
export const INCEPTION_WEIGHTS_HINT = `the standard FID needs pytorch-fid's Inception weights converted by ${CONVERTER}`;

/** One BasicConv2d (conv without bias, batch norm, ReLU) of the network. */
export interface ConvSpec {
  /** State-dict prefix, e.g. "Mixed_5b.branch1x1". */
  name: string;
  inC: number;
  outC: number;
  kh: number;
  kw: number;
  stride: 1 | 2;
  /** "same" is torchvision's symmetric padding of (k − 1) / 2 at stride 1. */
  pad: "same" | "valid";
}

function conv(
  name: string,
  inC: number,
  outC: number,
  k: number | [number, number],
  opts: { stride?: 1 | 2; pad?: "same" | "valid" } = {},
): ConvSpec {
  const [kh, kw] = typeof k === "number" ? [k, k] : k;
  const stride = opts.stride ?? 1;
  return { name, inC, outC, kh, kw, stride, pad: opts.pad ?? (stride === 2 ? "valid" : "same") };
}

function blockA(b: string, inC: number, pool: number): ConvSpec[] {
  return [
    conv(`${b}.branch1x1`, inC, 64, 1),
    conv(`${b}.branch5x5_1`, inC, 48, 1),
    conv(`${b}.branch5x5_2`, 48, 64, 5),
    conv(`${b}.branch3x3dbl_1`, inC, 64, 1),
    conv(`${b}.branch3x3dbl_2`, 64, 96, 3),
    conv(`${b}.branch3x3dbl_3`, 96, 96, 3),
    conv(`${b}.branch_pool`, inC, pool, 1),
  ];
}

function blockC(b: string, c7: number): ConvSpec[] {
  return [
    conv(`${b}.branch1x1`, 768, 192, 1),
    conv(`${b}.branch7x7_1`, 768, c7, 1),
    conv(`${b}.branch7x7_2`, c7, c7, [1, 7]),
    conv(`${b}.branch7x7_3`, c7, 192, [7, 1]),
    conv(`${b}.branch7x7dbl_1`, 768, c7, 1),
    conv(`${b}.branch7x7dbl_2`, c7, c7, [7, 1]),
    conv(`${b}.branch7x7dbl_3`, c7, c7, [1, 7]),
    conv(`${b}.branch7x7dbl_4`, c7, c7, [7, 1]),
    conv(`${b}.branch7x7dbl_5`, c7, 192, [1, 7]),
    conv(`${b}.branch_pool`, 768, 192, 1),
  ];
}

function blockE(b: string, inC: number): ConvSpec[] {
  return [
    conv(`${b}.branch1x1`, inC, 320, 1),
    conv(`${b}.branch3x3_1`, inC, 384, 1),
    conv(`${b}.branch3x3_2a`, 384, 384, [1, 3]),
    conv(`${b}.branch3x3_2b`, 384, 384, [3, 1]),
    conv(`${b}.branch3x3dbl_1`, inC, 448, 1),
    conv(`${b}.branch3x3dbl_2`, 448, 384, 3),
    conv(`${b}.branch3x3dbl_3a`, 384, 384, [1, 3]),
    conv(`${b}.branch3x3dbl_3b`, 384, 384, [3, 1]),
    conv(`${b}.branch_pool`, inC, 192, 1),
  ];
}

/** Every convolution of the network up to the final pool, by state-dict name (torchvision's layout). */
export const INCEPTION_CONVS: readonly ConvSpec[] = [
  conv("Conv2d_1a_3x3", 3, 32, 3, { stride: 2 }),
  conv("Conv2d_2a_3x3", 32, 32, 3, { pad: "valid" }),
  conv("Conv2d_2b_3x3", 32, 64, 3),
  conv("Conv2d_3b_1x1", 64, 80, 1),
  conv("Conv2d_4a_3x3", 80, 192, 3, { pad: "valid" }),
  ...blockA("Mixed_5b", 192, 32),
  ...blockA("Mixed_5c", 256, 64),
  ...blockA("Mixed_5d", 288, 64),
  conv("Mixed_6a.branch3x3", 288, 384, 3, { stride: 2 }),
  conv("Mixed_6a.branch3x3dbl_1", 288, 64, 1),
  conv("Mixed_6a.branch3x3dbl_2", 64, 96, 3),
  conv("Mixed_6a.branch3x3dbl_3", 96, 96, 3, { stride: 2 }),
  ...blockC("Mixed_6b", 128),
  ...blockC("Mixed_6c", 160),
  ...blockC("Mixed_6d", 160),
  ...blockC("Mixed_6e", 192),
  conv("Mixed_7a.branch3x3_1", 768, 192, 1),
  conv("Mixed_7a.branch3x3_2", 192, 320, 3, { stride: 2 }),
  conv("Mixed_7a.branch7x7x3_1", 768, 192, 1),
  conv("Mixed_7a.branch7x7x3_2", 192, 192, [1, 7]),
  conv("Mixed_7a.branch7x7x3_3", 192, 192, [7, 1]),
  conv("Mixed_7a.branch7x7x3_4", 192, 192, 3, { stride: 2 }),
  ...blockE("Mixed_7b", 1280),
  ...blockE("Mixed_7c", 2048),
];

/** A convolution with its batch norm folded in: HWIO filter and per-channel bias. */
interface FoldedConv {
  spec: ConvSpec;
  filter: Float32Array;
  bias: Float32Array;
}

/**
 * Folds BN(conv(x)) = γ (W∗x − μ) / √(σ² + ε) + β into W' = W · γ/√(σ²+ε), b' = β − μ · γ/√(σ²+ε)
 * (in float64), and reorders the kernel from PyTorch's [out, in, kh, kw] to tfjs's [kh, kw, in, out].
 */
function fold(
  spec: ConvSpec,
  w: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  mean: Float32Array,
  variance: Float32Array,
): FoldedConv {
  const { inC, outC, kh, kw } = spec;
  const filter = new Float32Array(kh * kw * inC * outC);
  const bias = new Float32Array(outC);
  for (let o = 0; o < outC; o++) {
    const scale = gamma[o] / Math.sqrt(variance[o] + BN_EPS);
    bias[o] = beta[o] - mean[o] * scale;
    for (let i = 0; i < inC; i++)
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++)
          filter[((y * kw + x) * inC + i) * outC + o] =
            w[((o * inC + i) * kh + y) * kw + x] * scale;
  }
  return { spec, filter, bias };
}

/**
 * Reads and checks Inception weights in safetensors form (pytorch-fid's state-dict names:
 * `<conv>.conv.weight` [out, in, kh, kw], `<conv>.bn.{weight,bias,running_mean,running_var}`
 * [out], float32; other entries such as `fc.*` are ignored). Throws InceptionWeightsError
 * naming the file and the first missing or misshapen tensor.
 */
export function loadInceptionWeights(path: string): FoldedConv[] {
  let tensors: Map<string, { shape: number[]; data: Float32Array }>;
  try {
    tensors = readSafetensors(path).tensors;
  } catch (err) {
    if (err instanceof SafetensorsError)
      throw new InceptionWeightsError(`${err.message}; ${INCEPTION_WEIGHTS_HINT}`);
    throw err;
  }
  const get = (name: string, shape: number[]): Float32Array => {
    const t = tensors.get(name);
    if (!t)
      throw new InceptionWeightsError(
        `${path} lacks tensor ${name}: not pytorch-fid Inception weights; convert pt_inception-2015-12-05-6726825d.pth with ${CONVERTER}`,
      );
    if (t.shape.join(",") !== shape.join(","))
      throw new InceptionWeightsError(
        `${path}: tensor ${name} has shape [${t.shape}], expected [${shape}]`,
      );
    return t.data;
  };
  return INCEPTION_CONVS.map((s) =>
    fold(
      s,
      get(`${s.name}.conv.weight`, [s.outC, s.inC, s.kh, s.kw]),
      get(`${s.name}.bn.weight`, [s.outC]),
      get(`${s.name}.bn.bias`, [s.outC]),
      get(`${s.name}.bn.running_mean`, [s.outC]),
      get(`${s.name}.bn.running_var`, [s.outC]),
    ),
  );
}

/**
 * pytorch-fid's Inception-v3 up to the 2048-d average pool, on the active tfjs backend.
 * `features` takes images as our generators and datasets hold them (HWC, values in [-1, 1],
 * 1 or 3 channels; grey images are repeated to RGB).
 */
export class InceptionV3 {
  private convs: Map<string, { filter: tf.Tensor4D; bias: tf.Tensor1D; spec: ConvSpec }> | null =
    null;

  private constructor(
    /** The weights file, for messages. */
    readonly path: string,
    private readonly folded: FoldedConv[],
  ) {}

  /** Loads a weights file (see loadInceptionWeights); throws InceptionWeightsError. */
  static load(path: string): InceptionV3 {
    return new InceptionV3(path, loadInceptionWeights(path));
  }

  /** The tensors, made on first use on the backend active then. */
  private layers() {
    if (!this.convs) {
      this.convs = new Map();
      for (const { spec, filter, bias } of this.folded) {
        this.convs.set(spec.name, {
          spec,
          filter: tf.keep(tf.tensor4d(filter, [spec.kh, spec.kw, spec.inC, spec.outC])),
          bias: tf.keep(tf.tensor1d(bias)),
        });
      }
    }
    return this.convs;
  }

  /** Frees the weight tensors (made again on the next use). */
  dispose(): void {
    for (const c of this.convs?.values() ?? []) {
      c.filter.dispose();
      c.bias.dispose();
    }
    this.convs = null;
  }

  /**
   * The network on a batch [b, 299, 299, 3] in [-1, 1] (after resizing): [b, 2048]. Tensors
   * are created in the caller's tidy.
   */
  forward(x: tf.Tensor4D): tf.Tensor2D {
    const L = this.layers();
    const c = (name: string, h: tf.Tensor4D): tf.Tensor4D => {
      const l = L.get(name)!;
      return tf.fused.conv2d({
        x: h,
        filter: l.filter,
        strides: l.spec.stride,
        pad: l.spec.pad,
        bias: l.bias,
        activation: "relu",
      });
    };
    const seq = (h: tf.Tensor4D, ...names: string[]) => names.reduce((a, n) => c(n, a), h);
    // count_include_pad=False: TensorFlow's (and tfjs's) average pool divides by the
    // window's in-image count, as pytorch-fid's patched blocks do.
    const avg3 = (h: tf.Tensor4D) => tf.avgPool(h, 3, 1, "same");
    const maxDown = (h: tf.Tensor4D) => tf.maxPool(h, 3, 2, "valid");
    const cat = (parts: tf.Tensor4D[]) => tf.concat(parts, 3);

    let h = seq(x, "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3");
    h = maxDown(h);
    h = seq(h, "Conv2d_3b_1x1", "Conv2d_4a_3x3");
    h = maxDown(h);
    for (const b of ["Mixed_5b", "Mixed_5c", "Mixed_5d"]) {
      h = cat([
        c(`${b}.branch1x1`, h),
        seq(h, `${b}.branch5x5_1`, `${b}.branch5x5_2`),
        seq(h, `${b}.branch3x3dbl_1`, `${b}.branch3x3dbl_2`, `${b}.branch3x3dbl_3`),
        c(`${b}.branch_pool`, avg3(h)),
      ]);
    }
    h = cat([
      c("Mixed_6a.branch3x3", h),
      seq(h, "Mixed_6a.branch3x3dbl_1", "Mixed_6a.branch3x3dbl_2", "Mixed_6a.branch3x3dbl_3"),
      maxDown(h),
    ]);
    for (const b of ["Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"]) {
      h = cat([
        c(`${b}.branch1x1`, h),
        seq(h, `${b}.branch7x7_1`, `${b}.branch7x7_2`, `${b}.branch7x7_3`),
        seq(
          h,
          `${b}.branch7x7dbl_1`,
          `${b}.branch7x7dbl_2`,
          `${b}.branch7x7dbl_3`,
          `${b}.branch7x7dbl_4`,
          `${b}.branch7x7dbl_5`,
        ),
        c(`${b}.branch_pool`, avg3(h)),
      ]);
    }
    h = cat([
      seq(h, "Mixed_7a.branch3x3_1", "Mixed_7a.branch3x3_2"),
      seq(
        h,
        "Mixed_7a.branch7x7x3_1",
        "Mixed_7a.branch7x7x3_2",
        "Mixed_7a.branch7x7x3_3",
        "Mixed_7a.branch7x7x3_4",
      ),
      maxDown(h),
    ]);
    for (const b of ["Mixed_7b", "Mixed_7c"]) {
      const b3 = c(`${b}.branch3x3_1`, h);
      const d3 = seq(h, `${b}.branch3x3dbl_1`, `${b}.branch3x3dbl_2`);
      // pytorch-fid's FIDInceptionE_2 (Mixed_7c) max-pools its pool branch; E_1 averages.
      const pooled = b === "Mixed_7c" ? tf.maxPool(h, 3, 1, "same") : avg3(h);
      h = cat([
        c(`${b}.branch1x1`, h),
        cat([c(`${b}.branch3x3_2a`, b3), c(`${b}.branch3x3_2b`, b3)]),
        cat([c(`${b}.branch3x3dbl_3a`, d3), c(`${b}.branch3x3dbl_3b`, d3)]),
        c(`${b}.branch_pool`, pooled),
      ]);
    }
    return tf.mean(h, [1, 2]) as tf.Tensor2D;
  }

  /**
   * 2048-d features of n images (flat n·h·w·c floats, HWC, values in [-1, 1], c 1 or 3),
   * `batch` images per forward pass, each resized by resizeToInception. pytorch-fid takes
   * [0, 1] input and maps it to [-1, 1] after resizing; resizing [-1, 1] input directly is
   * the same map (bilinear weights sum to 1). Returns n × 2048 float32 rows (the same bits
   * for any `batch`: each image's features do not depend on the others in its pass).
   * After each pass it lets the event loop run (a pass is seconds of wasm work, so signals
   * and timers are served between passes) and then throws `signal.reason` (an AbortError)
   * once `signal` is aborted. Throws RangeError on a wrong shape or length.
   */
  async features(
    images: Float32Array,
    n: number,
    shape: readonly number[],
    batch = 1,
    signal?: AbortSignal,
  ): Promise<Float32Array> {
    if (shape.length !== 3 || (shape[2] !== 1 && shape[2] !== 3))
      throw new RangeError(
        `Inception features need images of shape [h, w, 1 or 3], got [${shape}]`,
      );
    const [h, w, ch] = shape;
    const size = h * w * ch;
    if (!Number.isSafeInteger(n) || n < 1 || images.length !== n * size)
      throw new RangeError(`expected ${n}×${size} image values, got ${images.length}`);
    const out = new Float32Array(n * INCEPTION_DIM);
    const side = INCEPTION_SIZE * INCEPTION_SIZE * 3;
    const input = new Float32Array(Math.min(batch, n) * side);
    for (let start = 0; start < n; start += batch) {
      const b = Math.min(batch, n - start);
      for (let i = 0; i < b; i++)
        resizeToInception(
          images.subarray((start + i) * size, (start + i + 1) * size),
          h,
          w,
          ch,
          input.subarray(i * side, (i + 1) * side),
        );
      const y = tf.tidy(() =>
        this.forward(
          tf.tensor4d(input.subarray(0, b * side), [b, INCEPTION_SIZE, INCEPTION_SIZE, 3]),
        ),
      );
      out.set((await y.data()) as Float32Array, start * INCEPTION_DIM);
      y.dispose();
      await new Promise((r) => setImmediate(r));
      signal?.throwIfAborted();
    }
    return out;
  }
}

/** Source rows (or columns) and weights of PyTorch's bilinear resize along one axis. */
function resizeTaps(inSize: number, outSize: number) {
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const w1 = new Float64Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    // align_corners=False: half-pixel centres, clamped at 0 (ATen's area_pixel_compute_source_index).
    const src = Math.max(scale * (o + 0.5) - 0.5, 0);
    const lo = Math.min(Math.floor(src), inSize - 1);
    i0[o] = lo;
    i1[o] = lo < inSize - 1 ? lo + 1 : lo;
    w1[o] = src - lo;
  }
  return { i0, i1, w1 };
}

/**
 * One HWC image (h × w × ch, ch 1 or 3) to 299 × 299 × 3 in `out`: bilinear with
 * half-pixel centres and no antialiasing, PyTorch's `F.interpolate(x, (299, 299),
 * mode="bilinear", align_corners=False)`, computed in float64 (so the result does not
 * depend on a backend's resize kernel); grey is repeated to RGB. An image already
 * 299 × 299 is copied.
 */
export function resizeToInception(
  image: Float32Array,
  h: number,
  w: number,
  ch: number,
  out: Float32Array,
): void {
  const S = INCEPTION_SIZE;
  const ty = resizeTaps(h, S);
  const tx = resizeTaps(w, S);
  for (let y = 0; y < S; y++) {
    const r0 = ty.i0[y] * w;
    const r1 = ty.i1[y] * w;
    const wy = ty.w1[y];
    for (let x = 0; x < S; x++) {
      const c0 = tx.i0[x];
      const c1 = tx.i1[x];
      const wx = tx.w1[x];
      for (let c = 0; c < 3; c++) {
        const k = ch === 1 ? 0 : c;
        const top = (1 - wx) * image[(r0 + c0) * ch + k] + wx * image[(r0 + c1) * ch + k];
        const bottom = (1 - wx) * image[(r1 + c0) * ch + k] + wx * image[(r1 + c1) * ch + k];
        out[(y * S + x) * 3 + c] = (1 - wy) * top + wy * bottom;
      }
    }
  }
}
