// The `blas` backend: tfjs's wasm backend with its matrix products and convolutions (forward,
// input gradient, filter gradient) and its sums and means over leading or trailing axes computed
// by the system's OpenBLAS (shared/blas.ts) on the wasm heap's own memory; im2col, col2im,
// tanh and float32 add/sub/mul/div run in small WebAssembly modules of our own (shared/wasm/)
// bound to that same memory. Everything else (other element-wise ops and reductions, depthwise
// conv, pooling) stays on wasm. Why: single-threaded wasm SIMD is 4 floats wide without FMA, and a GEMM on it (XNNPACK)
// runs at ~18 GFLOP/s on these machines against OpenBLAS's ~94 with AVX2 + FMA
// (docs/BENCHMARKS.md §9), a gap no kernel work inside wasm can close.
//
// Convolutions are lowered to GEMMs the classic way (im2col; Chellapilla et al. 2006, "High
// Performance Convolutional Neural Networks for Document Processing"; Caffe's and PyTorch's
// CPU fallback do the same): with x NHWC [n, h, w, ci] and W [kh, kw, ci, co] read as a
// [kh·kw·ci, co] matrix,
//   forward        y[(b, oh, ow), co]      = cols · W            cols = im2col(x) [rows, kh·kw·ci]
//   input grad     dx                      = col2im(dy · Wᵀ)     (a scatter-add, in a fixed order)
//   filter grad    dW[(kh, kw, ci), co]    = colsᵀ · dy
// Images are processed in chunks whose size depends only on the shapes (so every worker sums in
// the same order); one kernel call's bits depend only on its inputs, shapes and the OpenBLAS
// build and core type.

import "@tensorflow/tfjs-backend-wasm"; // registers the stock wasm kernels we build on
import * as tf from "@tensorflow/tfjs-core";

import type { Blas } from "./blas.js";
import { WASM_BYTES as BINARY_WASM } from "./wasm/binary-bytes.js";
import { WASM_BYTES as CONV_COLS_WASM } from "./wasm/conv-cols-bytes.js";
import { compiledModule } from "./wasm/flat.js";
import { WASM_BYTES as TANH_WASM } from "./wasm/tanh-bytes.js";

type Info = tf.TensorInfo;
type Shape4 = [number, number, number, number];
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** What we use of the wasm backend beyond tf.KernelBackend: its heap views. */
interface WasmHeap {
  makeOutput(shape: number[], dtype: "float32"): Info;
  typedArrayFromHeap(t: Info): Float32Array;
}

/** The kernels this file replaces on the wasm backend while `blas` is active. */
const KERNELS = [
  "BatchMatMul",
  "_FusedMatMul",
  "Conv2D",
  "FusedConv2D",
  "Conv2DBackpropInput",
  "Conv2DBackpropFilter",
  "Sum",
  "Mean",
  "Tanh",
  "Add",
  "Sub",
  "Multiply",
  "RealDiv",
] as const;

/**
 * Largest im2col buffer per GEMM call, in floats (512 KiB): convolutions run in chunks of whole
 * images (at least one) so that a chunk's im2col is still in the L2 cache when the GEMM reads it
 * (and the GEMM's output when col2im reads it). Against one 16 MiB buffer this took the convs of
 * a dcgan64 step from 77 to 57 ms (docs/BENCHMARKS.md §9). A function of the shapes only, so the
 * summation order is too.
 */
const MAX_COLS = 128 << 10;

/** shared/wasm-kernels.ts's mark for kernels already ours (Symbol.for: shared across copies). */
const WASM_KERNEL_MARK = Symbol.for("agon.wasmKernel");

/** The wasm kernels we replaced, to restore them; non-empty while blas kernels are active. */
const previous = new Map<string, tf.KernelConfig>();
let active: Blas | undefined;
let wasmConvCols = true;
/** Calls that ran in shared/wasm/ modules, by function (see wasmCalls). */
const calls = { im2col: 0, col2im: 0, jsConvCols: 0, tanh: 0, binary: 0 };

