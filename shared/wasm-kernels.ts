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
  if (!isOurs("Identity")) replace("Identity", sharedIdentity);
  if (!isOurs("LeakyRelu")) replace("LeakyRelu", fastLeakyRelu);
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

/** What we use of the wasm backend beyond tf.KernelBackend: its heap views. */
interface WasmHeap {
  makeOutput(shape: number[], dtype: "float32"): Info;
  typedArrayFromHeap(t: Info): Float32Array;
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
// Identity: the stock wasm kernel copies the buffer. tfjs-core calls it for every tensor it saves
// for a gradient (engine.clone), over 1500 times per resnet step with R1/R2. Tensors are
// immutable, so the output may share the input's buffer, as the cpu backend's Identity and
// every backend's Reshape do: same bits, no copy.

function sharedIdentity(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x as Info;
    if (x.dtype === "string") return stock(args);
    (args.backend as tf.KernelBackend).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}

// ---------------------------------------------------------------------------------------------
// LeakyRelu: the stock wasm kernel is a scalar loop (about 30x slower than Relu on [8,28,28,16]).
// PReLU with every channel's slope = alpha is the same function, x < 0 ? alpha*x : x in float32,
// and runs on XNNPACK. The slope vector is a fresh tensor per call (XNNPACK packs it with the
// operator; C floats), so nothing outlives the call.

function fastLeakyRelu(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const x = inputs.x as Info;
    if (x.dtype !== "float32" || x.shape.length === 0) return stock(args);
    const channels = x.shape[x.shape.length - 1];
    if (channels === 0 || x.shape.includes(0)) return stock(args);
    const alpha = (attrs as unknown as tf.LeakyReluAttrs).alpha;
    const kb = backend as tf.KernelBackend;
    return compose(backend, (run, hold) => {
      const slope = hold({
        dataId: kb.write(new Float32Array(channels).fill(alpha), [channels], "float32"),
        shape: [channels],
        dtype: "float32",
      });
      return run("Prelu", { x, alpha: slope });
    });
  };
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropFilter, missing from tfjs-backend-wasm 4.22. The filter gradient
//   dW[kh,kw,ci,co] = sum_{b,oh,ow} x[b, oh*s+kh-padTop, ow*s+kw-padLeft, ci] * dy[b,oh,ow,co]
// is itself a convolution: x transposed to [ci,H,W,B] as the input, dy transposed to
// [oh,ow,B,co] as the filter, stride 1 and dilation = the original stride. That runs on
// XNNPACK, about 2x faster than an im2col built by strided slicing (slow on wasm). It remains
// for widths that are not a multiple of the stride; the rest take filterGradMatMul below, an
// im2col copied in contiguous runs, faster still.

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
  if (info.inWidth % info.strideWidth === 0) return filterGradMatMul(x, dy, info, backend);
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

// The filter gradient as one matrix product, which XNNPACK runs faster than the dilated conv
// above at the models' shapes (that conv contracts over (oh, ow, B) with only B channels
// per filter tap, and packs a filter as large as dy per call):
//   dW[(kh, kw, c), o] = sum_{(y, w, b)} cols[(kh, kw, c), (y, w, b)] * dy[b, y, w, o]
//   cols[(kh, kw, c), (y, w, b)] = x[b, y*sh + kh - padTop, w*sw + kw - padLeft, c]   (0 outside x)
// cols is copied from x laid out as [c, h, sw, w/sw, b] (columns split by their phase mod sw),
// where each (kh, kw, c, y) is one run of contiguous (w, b) values; dy is transposed to
// [(y, w, b), o]. The product's rows are already the filter's [kh, kw, ci, co] order. Needs w a
// multiple of sw. An unpadded 1x1 filter at stride 1 needs no copy (cols is x transposed).
// The sum runs over (y, w, b) in the order the dilated conv summed, and XNNPACK's GEMM and conv
// accumulate alike: the bits are the same as that conv's (resnet's and dcgan's weight hashes
// after 9 steps equal). xᵀ·dy in x's own (b, y, w) order, two transposes fewer (1x1 at
// [8,28,28,16]: 0.17 instead of 0.41 ms), changed them, so it is not used.

function filterGradMatMul(
  x: Info,
  dy: Info,
  info: tf.backend_util.Conv2DInfo,
  backend: object,
): Info {
  const { filterHeight: kh, filterWidth: kw, inChannels: ci, outChannels: co } = info;
  const { batchSize: n, inHeight: h, inWidth: w, outHeight: oh, outWidth: ow } = info;
  const { strideHeight: sh, strideWidth: sw } = info;
  const { top: padTop, left: padLeft } = info.padInfo;
  const heap = backend as WasmHeap;
  const span = oh * ow * n;
  const wq = w / sw; // columns per phase
  return compose(backend, (run, hold) => {
    // [ci, h, sw, wq, n]: at sw = 1 one 4-D transpose; else two of rank <= 4 (tfjs-wasm's
    // rank-5 transpose is a slow loop).
    let xT: Info;
    if (sw === 1) {
      xT = run("Transpose", { x }, { perm: [3, 1, 2, 0] });
    } else {
      const split = run("Reshape", { x }, { shape: [n * h, wq, sw, ci] });
      const byPhase = run("Transpose", { x: split }, { perm: [0, 2, 1, 3] }); // [n*h, sw, wq, ci]
      const flat = run("Reshape", { x: byPhase }, { shape: [n, h * w, ci] });
      xT = run("Transpose", { x: flat }, { perm: [2, 1, 0] });
    }
    const dyT = run("Transpose", { x: dy }, { perm: [1, 2, 0, 3] }); // [oh, ow, n, co]
    const dyMat = run("Reshape", { x: dyT }, { shape: [span, co] });
    const product = (cols: Info) => {
      const dw = run(
        "BatchMatMul",
        { a: cols, b: dyMat },
        { transposeA: false, transposeB: false },
      );
      return run("Reshape", { x: dw }, { shape: [kh, kw, ci, co] });
    };
    if (kh === 1 && kw === 1 && sh === 1 && sw === 1 && oh === h && ow === w && padTop === 0) {
      return product(run("Reshape", { x: xT }, { shape: [ci, span] })); // cols is xT itself
    }
    const cols = hold(heap.makeOutput([kh * kw * ci, span], "float32"));
    // Views are taken after the allocation, which may grow (and detach) the wasm heap.
    const src = heap.typedArrayFromHeap(xT);
    const dst = heap.typedArrayFromHeap(cols);
    dst.fill(0);
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        // Input column wo*sw + j - padLeft = (wo + q)*sw + p: phase p, column wo + q in it.
        const p = (((j - padLeft) % sw) + sw) % sw;
        const q = (j - padLeft - p) / sw;
        const lo = Math.max(0, -q);
        const hi = Math.min(ow, wq - q);
        if (hi <= lo) continue;
        for (let c = 0; c < ci; c++) {
          const row = ((i * kw + j) * ci + c) * span;
          for (let y = 0; y < oh; y++) {
            const yIn = y * sh + i - padTop;
            if (yIn < 0 || yIn >= h) continue;
            const from = (((c * h + yIn) * sw + p) * wq + lo + q) * n;
            dst.set(src.subarray(from, from + (hi - lo) * n), row + (y * ow + lo) * n);
          }
        }
      }
    }
    return product(cols);
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
// dy and running a full KxK conv, this skips the multiplications by those zeros. With enough
// channels, each phase instead runs as its own conv over only its taps (the shared window pads
// the phases with fewer taps with zeros), and a Concat gives the same (phase, ci) layout.

/**
 * Below this many output channels per phase, the phases share one conv: XNNPACK computes output
 * channels in tiles of 8 (wasm SIMD), so four 1-channel convs cost 4x one 4-channel conv
 * (measured: dcgan's 14→28 px, 1 channel, 0.38 ms shared vs 1.7 ms split).
 */
const SPLIT_MIN_CHANNELS = 8;

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
    const conv = (
      run: Runner,
      hold: (t: Info) => Info,
      f: Float32Array,
      shape: number[],
      pads: number[],
    ) =>
      run(
        "Conv2D",
        { x: dy, filter: hold({ dataId: kb.write(f, shape, "float32"), shape, dtype: "float32" }) },
        {
          strides: [1, 1],
          dilations: [1, 1],
          pad: [
            [0, 0],
            [pads[0], pads[1]],
            [pads[2], pads[3]],
            [0, 0],
          ],
          dataFormat: "NHWC",
        },
      );
    const rowParts = phaseParts(rows);
    const colParts = phaseParts(cols);

    return compose(backend, (run, hold) => {
      let phased: Info;
      if (sh * sw > 1 && ci >= SPLIT_MIN_CHANNELS && rowParts != null && colParts != null) {
        // One conv per phase over its own taps only: no multiplications by the zeros that
        // pad the shared window (5x5 stride 2: 9 window taps per phase where 6.25 are real).
        const parts: Info[] = [];
        for (const rp of rowParts) {
          for (const cp of colParts) {
            const shape = [rp.taps.length, cp.taps.length, co, ci];
            const f = buildPartFilter(w, filter.shape as Shape4, rp.taps, cp.taps);
            parts.push(
              conv(run, hold, f, shape, [rp.padTop, rp.padBottom, cp.padTop, cp.padBottom]),
            );
          }
        }
        phased = run("Concat", parts as unknown as tf.NamedTensorInfoMap, { axis: 3 });
      } else {
        const phaseShape = [rows.size, cols.size, co, sh * sw * ci];
        const phaseFilter = buildPhaseFilter(w, filter.shape as Shape4, rows, cols);
        phased = conv(run, hold, phaseFilter, phaseShape, [
          rows.padTop,
          rows.padBottom,
          cols.padTop,
          cols.padBottom,
        ]);
      }
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

/** One phase's own conv along one axis: its taps (original filter indices) and pads. */
interface PhasePart {
  taps: number[];
  padTop: number;
  padBottom: number;
}

/**
 * Each phase's taps as their own window, cut from the shared one (the same dy rows, so the
 * same output positions), or undefined when a phase has no taps or would need a negative pad.
 */
function phaseParts(win: PhaseWindow): PhasePart[] | undefined {
  const parts: PhasePart[] = [];
  for (const row of win.tap) {
    const used = row.flatMap((t, u) => (t >= 0 ? [u] : []));
    if (used.length === 0) return undefined;
    const [u0, u1] = [used[0], used[used.length - 1]];
    const part = {
      taps: row.slice(u0, u1 + 1),
      padTop: win.padTop - u0,
      padBottom: win.padBottom - (win.size - 1 - u1),
    };
    if (part.padTop < 0 || part.padBottom < 0 || part.taps.includes(-1)) return undefined;
    parts.push(part);
  }
  return parts;
}

/** One phase's filter [tapsH, tapsW, co, ci] from W [kh, kw, ci, co]. */
function buildPartFilter(
  w: Float32Array,
  [, kw, ci, co]: Shape4,
  tapsH: number[],
  tapsW: number[],
): Float32Array {
  const out = new Float32Array(tapsH.length * tapsW.length * co * ci);
  let dst = 0;
  for (const th of tapsH) {
    for (const tw of tapsW) {
      for (let o = 0; o < co; o++, dst += ci) {
        const src = (th * kw + tw) * ci * co + o;
        for (let c = 0; c < ci; c++) out[dst + c] = w[src + c * co];
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
