// Custom kernels for tfjs's wasm backend: the conv filter gradient it lacks (tfjs#8474) and
// fast paths for kernels whose stock wasm versions fall into naive loops (see TFJS-NOTES).
import "@tensorflow/tfjs-backend-wasm"; // registers the stock wasm kernels we build on
import * as tf from "@tensorflow/tfjs-core";

type Info = tf.TensorInfo;
type Shape4 = [number, number, number, number];
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Marks our kernel functions, so re-registration is skipped even across module copies. */
const OURS = Symbol.for("agon.wasmKernel");

/** Registers our wasm kernels; safe to call more than once. */
export function registerWasmKernels(): void {
  if (!isOurs("BatchMatMul")) replace("BatchMatMul", fastMatMul);
  if (!isOurs("_FusedMatMul")) replace("_FusedMatMul", fastMatMul);
  if (!isOurs("Conv2DBackpropInput")) replace("Conv2DBackpropInput", fastConv2DBackpropInput);
  if (!isOurs("Conv2DBackpropFilter")) {
    if (tf.getKernel("Conv2DBackpropFilter", "wasm") != null) {
      tf.unregisterKernel("Conv2DBackpropFilter", "wasm");
    }
    tf.registerKernel({
      kernelName: "Conv2DBackpropFilter",
      backendName: "wasm",
      kernelFunc: mark(conv2DBackpropFilter),
    });
  }
}

function isOurs(kernelName: string): boolean {
  const kernel = tf.getKernel(kernelName, "wasm") as tf.KernelConfig | undefined;
  return kernel != null && OURS in kernel.kernelFunc;
}

function mark(fn: tf.KernelFunc): tf.KernelFunc {
  return Object.assign(fn, { [OURS]: true });
}

/**
 * Swaps in a kernel that wraps the stock one. The stock config's setupFunc is kept, because
 * it binds the wasm function the stock kernelFunc needs when the backend initialises.
 */
function replace(kernelName: string, wrap: (stock: tf.KernelFunc) => tf.KernelFunc): void {
  const original = stockKernel(kernelName);
  tf.unregisterKernel(kernelName, "wasm");
  tf.registerKernel({ ...original, kernelFunc: mark(wrap(original.kernelFunc)) });
}

function stockKernel(kernelName: string): tf.KernelConfig {
  const kernel = tf.getKernel(kernelName, "wasm") as tf.KernelConfig | undefined;
  if (kernel == null) {
    throw new Error(`wasm kernel ${kernelName} is not registered (tfjs-backend-wasm not loaded?)`);
  }
  return kernel;
}

/**
 * Calls stock wasm kernels and disposes every intermediate (kernel outputs and tensors passed
 * to `hold`) except the returned result.
 */
function compose(backend: object, body: (run: Runner, hold: (t: Info) => Info) => Info): Info {
  const kb = backend as tf.KernelBackend;
  const temps: Info[] = [];
  const hold = (t: Info): Info => {
    temps.push(t);
    return t;
  };
  const run: Runner = (kernelName, inputs, attrs = {}) =>
    hold(stockKernel(kernelName).kernelFunc({ inputs, backend, attrs }) as Info);
  let result: Info | undefined;
  try {
    result = body(run, hold);
    return result;
  } finally {
    // Reshape-style kernels share dataIds and bump a refcount, so disposing each
    // intermediate once is always right; only the result itself is kept.
    for (const t of temps) if (t !== result) kb.disposeData(t.dataId);
  }
}

type Runner = (kernelName: string, inputs: tf.NamedTensorInfoMap, attrs?: tf.NamedAttrMap) => Info;

// ---------------------------------------------------------------------------------------------
// MatMul: the wasm kernel only reaches XNNPACK when nothing is transposed and there is a single
// batch; otherwise it runs a naive triple loop. XNNPACK also packs (re-lays out) the right-hand
// operand b on every call whose b it has not seen, which costs about a third of the multiply
// for a fresh 784×512 weight matrix, so when b is a transposed weight matrix (dense-layer input
// gradients, dy·Wᵀ) we compute the transposed product instead: (a·bᵀ)ᵀ = b·aᵀ takes W as it is
// and packs only the small aᵀ. Each output is still one dot product summed in k order, so both
// orientations are deterministic.