/** shared/wasm/conv-cols.wat's exports; pointers are byte offsets into the wasm heap. */
interface ConvColsExports {
  im2col(x: number, cols: number, ...geometry: number[]): void;
  col2im(cols: number, dx: number, ...geometry: number[]): void;
}
/**
 * shared/wasm/binary.wat's exports: y[i] = x[i] op p[i mod m] (p op x[i] when rev = 1);
 * pointers are byte offsets into the wasm heap.
 */
type BinaryFn = (x: number, p: number, y: number, n: number, m: number, rev: number) => void;
interface BinaryExports {
  add: BinaryFn;
  sub: BinaryFn;
  mul: BinaryFn;
  div: BinaryFn;
}

/** shared/wasm/tanh.wat's export; pointers are byte offsets into the wasm heap. */
interface TanhExports {
  tanh(x: number, y: number, n: number): void;
}

const onHeapInstances = new WeakMap<WebAssembly.Memory, Map<Uint8Array, object | null>>();

/**
 * How many im2col/col2im, tanh and add/sub/mul/div calls ran in shared/wasm/ modules since
 * start-up, and how many im2col/col2im ran in the JavaScript loops (jsConvCols): a copy, for
 * tests and benchmarks to see which path ran.
 */
export function wasmCalls(): Readonly<typeof calls> {
  return { ...calls };
}

/**
 * Whether im2col and col2im run in shared/wasm/conv-cols.wat (default) or in the JavaScript
 * loops below (same bits; tests compare the two, benchmarks time them).
 */
export function useWasmConvCols(on: boolean): void {
  wasmConvCols = on;
}

/**
 * An instance of the module `bytes` (one of shared/wasm/, importing env.memory) bound to the
 * wasm backend's heap memory, one per memory; null where it cannot be (a threaded build's
 * shared memory, no heap memory found): callers then fall back.
 */
function onHeap<T>(backend: object, bytes: Uint8Array<ArrayBuffer>): T | null {
  const memory = (backend as { wasm?: { asm?: { memory?: unknown } } }).wasm?.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) return null;
  let byModule = onHeapInstances.get(memory);
  if (byModule == null) {
    byModule = new Map();
    onHeapInstances.set(memory, byModule);
  }
  let exports = byModule.get(bytes);
  if (exports === undefined) {
    try {
      exports = new WebAssembly.Instance(compiledModule(bytes), { env: { memory } }).exports;
    } catch {
      exports = null;
    }
    byModule.set(bytes, exports);
  }
  return exports as T | null;
}

/** conv-cols.wat on the backend's heap, or null (turned off, or unavailable: the JS loops). */
function convCols(backend: object): ConvColsExports | null {
  return wasmConvCols ? onHeap<ConvColsExports>(backend, CONV_COLS_WASM) : null;
}

/** The geometry arguments of conv-cols.wat's im2col and col2im for images [first, first + count). */
function convColsGeometry(
  info: tf.backend_util.Conv2DInfo,
  first: number,
  count: number,
): number[] {
  return [
    first,
    count,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.outHeight,
    info.outWidth,
    info.filterHeight,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
    info.padInfo.top,
    info.padInfo.left,
  ];
}

/**
 * Routes the wasm backend's GEMM-shaped kernels to `blas` (idempotent). Call after the wasm
 * backend's own kernels (and shared/wasm-kernels.ts) are registered; what blas does not cover
 * (non-float32, NCHW, batch broadcasting) falls back to the kernel it replaced.
 */
export function registerBlasKernels(blas: Blas): void {
  active = blas;
  for (const name of KERNELS) {
    if (previous.has(name)) continue;
    const original = tf.getKernel(name, "wasm") as tf.KernelConfig | undefined;
    if (original == null) {
      throw new Error(`wasm kernel ${name} is not registered (tfjs-backend-wasm not loaded?)`);
    }
    previous.set(name, original);
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel({ ...original, kernelFunc: wrap(name, original.kernelFunc) });
  }
}

/** Restores the wasm kernels registerBlasKernels replaced (tests compare both in one process). */
export function unregisterBlasKernels(): void {
  for (const [name, original] of previous) {
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel(original);
  }
  previous.clear();
  active = undefined;
}

/** The OpenBLAS the wasm backend's GEMMs run on now, or undefined (stock wasm). */
export function activeBlas(): Blas | undefined {
  return active;
}

function wrap(name: (typeof KERNELS)[number], fallback: tf.KernelFunc): tf.KernelFunc {
  const impl = {
    BatchMatMul: matMul,
    _FusedMatMul: matMul,
    Conv2D: conv2D,
    FusedConv2D: conv2D,
    Conv2DBackpropInput: conv2DBackpropInput,
    Conv2DBackpropFilter: conv2DBackpropFilter,
    Sum: (args: KernelArgs, b: Blas) => reduce(args, b, false),
    Mean: (args: KernelArgs, b: Blas) => reduce(args, b, true),
    Tanh: (args: KernelArgs) => tanh(args),
    Add: (args: KernelArgs) => binary(args, "add"),
    Sub: (args: KernelArgs) => binary(args, "sub"),
    Multiply: (args: KernelArgs) => binary(args, "mul"),
    RealDiv: (args: KernelArgs) => binary(args, "div"),
  }[name];
  const kernel: tf.KernelFunc = (args) => {
    const blas = active;
    if (blas == null) return fallback(args);
    return impl(args, blas) ?? fallback(args);
  };
  // The mark registerWasmKernels looks for: without it, a later initBackend("blas") or
  // ("wasm") would wrap wasm-kernels' versions around these (computing a mix, other bits).
  return Object.assign(kernel, { [WASM_KERNEL_MARK]: true });
}

// ---------------------------------------------------------------------------------------------
// Matrix products

function matMul({ inputs, backend, attrs }: KernelArgs, blas: Blas): Info | undefined {
  const a = inputs.a as Info;
  const b = inputs.b as Info;
  if (a.dtype !== "float32" || b.dtype !== "float32") return undefined;
  const transA = attrs?.transposeA === true;
  const transB = attrs?.transposeB === true;
  const ra = a.shape.length;
  const rb = b.shape.length;
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const nA = product(batchA);
  const nB = product(batchB);
  // Same batch shape, or one side a single matrix; other broadcasts stay with wasm.
  const sameBatch = batchA.length === batchB.length && batchA.every((d, i) => d === batchB[i]);
  if (!sameBatch && nA !== 1 && nB !== 1) return undefined;
  const m = transA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const n = transB ? b.shape[rb - 2] : b.shape[rb - 1];
  const outBatch = nA >= nB ? batchA : batchB;
  const heap = backend as unknown as WasmHeap;
  const out = heap.makeOutput([...outBatch, m, n], "float32");
  // Views after the allocation, which may grow (and detach) the heap.
  const av = heap.typedArrayFromHeap(a);
  const bv = heap.typedArrayFromHeap(b);
  const cv = heap.typedArrayFromHeap(out);
  const lda = a.shape[ra - 1];
  const ldb = b.shape[rb - 1];
  for (let i = 0; i < Math.max(nA, nB); i++) {
    const aOff = nA === 1 ? 0 : i * m * k;
    const bOff = nB === 1 ? 0 : i * k * n;
    gemm(blas, transA, transB, m, n, k, av, aOff, lda, bv, bOff, ldb, 0, cv, i * m * n, n);
  }
  return epilogue(out, inputs, attrs, backend);
}

// ---------------------------------------------------------------------------------------------
// Convolutions

function conv2D({ inputs, backend, attrs }: KernelArgs, blas: Blas): Info | undefined {
  const x = inputs.x as Info;
  const filter = inputs.filter as Info;
  const { strides, pad, dataFormat, dilations, dimRoundingMode } =
    attrs as unknown as tf.Conv2DAttrs;
  const info = nhwcFloat32Info(dataFormat, [x, filter], x.shape as Shape4, filter.shape as Shape4, {
    strides,
    dilations,
    pad,
    dimRoundingMode,
  });
  if (info == null) return undefined;
  const { outHeight: oh, outWidth: ow, outChannels: co } = info;
  const taps = info.filterHeight * info.filterWidth * info.inChannels;
  const heap = backend as unknown as WasmHeap;
  const out = heap.makeOutput([info.batchSize, oh, ow, co], "float32");
  const perImage = oh * ow;
  if (isPointwise(info)) {
    // A 1×1 conv at stride 1 without padding: x itself is the im2col matrix.
    const rows = info.batchSize * perImage;
    const [xv, wv, yv] = [x, filter, out].map((t) => heap.typedArrayFromHeap(t));
    gemm(blas, false, false, rows, co, taps, xv, 0, taps, wv, 0, co, 0, yv, 0, co);
  } else {
    withHeapCols(backend, info.batchSize, perImage * taps, (cols, first, count) => {
      const rows = count * perImage;
      const view = (t: Info) => heap.typedArrayFromHeap(t);
      im2col(backend, view(x), cols, info, first, count);
      gemm(
        blas,
        false,
        false,
        rows,
        co,
        taps,
        cols,
        0,
        taps,
        view(filter),
        0,
        co,
        0,
        view(out),
        first * perImage * co,
        co,
      );
    });
  }
  return epilogue(out, inputs, attrs, backend);
}