function fastMatMul(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const a = inputs.a as Info;
    const b = inputs.b as Info;
    const transposeA = attrs?.transposeA === true;
    const transposeB = attrs?.transposeB === true;
    // With batch > 1 the stock kernel is naive either way; leave those untouched.
    if ((!transposeA && !transposeB) || batchSize(a) !== 1 || batchSize(b) !== 1) {
      return stock(args);
    }
    // A fused bias or PReLU runs along the output's columns, so only a plain product may swap.
    const plain = inputs.bias == null && inputs.preluActivationWeights == null;
    const activation = (attrs?.activation as string | undefined) ?? "linear";
    if (transposeB && plain && activation === "linear") {
      return compose(backend, (run, hold) => {
        // cᵀ = b · op(a)ᵀ; op(a)ᵀ is a itself when a is transposed, else one small transpose.
        const aT = transposeA
          ? a
          : run("Transpose", { x: a }, { perm: swapLastTwo(a.shape.length) });
        const cT = stock({
          inputs: { ...inputs, a: b, b: aT },
          backend,
          attrs: { ...attrs, transposeA: false, transposeB: false },
        }) as Info;
        return run("Transpose", { x: hold(cT) }, { perm: swapLastTwo(cT.shape.length) });
      });
    }
    return compose(backend, (run) => {
      const a2 = transposeA ? run("Transpose", { x: a }, { perm: swapLastTwo(a.shape.length) }) : a;
      const b2 = transposeB ? run("Transpose", { x: b }, { perm: swapLastTwo(b.shape.length) }) : b;
      return stock({
        inputs: { ...inputs, a: a2, b: b2 },
        backend,
        attrs: { ...attrs, transposeA: false, transposeB: false },
      }) as Info;
    });
  };
}

function batchSize(t: Info): number {
  return t.shape.slice(0, -2).reduce((n, d) => n * d, 1);
}

function swapLastTwo(rank: number): number[] {
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return perm;
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropFilter, missing from tfjs-backend-wasm 4.22. The filter gradient
//   dW[kh,kw,ci,co] = sum_{b,oh,ow} x[b, oh*s+kh-padTop, ow*s+kw-padLeft, ci] * dy[b,oh,ow,co]
// is itself a convolution: x transposed to [ci,H,W,B] as the input, dy transposed to
// [oh,ow,B,co] as the filter, stride 1 and dilation = the original stride. That runs on
// XNNPACK, about 2x faster than an im2col matMul (strided slicing is slow on wasm).

function conv2DBackpropFilter({ inputs, backend, attrs }: KernelArgs): Info {
  const x = inputs.x as Info;
  const dy = inputs.dy as Info;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } =
    attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  if (dataFormat !== "NHWC") {
    throw new Error(`wasm Conv2DBackpropFilter supports only NHWC, got ${dataFormat}`);
  }
  // tfjs's conv2d gradient asserts dilations of 1 before it ever emits this kernel, and the
  // kernel has no dilations attribute, so there is nothing else to check here.
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as Shape4,
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const { filterHeight: kh, filterWidth: kw, inChannels: ci, outChannels: co } = info;
  const { strideHeight: sh, strideWidth: sw, padInfo } = info;
  // Pad the far side just enough for kh (kw) output positions; never negative, so when x has
  // rows the op never read, the conv yields extra positions that the slice below drops.
  const padBottom = Math.max(0, kh + (info.outHeight - 1) * sh - info.inHeight - padInfo.top);
  const padRight = Math.max(0, kw + (info.outWidth - 1) * sw - info.inWidth - padInfo.left);
  return compose(backend, (run) => {
    const xT = run("Transpose", { x }, { perm: [3, 1, 2, 0] });
    const dyT = run("Transpose", { x: dy }, { perm: [1, 2, 0, 3] });
    let dw = run(
      "Conv2D",
      { x: xT, filter: dyT },
      {
        strides: [1, 1],
        dilations: [sh, sw],
        pad: [
          [0, 0],
          [padInfo.top, padBottom],
          [padInfo.left, padRight],
          [0, 0],
        ],
        dataFormat: "NHWC",
      },
    );
    if (dw.shape[1] !== kh || dw.shape[2] !== kw) {
      dw = run("Slice", { x: dw }, { begin: [0, 0, 0, 0], size: [ci, kh, kw, co] });
    }
    return run("Transpose", { x: dw }, { perm: [1, 2, 0, 3] });
  });
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropInput (conv2dTranspose forward, conv2d input gradient): the stock wasm kernel
// is a naive loop. Output row i = q*s + r (phase r) only meets filter taps k = m_r + t*s with
// m_r = (r + padTop) mod s:
//   dx[q*s + r] = sum_t dy[q + c_r - t] * W[m_r + t*s],   c_r = floor((r + padTop) / s)
// so each phase is a small stride-1 correlation over dy. All s*s phases run as ONE XNNPACK conv
// whose output channels are (phase, ci), with each phase's taps placed in a shared window, and a
// 4-D transpose interleaves the phases into rows and columns. Versus inserting s-1 zeros into
// dy and running a full KxK conv, this skips the multiplications by those zeros.

function fastConv2DBackpropInput(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const dy = inputs.dy as Info;
    const filter = inputs.filter as Info;
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } =
      attrs as unknown as tf.Conv2DBackpropInputAttrs;
    if (dataFormat !== "NHWC" || filter.dtype !== "float32") return stock(args);
    const info = tf.backend_util.computeConv2DInfo(
      inputShape,
      filter.shape as Shape4,
      strides,
      1,
      pad,
      dimRoundingMode,
    );
    const { batchSize: n, inHeight, inWidth, inChannels: ci, outChannels: co } = info;
    const { strideHeight: sh, strideWidth: sw } = info;
    const rows = phaseWindow(info.filterHeight, sh, info.padInfo.top, inHeight, info.outHeight);
    const cols = phaseWindow(info.filterWidth, sw, info.padInfo.left, inWidth, info.outWidth);
    // Pads wider than the filter would need dy cropped first: rare, leave them to the stock kernel.
    if (rows == null || cols == null) return stock(args);

    const kb = backend as tf.KernelBackend;
    const w = kb.readSync(filter.dataId) as Float32Array;
    const phaseShape = [rows.size, cols.size, co, sh * sw * ci];
    const phaseFilter = buildPhaseFilter(w, filter.shape as Shape4, rows, cols);

    return compose(backend, (run, hold) => {
      const filterInfo = hold({
        dataId: kb.write(phaseFilter, phaseShape, "float32"),
        shape: phaseShape,
        dtype: "float32",
      });
      const phased = run(
        "Conv2D",
        { x: dy, filter: filterInfo },
        {
          strides: [1, 1],
          dilations: [1, 1],
          pad: [
            [0, 0],
            [rows.padTop, rows.padBottom],
            [cols.padTop, cols.padBottom],
            [0, 0],
          ],
          dataFormat: "NHWC",
        },
      );
      // [n, qh, qw, (rh, rw, c)] -> [n*qh, rh, qw, (rw, c)] = [n, qh*sh, qw*sw, c]
      const [qh, qw] = [rows.count, cols.count];
      let dx = phased;
      if (sh > 1) {
        const split = run("Reshape", { x: phased }, { shape: [n * qh, qw, sh, sw * ci] });
        dx = run("Transpose", { x: split }, { perm: [0, 2, 1, 3] });
      }
      dx = run("Reshape", { x: dx }, { shape: [n, qh * sh, qw * sw, ci] });
      if (qh * sh === inHeight && qw * sw === inWidth) return dx;
      // The last phase block ran past the input's far edge: drop those positions.
      return run("Slice", { x: dx }, { begin: [0, 0, 0, 0], size: [n, inHeight, inWidth, ci] });
    });
  };
}