function conv2DBackpropInput({ inputs, backend, attrs }: KernelArgs, blas: Blas): Info | undefined {
  const dy = inputs.dy as Info;
  const filter = inputs.filter as Info;
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } =
    attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const info = nhwcFloat32Info(dataFormat, [dy, filter], inputShape, filter.shape as Shape4, {
    strides,
    dilations: 1,
    pad,
    dimRoundingMode,
  });
  if (info == null) return undefined;
  // At stride 1 the input gradient is a conv of dy with the flipped filter: the kernel it
  // replaced (shared/wasm-kernels.ts) runs it as one, and that conv comes back here as a
  // Conv2D (im2col by copyWithin + GEMM), which beats GEMM + col2im's scatter-add (resnet:
  // 78 vs 139 ms of input gradients per step). At stride 2 with 5×5 filters that kernel's
  // four phase convs, their filters and the interleave cost more than col2im (dcgan: 63 vs
  // 47 ms), so strided ones stay here.
  const stride1 = info.strideHeight === 1 && info.strideWidth === 1;
  if (!isPointwise(info) && stride1) return undefined;
  const { outHeight: oh, outWidth: ow, outChannels: co } = info;
  const taps = info.filterHeight * info.filterWidth * info.inChannels;
  const heap = backend as unknown as WasmHeap;
  const out = heap.makeOutput([...inputShape], "float32");
  const dyv = heap.typedArrayFromHeap(dy);
  const wv = heap.typedArrayFromHeap(filter);
  const dxv = heap.typedArrayFromHeap(out);
  const perImage = oh * ow;
  if (isPointwise(info)) {
    const rows = info.batchSize * perImage;
    gemm(blas, false, true, rows, taps, co, dyv, 0, co, wv, 0, co, 0, dxv, 0, taps);
    return out;
  }
  dxv.fill(0);
  // Wᵀ [co, taps] once, so each chunk's GEMM is untransposed (OpenBLAS: ~1.6× faster here).
  const wT = transposed(wv, taps, co);
  withHeapCols(backend, info.batchSize, perImage * taps, (cols, first, count) => {
    const rows = count * perImage;
    const dyOff = first * perImage * co;
    const view = (t: Info) => heap.typedArrayFromHeap(t);
    gemm(blas, false, false, rows, taps, co, view(dy), dyOff, co, wT, 0, taps, 0, cols, 0, taps);
    col2im(backend, cols, view(out), info, first, count);
  });
  return out;
}

function conv2DBackpropFilter(
  { inputs, backend, attrs }: KernelArgs,
  blas: Blas,
): Info | undefined {
  const x = inputs.x as Info;
  const dy = inputs.dy as Info;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } =
    attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const info = nhwcFloat32Info(dataFormat, [x, dy], x.shape as Shape4, filterShape, {
    strides,
    dilations: 1,
    pad,
    dimRoundingMode,
  });
  if (info == null) return undefined;
  const { outHeight: oh, outWidth: ow, outChannels: co } = info;
  const taps = info.filterHeight * info.filterWidth * info.inChannels;
  const heap = backend as unknown as WasmHeap;
  const out = heap.makeOutput([...filterShape], "float32");
  const perImage = oh * ow;
  if (isPointwise(info)) {
    const rows = info.batchSize * perImage;
    const [xv, dyv, dwv] = [x, dy, out].map((t) => heap.typedArrayFromHeap(t));
    gemm(blas, true, false, taps, co, rows, xv, 0, taps, dyv, 0, co, 0, dwv, 0, co);
    return out;
  }
  let beta: 0 | 1 = 0;
  withHeapCols(backend, info.batchSize, perImage * taps, (cols, first, count) => {
    const rows = count * perImage;
    const view = (t: Info) => heap.typedArrayFromHeap(t);
    im2col(backend, view(x), cols, info, first, count);
    gemm(
      blas,
      true,
      false,
      taps,
      co,
      rows,
      cols,
      0,
      taps,
      view(dy),
      first * perImage * co,
      co,
      beta,
      view(out),
      0,
      co,
    );
    beta = 1;
  });
  if (beta === 0) heap.typedArrayFromHeap(out).fill(0); // no images at all
  return out;
}