/**
 * The combined filter [rows.size, cols.size, co, (rh, rw, ci)] from W [kh, kw, ci, co]: phase
 * (rh, rw)'s taps at their window positions, zeros elsewhere.
 */
function buildPhaseFilter(
  w: Float32Array,
  [, kw, ci, co]: Shape4,
  rows: PhaseWindow,
  cols: PhaseWindow,
): Float32Array {
  const [sh, sw] = [rows.tap.length, cols.tap.length];
  const out = new Float32Array(rows.size * cols.size * co * sh * sw * ci);
  let dst = 0;
  for (let uh = 0; uh < rows.size; uh++) {
    for (let uw = 0; uw < cols.size; uw++) {
      for (let o = 0; o < co; o++) {
        for (let rh = 0; rh < sh; rh++) {
          for (let rw = 0; rw < sw; rw++, dst += ci) {
            const th = rows.tap[rh][uh];
            const tw = cols.tap[rw][uw];
            if (th < 0 || tw < 0) continue;
            const src = (th * kw + tw) * ci * co + o;
            for (let c = 0; c < ci; c++) out[dst + c] = w[src + c * co];
          }
        }
      }
    }
  }
  return out;
}

/** How the phases of one spatial axis share a conv window. */
interface PhaseWindow {
  /** Window length (taps of the combined filter). */
  size: number;
  /** Outputs per phase, ceil(inSize / stride). */
  count: number;
  padTop: number;
  padBottom: number;
  /** tap[r][u]: the original filter tap at window position u for phase r, or -1. */
  tap: number[][];
}

function phaseWindow(
  k: number,
  s: number,
  pad: number,
  inSize: number,
  outSize: number,
): PhaseWindow | undefined {
  // Phase r reads dy[q + c_r - t] for t < taps_r; in window coordinates u = padTop + c_r - t.
  const phases = [...Array(s).keys()].map((r) => {
    const m = (r + pad) % s;
    return { m, c: Math.floor((r + pad) / s), taps: Math.max(0, Math.ceil((k - m) / s)) };
  });
  const used = phases.filter((p) => p.taps > 0);
  const padTop = Math.max(...used.map((p) => p.taps - 1 - p.c));
  const size = Math.max(...used.map((p) => padTop + p.c + 1));
  const count = Math.ceil(inSize / s);
  const padBottom = count + size - 1 - padTop - outSize;
  if (padTop < 0 || padBottom < 0) return undefined;
  const tap = phases.map((p) => {
    const row = new Array<number>(size).fill(-1);
    for (let t = 0; t < p.taps; t++) row[padTop + p.c - t] = p.m + t * s;
    return row;
  });
  return { size, count, padTop, padBottom, tap };
}