/**
 * The conv's geometry (tfjs's computeConv2DInfo) when blas can compute it: NHWC and every
 * tensor float32; undefined otherwise (the kernel it replaced takes over).
 */
function nhwcFloat32Info(
  dataFormat: string,
  tensors: Info[],
  xShape: Shape4,
  filterShape: Shape4,
  geometry: Pick<tf.Conv2DAttrs, "strides" | "dilations" | "pad" | "dimRoundingMode">,
): tf.backend_util.Conv2DInfo | undefined {
  if (dataFormat !== "NHWC" || tensors.some((t) => t.dtype !== "float32")) return undefined;
  const { strides, dilations, pad, dimRoundingMode } = geometry;
  return tf.backend_util.computeConv2DInfo(
    xShape,
    filterShape,
    strides,
    dilations,
    pad,
    dimRoundingMode,
  );
}

function isPointwise(info: tf.backend_util.Conv2DInfo): boolean {
  return (
    info.filterHeight === 1 &&
    info.filterWidth === 1 &&
    info.strideHeight === 1 &&
    info.strideWidth === 1 &&
    info.padInfo.top === 0 &&
    info.padInfo.left === 0 &&
    info.outHeight === info.inHeight &&
    info.outWidth === info.inWidth
  );
}

/** Runs of at least this many floats are copied with copyWithin, shorter ones in a loop. */
const COPY_WITHIN_MIN = 24;

/**
 * Calls body(cols, first, count) for each chunk of images, cols a view of a temporary wasm-heap
 * buffer big enough for the largest chunk's im2col (freed after). Views of other tensors must
 * be taken inside body: the allocation may have moved the heap.
 */
function withHeapCols(
  backend: object,
  images: number,
  floatsPerImage: number,
  body: (cols: Float32Array, first: number, count: number) => void,
): void {
  const parts = chunks(images, floatsPerImage);
  const longest = Math.max(0, ...parts.map(([, count]) => count));
  const heap = backend as unknown as WasmHeap;
  const temp = heap.makeOutput([Math.max(1, longest * floatsPerImage)], "float32");
  try {
    for (const [first, count] of parts) {
      body(heap.typedArrayFromHeap(temp).subarray(0, count * floatsPerImage), first, count);
    }
  } finally {
    (backend as tf.KernelBackend).disposeData(temp.dataId);
  }
}

/** [first image, image count] chunks of at most MAX_COLS im2col floats (at least one image). */
function chunks(images: number, floatsPerImage: number): Array<[number, number]> {
  const per = Math.max(1, Math.floor(MAX_COLS / Math.max(1, floatsPerImage)));
  const out: Array<[number, number]> = [];
  for (let first = 0; first < images; first += per)
    out.push([first, Math.min(per, images - first)]);
  return out;
}

/** A fresh [cols, rows] copy of the row-major [rows, cols] matrix m. */
function transposed(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) t[c * rows + r] = m[base + c];
  }
  return t;
}

/**
 * cols[(b, oh, ow), (kh, kw, c)] = x[b, oh·sh + kh·dh − padTop, ow·sw + kw·dw − padLeft, c]
 * (0 outside x) for images first … first + count − 1, into cols (a view of the same heap as x).
 * Without dilation a row's kw taps are one contiguous run of x (kw·ci floats), copied in one
 * loop with its out-of-bounds ends zeroed.
 */
function im2col(
  backend: object,
  x: Float32Array,
  cols: Float32Array,
  info: tf.backend_util.Conv2DInfo,
  first: number,
  count: number,
): void {
  const wasm = convCols(backend);
  if (wasm && info.dilationHeight === 1 && info.dilationWidth === 1) {
    wasm.im2col(x.byteOffset, cols.byteOffset, ...convColsGeometry(info, first, count));
    calls.im2col++;
    return;
  }
  calls.jsConvCols++;
  const { inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const { dilationHeight: dh, dilationWidth: dw } = info;
  const { top: padTop, left: padLeft } = info.padInfo;
  const run = kw * ci;
  // x and cols both lie in the wasm heap: long runs move with copyWithin (a memmove, ~4× a
  // JS loop), short ones (a few channels) in a loop, cheaper than the call.
  const all = new Float32Array(x.buffer);
  const xBase = x.byteOffset >> 2;
  const colsBase = cols.byteOffset >> 2;
  let dst = 0;
  for (let b = first; b < first + count; b++) {
    const image = b * h * w * ci;
    for (let y = 0; y < oh; y++) {
      for (let xo = 0; xo < ow; xo++) {
        const x0 = xo * sw - padLeft;
        for (let i = 0; i < kh; i++, dst += run) {
          const yIn = y * sh + i * dh - padTop;
          if (yIn < 0 || yIn >= h) {
            cols.fill(0, dst, dst + run);
            continue;
          }
          const rowStart = image + yIn * w * ci;
          if (dw === 1) {
            // Taps j with 0 <= x0 + j < w are inside: [lo, hi).
            const lo = Math.max(0, -x0);
            const hi = Math.min(kw, w - x0);
            if (hi <= lo) {
              cols.fill(0, dst, dst + run);
              continue;
            }
            if (lo > 0) cols.fill(0, dst, dst + lo * ci);
            const from = rowStart + (x0 + lo) * ci;
            const to = dst + lo * ci;
            const n = (hi - lo) * ci;
            if (n >= COPY_WITHIN_MIN) all.copyWithin(colsBase + to, xBase + from, xBase + from + n);
            else for (let t = 0; t < n; t++) cols[to + t] = x[from + t];
            if (hi < kw) cols.fill(0, dst + hi * ci, dst + run);
          } else {
            for (let j = 0; j < kw; j++) {
              const xIn = x0 + j * dw;
              const to = dst + j * ci;
              if (xIn < 0 || xIn >= w) {
                cols.fill(0, to, to + ci);
                continue;
              }
              const from = rowStart + xIn * ci;
              for (let c = 0; c < ci; c++) cols[to + c] = x[from + c];
            }
          }
        }
      }
    }
  }
}

/**
 * dx[b, oh·sh + kh − padTop, ow·sw + kw − padLeft, c] += cols[(b, oh, ow), (kh, kw, c)], in row
 * order (so the same bits every time); a row's in-bounds taps are one contiguous run of dx.
 */
function col2im(
  backend: object,
  cols: Float32Array,
  dx: Float32Array,
  info: tf.backend_util.Conv2DInfo,
  first: number,
  count: number,
): void {
  const wasm = convCols(backend);
  if (wasm) {
    wasm.col2im(cols.byteOffset, dx.byteOffset, ...convColsGeometry(info, first, count));
    calls.col2im++;
    return;
  }
  calls.jsConvCols++;
  const { inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const { top: padTop, left: padLeft } = info.padInfo;
  const run = kw * ci;
  let src = 0;
  for (let b = first; b < first + count; b++) {
    const image = b * h * w * ci;
    for (let y = 0; y < oh; y++) {
      for (let xo = 0; xo < ow; xo++) {
        const x0 = xo * sw - padLeft;
        const lo = Math.max(0, -x0);
        const hi = Math.min(kw, w - x0);
        for (let i = 0; i < kh; i++, src += run) {
          const yIn = y * sh + i - padTop;
          if (yIn < 0 || yIn >= h || hi <= lo) continue;
          const to = image + (yIn * w + x0 + lo) * ci;
          const from = src + lo * ci;
          const n = (hi - lo) * ci;
          for (let t = 0; t < n; t++) dx[to + t] += cols[from + t];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tanh (G's output layer): the stock kernel calls libm's tanhf per value (~9 ns each here);
// shared/wasm/tanh.wat evaluates Eigen's rational interpolant four values at a time.

function tanh({ inputs, backend }: KernelArgs): Info | undefined {
  const x = inputs.x as Info;
  if (x.dtype !== "float32") return undefined;
  const wasm = onHeap<TanhExports>(backend, TANH_WASM);
  if (wasm == null) return undefined;
  const heap = backend as unknown as WasmHeap;
  const out = heap.makeOutput([...x.shape], "float32");
  // Views after makeOutput: the allocation may have moved the heap.
  const xv = heap.typedArrayFromHeap(x);
  wasm.tanh(xv.byteOffset, heap.typedArrayFromHeap(out).byteOffset, xv.length);
  calls.tanh++;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Add, Sub, Multiply, RealDiv on float32: the stock kernels call the operation through a
// function pointer per value (2–4 ns each here, more when broadcasting); shared/wasm/binary.wat
// runs the same float32 operation four values at a time, so the bits are the stock kernels'.
// Covered: equal shapes, a one-value operand, and an operand broadcast over the other's leading
// axes (a bias [c] or [1, 1, 1, c] against [n, h, w, c]); anything else goes to the stock kernel.

function binary({ inputs, backend }: KernelArgs, op: keyof BinaryExports): Info | undefined {
  const a = inputs.a as Info;
  const b = inputs.b as Info;
  if (a.dtype !== "float32" || b.dtype !== "float32") return undefined;
  const big = tf.util.sizeFromShape(a.shape) >= tf.util.sizeFromShape(b.shape) ? a : b;
  const small = big === a ? b : a;
  if (!broadcastsOverLeadingAxes(small.shape, big.shape)) return undefined;
  const n = tf.util.sizeFromShape(big.shape);
  const m = tf.util.sizeFromShape(small.shape);
  if (n === 0 || m === 0) return undefined;
  const wasm = onHeap<BinaryExports>(backend, BINARY_WASM);
  if (wasm == null) return undefined;
  const heap = backend as unknown as WasmHeap;
  const out = heap.makeOutput([...big.shape], "float32");
  // Views after makeOutput: the allocation may have moved the heap.
  const view = (t: Info) => heap.typedArrayFromHeap(t).byteOffset;
  wasm[op](view(big), view(small), view(out), n, m, big === a ? 0 : 1);
  calls.binary++;
  return out;
}

/**
 * Whether `small` (after dropping its leading 1s) is `big`'s trailing axes, so that
 * small[i mod size(small)] is what broadcasting pairs with big's value i (the output then has
 * big's shape). A one-value `small` always is.
 */
function broadcastsOverLeadingAxes(small: number[], big: number[]): boolean {
  if (tf.util.sizeFromShape(small) === 1) return true;
  let lead = 0;
  while (lead < small.length && small[lead] === 1) lead++;
  const tail = small.slice(lead);
  if (tail.length > big.length) return false;
  const off = big.length - tail.length;
  return tail.every((d, i) => d === big[off + i]) && small.length <= big.length;
}

// ---------------------------------------------------------------------------------------------
// Reductions over the leading or the trailing axes (bias gradients, batch-norm statistics):
// with x read as a [rows, cols] matrix, a sum over the leading axes is xᵀ·ones and over the
// trailing axes x·ones, one GEMV each. The stock wasm kernel first
// transposes x whenever the reduced axes are not the innermost ones. Mean divides the sums by
// the count afterwards, as tfjs's own kernels do. Other axis sets stay with wasm.

function reduce(
  { inputs, backend, attrs }: KernelArgs,
  blas: Blas,
  mean: boolean,
): Info | undefined {
  const x = inputs.x as Info;
  if (x.dtype !== "float32" || x.shape.length === 0) return undefined;
  const { axis, keepDims } = attrs as unknown as tf.SumAttrs;
  const axes = [...new Set(tf.util.parseAxisParam(axis, x.shape))].sort((a, b) => a - b);
  const rank = x.shape.length;
  if (axes.length === 0) return undefined;
  const leading = axes.every((a, i) => a === i);
  const trailing = axes.every((a, i) => a === rank - axes.length + i);
  if (!leading && !trailing) return undefined;
  const split = leading ? axes.length : rank - axes.length;
  const rows = product(x.shape.slice(0, split));
  const cols = product(x.shape.slice(split));
  const count = leading ? rows : cols;
  if (count === 0) return undefined; // tfjs's own empty-sum rules
  const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const shape = keepDims ? kept : x.shape.filter((_, i) => !axes.includes(i));
  const heap = backend as unknown as WasmHeap;
  const out = heap.makeOutput(shape, "float32");
  const xv = heap.typedArrayFromHeap(x);
  const yv = heap.typedArrayFromHeap(out);
  const one = onesOf(count);
  // Leading axes: y = xᵀ·ones (a sum down each column); trailing: y = x·ones (along each row).
  blas.sgemv(leading, rows, cols, xv, cols, one, yv);
  if (mean) for (let i = 0; i < yv.length; i++) yv[i] /= count;
  return out;
}

let ones = new Float32Array(0);

function onesOf(length: number): Float32Array {
  if (ones.length < length) ones = new Float32Array(length).fill(1);
  return ones.subarray(0, length);
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/** One sgemm on views at float offsets (koffi passes a view's byteOffset as the pointer). */
function gemm(
  blas: Blas,
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  aOff: number,
  lda: number,
  b: Float32Array,
  bOff: number,
  ldb: number,
  beta: 0 | 1,
  c: Float32Array,
  cOff: number,
  ldc: number,
): void {
  if (m === 0 || n === 0) return;
  const cView = c.subarray(cOff, cOff + (m - 1) * ldc + n);
  if (k === 0) {
    if (beta === 0) for (let r = 0; r < m; r++) cView.fill(0, r * ldc, r * ldc + n);
    return;
  }
  const aRows = transA ? k : m;
  const bRows = transB ? n : k;
  const aCols = transA ? m : k;
  const bCols = transB ? k : n;
  blas.sgemm(
    transA,
    transB,
    m,
    n,
    k,
    a.subarray(aOff, aOff + (aRows - 1) * lda + aCols),
    lda,
    b.subarray(bOff, bOff + (bRows - 1) * ldb + bCols),
    ldb,
    beta,
    cView,
    ldc,
  );
}

/**
 * A fused kernel's bias and activation after the product, as tfjs's fused ops define them
 * (bias broadcast over the last axis, then the activation), on the stock wasm kernels.
 */
function epilogue(
  product: Info,
  inputs: tf.NamedTensorInfoMap,
  attrs: tf.NamedAttrMap | undefined,
  backend: object,
): Info {
  const bias = inputs.bias as Info | undefined;
  const activation = (attrs?.activation as string | undefined) ?? "linear";
  if (bias == null && activation === "linear") return product;
  const kb = backend as tf.KernelBackend;
  const run = (name: string, ins: tf.NamedTensorInfoMap, at: tf.NamedAttrMap = {}): Info => {
    const kernel = tf.getKernel(name, "wasm") as tf.KernelConfig;
    return kernel.kernelFunc({ inputs: ins, backend, attrs: at }) as Info;
  };
  let y = product;
  if (bias != null) {
    const sum = run("Add", { a: y, b: bias });
    kb.disposeData(y.dataId);
    y = sum;
  }
  const activated = activate(y, activation, inputs, attrs, run);
  if (activated !== y) kb.disposeData(y.dataId);
  return activated;
}

function activate(
  x: Info,
  activation: string,
  inputs: tf.NamedTensorInfoMap,
  attrs: tf.NamedAttrMap | undefined,
  run: (name: string, ins: tf.NamedTensorInfoMap, at?: tf.NamedAttrMap) => Info,
): Info {
  switch (activation) {
    case "linear":
      return x;
    case "relu":
      return run("Relu", { x });
    case "relu6":
      return run("Relu6", { x });
    case "elu":
      return run("Elu", { x });
    case "sigmoid":
      return run("Sigmoid", { x });
    case "prelu":
      return run("Prelu", { x, alpha: inputs.preluActivationWeights as Info });
    case "leakyrelu":
      return run("LeakyRelu", { x }, { alpha: (attrs?.leakyreluAlpha as number) ?? 0.2 });
    default:
      throw new Error(`blas backend: unknown fused activation '${activation}'`);
  }
}

function product(dims: number[]): number {
  return dims.reduce((n, d) => n * d, 1);
}
