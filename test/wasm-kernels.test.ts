// Our wasm kernels against the cpu backend (the reference), on the shapes our models use and
// on padding/stride edge cases, plus determinism and leak checks. The matrix-product and
// convolution suites run twice: on wasm, and on blas (the same kernels on OpenBLAS) when
// OpenBLAS is installed (CI installs it).
import * as tf from "@tensorflow/tfjs-core";
// tfjs-core alone registers no gradient functions; the umbrella package would.
import "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "../shared/backend.js";
import { Rng } from "../shared/rng.js";
import "../shared/gradients.js"; // the LeakyReLU gradient the models train with
import { registerWasmKernels } from "../shared/wasm-kernels.js";
import { blasAvailable } from "./helpers/blas.js";

type Pad =
  | "same"
  | "valid"
  | number
  | [[number, number], [number, number], [number, number], [number, number]];
type Shape4 = [number, number, number, number];

interface Input {
  shape: number[];
  values: Float32Array;
}

function input(shape: number[], seed: number): Input {
  const rng = new Rng(seed);
  const values = new Float32Array(shape.reduce((n, d) => n * d, 1));
  for (let i = 0; i < values.length; i++) values[i] = rng.nextFloat() * 2 - 1;
  return { shape, values };
}

/** Runs `f` on fresh tensors of `inputs` under one backend and reads every output back. */
async function runOn(
  backend: "wasm" | "blas" | "cpu",
  inputs: Input[],
  f: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<Float32Array[]> {
  await initBackend(backend);
  const xs = inputs.map((i) => tf.tensor(i.values, i.shape));
  const out = f(...xs);
  const outs = Array.isArray(out) ? out : [out];
  const data = await Promise.all(outs.map((o) => o.data() as Promise<Float32Array>));
  tf.dispose([...xs, ...outs]);
  return data;
}

/** Max |wasm - cpu| relative to max |cpu|, per output. */
async function relErrors(
  inputs: Input[],
  f: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<number[]> {
  const wasm = await runOn(current, inputs, f);
  const cpu = await runOn("cpu", inputs, f);
  return cpu.map((ref, k) => {
    expect(wasm[k].length).toBe(ref.length);
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < ref.length; i++) {
      scale = Math.max(scale, Math.abs(ref[i]));
      diff = Math.max(diff, Math.abs(wasm[k][i] - ref[i]));
    }
    expect(scale).toBeGreaterThan(0);
    return diff / scale;
  });
}

async function expectMatchesCpu(
  inputs: Input[],
  f: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<void> {
  for (const err of await relErrors(inputs, f)) expect(err).toBeLessThanOrEqual(1e-4);
}

/** Gradients of sum(conv(x, w) * r) w.r.t. x and w; r makes dy non-uniform. */
function convGrads(conv: (x: tf.Tensor4D, w: tf.Tensor4D) => tf.Tensor4D) {
  return (x: tf.Tensor, w: tf.Tensor, r: tf.Tensor) =>
    tf.grads((a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(conv(a as tf.Tensor4D, b as tf.Tensor4D), r)),
    )([x, w]);
}

function convOutShape(
  xShape: Shape4,
  filterShape: Shape4,
  strides: number | [number, number],
  pad: Pad,
) {
  return tf.backend_util.computeConv2DInfo(xShape, filterShape, strides, 1, pad).outShape;
}

/** conv2d(x, w) test case, with dy for its gradient. */
function conv2dCase(
  xShape: Shape4,
  filterShape: Shape4,
  strides: number | [number, number],
  pad: Pad,
) {
  const seed = xShape.concat(filterShape).reduce((h, d) => h * 31 + d, 7);
  const inputs = [
    input(xShape, seed),
    input(filterShape, seed + 1),
    input(convOutShape(xShape, filterShape, strides, pad), seed + 2),
  ];
  const grads = convGrads((x, w) => tf.conv2d(x, w, strides, pad as "same"));
  return { inputs, grads };
}

/** conv2dTranspose(y, w) producing `outShape`, with dy for its gradient. */
function convTCase(
  outShape: Shape4,
  filterShape: Shape4,
  strides: number | [number, number],
  pad: Pad,
) {
  const seed = outShape.concat(filterShape).reduce((h, d) => h * 37 + d, 11);
  const yShape = convOutShape(outShape, filterShape, strides, pad);
  const inputs = [input(yShape, seed), input(filterShape, seed + 1), input(outShape, seed + 2)];
  const forward = (y: tf.Tensor, w: tf.Tensor) =>
    tf.conv2dTranspose(y as tf.Tensor4D, w as tf.Tensor4D, outShape, strides, pad as "same");
  const grads = convGrads((y, w) => forward(y, w) as tf.Tensor4D);
  return { inputs, forward, grads };
}

/** The backends whose GEMM-shaped kernels are under test; blas when OpenBLAS can be loaded. */
const UNDER_TEST: ("wasm" | "blas")[] = blasAvailable() ? ["wasm", "blas"] : ["wasm"];
/** The backend the running suite compares with cpu (set by each suite's beforeAll). */
let current: "wasm" | "blas" = "wasm";

beforeAll(async () => {
  await initBackend("cpu");
  expect(await initBackend("wasm")).toBe("wasm");
});

describe("registerWasmKernels", () => {
  it("is idempotent", () => {
    const ours = [
      "BatchMatMul",
      "_FusedMatMul",
      "Conv2DBackpropInput",
      "Conv2DBackpropFilter",
      "Identity",
      "LeakyRelu",
    ];
    const before = ours.map((k) => tf.getKernel(k, "wasm")?.kernelFunc);
    registerWasmKernels();
    registerWasmKernels();
    const after = ours.map((k) => tf.getKernel(k, "wasm")?.kernelFunc);
    expect(before.every((f) => f != null)).toBe(true);
    expect(after).toEqual(before);
  });
});

for (const B of UNDER_TEST) {
  describe(`Conv2DBackpropFilter (and conv2d gradients) on ${B}`, () => {
    beforeAll(() => {
      current = B;
    });

    // DCGAN discriminator for 28x28x1: 5x5 kernels, stride 2, 'same'.
    const cases: [string, Shape4, Shape4, number | [number, number], Pad][] = [
      ["D conv1 b4 f8", [4, 28, 28, 1], [5, 5, 1, 8], 2, "same"],
      ["D conv2 b4 f8", [4, 14, 14, 8], [5, 5, 8, 16], 2, "same"],
      ["D conv1 b64 f32", [64, 28, 28, 1], [5, 5, 1, 32], 2, "same"],
      // mnist-dcgan's D at batch 16 per shard, and dcgan32's 4x4 kernels.
      ["dcgan D conv1 b16 f32", [16, 28, 28, 1], [5, 5, 1, 32], 2, "same"],
      ["dcgan D conv2 b16 f32", [16, 14, 14, 32], [5, 5, 32, 64], 2, "same"],
      ["dcgan32 D 4x4", [4, 16, 16, 32], [4, 4, 32, 64], 2, "same"],
      // 64 px RGB: 2 images per im2col chunk on blas, so 3 images make an uneven second chunk.
      ["dcgan64 D conv1, 2 chunks", [3, 64, 64, 3], [4, 4, 3, 16], 2, "same"],
      ["valid, non-square", [3, 13, 11, 2], [3, 4, 2, 5], 2, "valid"],
      ["valid, rows the op never reads", [2, 14, 15, 2], [3, 3, 2, 3], 3, "valid"],
      ["same, stride 3, odd size", [2, 13, 13, 2], [3, 3, 2, 3], 3, "same"],
      ["stride 1", [2, 8, 8, 3], [3, 3, 3, 2], 1, "same"],
      ["numeric pad", [2, 9, 9, 2], [3, 3, 2, 3], 2, 1],
      [
        "explicit pads, unequal strides",
        [2, 9, 10, 2],
        [3, 3, 2, 3],
        [2, 1],
        [
          [0, 0],
          [1, 2],
          [0, 1],
          [0, 0],
        ],
      ],
    ];
    for (const [name, xShape, filterShape, strides, pad] of cases) {
      it(`matches cpu: ${name}`, async () => {
        const { inputs, grads } = conv2dCase(xShape, filterShape, strides, pad);
        await expectMatchesCpu(inputs, grads);
      });
    }

    // Stride 1 takes the matrix-product path (x's columns · dy): every convolution of the resnet
    // at batch 8 per shard (fashion-resnet-rpgan: widths 64, 32, 16 at 7, 14, 28 px), then
    // padding and shape edge cases of that path.
    const stride1: [string, Shape4, Shape4, Pad][] = [
      ["resnet 3x3 at 28px", [8, 28, 28, 16], [3, 3, 16, 16], "same"],
      ["resnet 3x3 at 14px", [8, 14, 14, 32], [3, 3, 32, 32], "same"],
      ["resnet 3x3 at 7px", [8, 7, 7, 64], [3, 3, 64, 64], "same"],
      ["resnet 1x1 at 28px", [8, 28, 28, 16], [1, 1, 16, 16], "same"],
      ["resnet 1x1 at 14px", [8, 14, 14, 32], [1, 1, 32, 32], "same"],
      ["resnet 1x1 at 7px", [8, 7, 7, 64], [1, 1, 64, 64], "same"],
      ["resnet 1x1 width change 32→64", [8, 7, 7, 32], [1, 1, 32, 64], "same"],
      ["resnet 1x1 width change 16→32", [8, 14, 14, 16], [1, 1, 16, 32], "same"],
      ["resnet 1x1 from the image", [8, 28, 28, 1], [1, 1, 1, 16], "same"],
      ["resnet 1x1 to the image", [8, 28, 28, 16], [1, 1, 16, 1], "same"],
      ["3x3 valid", [2, 9, 8, 3], [3, 3, 3, 4], "valid"],
      ["non-square 2x3 same", [3, 7, 9, 2], [2, 3, 2, 5], "same"],
      ["1x1 with a numeric pad", [2, 5, 6, 3], [1, 1, 3, 2], 1],
      [
        "1x1 padded on the far sides only",
        [2, 5, 6, 3],
        [1, 1, 3, 2],
        [
          [0, 0],
          [0, 2],
          [0, 1],
          [0, 0],
        ],
      ],
      [
        "explicit pads, one side wider than the filter",
        [2, 6, 7, 2],
        [3, 2, 2, 3],
        [
          [0, 0],
          [4, 0],
          [0, 3],
          [0, 0],
        ],
      ],
    ];
    for (const [name, xShape, filterShape, pad] of stride1) {
      it(`matches cpu, stride 1: ${name}`, async () => {
        const { inputs, grads } = conv2dCase(xShape, filterShape, 1, pad);
        await expectMatchesCpu(inputs, grads);
      });
    }

    it("rejects NCHW clearly", async () => {
      await initBackend(current);
      const x = tf.zeros([1, 2, 8, 8]);
      const dy = tf.zeros([1, 3, 4, 4]);
      const attrs = { strides: 2, pad: "same", dataFormat: "NCHW", filterShape: [3, 3, 2, 3] };
      expect(() => tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, attrs)).toThrow(/NHWC/);
      tf.dispose([x, dy]);
    });
  });
}

for (const B of UNDER_TEST) {
  describe(`Conv2DBackpropInput (conv2dTranspose) on ${B}`, () => {
    beforeAll(() => {
      current = B;
    });

    // DCGAN generator for 28x28x1: convT1 [b,7,7,2f] -> [b,14,14,f], convT2 [b,14,14,f] -> [b,28,28,1].
    const cases: [string, Shape4, Shape4, number | [number, number], Pad][] = [
      ["G convT1 b4 f8", [4, 14, 14, 8], [5, 5, 8, 16], 2, "same"],
      ["G convT2 b4 f8", [4, 28, 28, 1], [5, 5, 1, 8], 2, "same"],
      // From 8 output channels on, each phase runs as its own conv (the split path).
      ["dcgan G convT1 b16 f32 (split)", [16, 14, 14, 32], [5, 5, 32, 64], 2, "same"],
      ["dcgan32 4x4 kernel (split)", [4, 16, 16, 32], [4, 4, 32, 64], 2, "same"],
      ["split, valid, non-square", [3, 13, 11, 8], [3, 4, 8, 5], 2, "valid"],
      [
        "8 channels, stride 3, odd size (crop; shared window)",
        [2, 13, 13, 8],
        [3, 3, 8, 3],
        3,
        "same",
      ],
      [
        "split, explicit pads, unequal strides",
        [2, 9, 10, 8],
        [3, 3, 8, 3],
        [2, 1],
        [
          [0, 0],
          [1, 2],
          [0, 1],
          [0, 0],
        ],
      ],
      ["3 output channels", [4, 28, 28, 3], [5, 5, 3, 8], 2, "same"],
      ["dcgan64 G output, 2 chunks", [3, 64, 64, 3], [4, 4, 3, 16], 2, "same"],
      ["valid", [3, 13, 11, 4], [3, 4, 4, 5], 2, "valid"],
      ["same, stride 3, odd size (crop)", [2, 13, 13, 4], [3, 3, 4, 3], 3, "same"],
      ["stride 1, one channel", [2, 8, 8, 1], [3, 3, 1, 2], 1, "same"],
      ["filter smaller than the stride", [2, 9, 8, 2], [2, 1, 2, 3], [3, 2], "valid"],
      ["numeric pad", [2, 9, 9, 2], [3, 3, 2, 3], 2, 1],
      [
        "explicit pads, unequal strides",
        [2, 9, 10, 2],
        [3, 3, 2, 3],
        [2, 1],
        [
          [0, 0],
          [1, 2],
          [0, 1],
          [0, 0],
        ],
      ],
      [
        "explicit pads wider than the filter (stock path)",
        [2, 9, 10, 4],
        [3, 3, 4, 3],
        2,
        [
          [0, 0],
          [3, 1],
          [0, 1],
          [0, 0],
        ],
      ],
    ];
    for (const [name, outShape, filterShape, strides, pad] of cases) {
      it(`forward and gradients match cpu: ${name}`, async () => {
        const { inputs, forward, grads } = convTCase(outShape, filterShape, strides, pad);
        await expectMatchesCpu(inputs.slice(0, 2), forward);
        await expectMatchesCpu(inputs, grads);
      });
    }

    it("forward matches cpu: G convT1 b64 f32", async () => {
      const { inputs, forward } = convTCase([64, 14, 14, 32], [5, 5, 32, 64], 2, "same");
      await expectMatchesCpu(inputs.slice(0, 2), forward);
    });
  });
}

/** The float32 bit patterns of a typed array, for exact comparisons. */
function bitsOf(a: Float32Array): number[] {
  return Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
}

describe("Identity and LeakyRelu on wasm", () => {
  it("Identity (tf.clone) shares the input's buffer and outlives the input", async () => {
    await initBackend("wasm");
    const backend = tf.engine().backend;
    const x = tf.tensor([1.5, -2, 0, 3e-40]);
    const before = backend.numDataIds();
    const y = tf.clone(x);
    expect(backend.numDataIds()).toBe(before);
    x.dispose();
    expect(Array.from(await y.data())).toEqual([1.5, -2, 0, Math.fround(3e-40)]);
    y.dispose();
    expect(backend.numDataIds()).toBe(before - 1);
  });

  // The resnet's activations (batch 8 per shard) and the dcgan D's.
  const shapes = [
    [8, 28, 28, 16],
    [8, 14, 14, 32],
    [8, 7, 7, 64],
    [16, 14, 14, 32],
    [16, 7, 7, 64],
    [4, 256],
  ];
  for (const shape of shapes) {
    it(`LeakyRelu [${shape}] matches cpu and equals x < 0 ? 0.2x : x exactly`, async () => {
      const x = input(shape, shape.length * 1000 + shape[shape.length - 1]);
      x.values.set([0, -0, 1e-40, -1e-40, Number.MIN_VALUE]);
      await expectMatchesCpu([x], (t) => tf.leakyRelu(t, 0.2));
      const [out] = await runOn("wasm", [x], (t) => tf.leakyRelu(t, 0.2));
      const alpha = Math.fround(0.2);
      for (let i = 0; i < out.length; i++) {
        const v = x.values[i];
        // === : the sign of a zero may differ (XNNPACK's PReLU maps -0 to +0).
        expect(out[i] === (v < 0 ? Math.fround(v * alpha) : v)).toBe(true);
      }
    });
  }

  // tfjs's own LeakyRelu gradient, which microtask.ts replaces by dy · step(x, alpha).
  const stockGrad = (alpha: number) =>
    tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
      save([x]);
      return {
        value: tf.leakyRelu(x, alpha),
        gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) =>
          tf.where(tf.greater(saved, 0), dy, tf.mul(dy, alpha)),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;

  /** R1-like: ∂/∂w ‖∇ₓ sum(act(conv(x, w)) · r)‖², a gradient through a LeakyReLU gradient. */
  const penaltyGrad =
    (act: (t: tf.Tensor) => tf.Tensor) => (x: tf.Tensor, w: tf.Tensor, r: tf.Tensor) =>
      tf.grad((wi: tf.Tensor) => {
        const gx = tf.grad((xi: tf.Tensor) =>
          tf.sum(tf.mul(act(tf.conv2d(xi as tf.Tensor4D, wi as tf.Tensor4D, 1, "same")), r)),
        )(x);
        return tf.sum(tf.square(gx));
      })(w);

  for (const backend of ["cpu", "wasm"] as const) {
    it(`the LeakyRelu gradient dy·step(x) has the stock gradient's bits, first and second order (${backend})`, async () => {
      const [x, w, r] = [input([4, 8, 8, 3], 1), input([3, 3, 3, 5], 2), input([4, 8, 8, 5], 3)];
      const first = (act: (t: tf.Tensor) => tf.Tensor) => (xi: tf.Tensor, ri: tf.Tensor) =>
        tf.grad((t: tf.Tensor) => tf.sum(tf.mul(act(t), ri)))(xi);
      const xr = input([4, 8, 8, 5], 4);
      xr.values.set([0, -0]);
      const ours = await runOn(
        backend,
        [xr, r],
        first((t) => tf.leakyRelu(t, 0.2)),
      );
      const stock = await runOn(backend, [xr, r], first(stockGrad(0.2)));
      expect(bitsOf(ours[0])).toEqual(bitsOf(stock[0]));
      const ours2 = await runOn(
        backend,
        [x, w, r],
        penaltyGrad((t) => tf.leakyRelu(t, 0.2)),
      );
      const stock2 = await runOn(backend, [x, w, r], penaltyGrad(stockGrad(0.2)));
      expect(bitsOf(ours2[0])).toEqual(bitsOf(stock2[0]));
    });
  }
});

for (const B of UNDER_TEST) {
  describe(`BatchMatMul / _FusedMatMul on ${B}`, () => {
    beforeAll(() => {
      current = B;
    });

    const combos = [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const;
    const dense: [number, number, number][] = [
      [64, 784, 256],
      [64, 256, 1],
    ];
    for (const [m, k, n] of dense) {
      for (const [ta, tb] of combos) {
        const inputs = [input(ta ? [k, m] : [m, k], m + k), input(tb ? [n, k] : [k, n], k + n)];
        it(`matMul [${m},${k}]x[${k},${n}] transposeA=${ta} transposeB=${tb}`, async () => {
          await expectMatchesCpu(inputs, (a, b) => tf.matMul(a, b, ta, tb));
        });
        it(`fused matMul + bias + relu [${m},${k}]x[${k},${n}] transposeA=${ta} transposeB=${tb}`, async () => {
          const all = [...inputs, input([n], n)];
          await expectMatchesCpu(all, (a, b, bias) =>
            tf.fused.matMul({ a, b, transposeA: ta, transposeB: tb, bias, activation: "relu" }),
          );
        });
      }
    }

    // Every dense layer of the benchmarked models (MLP G 64-256-512-784, D 784-512-256-1; DCGAN
    // G dense 64-3136, D dense 3136-1) at batch 64: forward x·W, input gradient dy·Wᵀ (the swapped
    // product) and weight gradient xᵀ·dy, as tfjs's matMul gradient emits them.
    const layers: [number, number][] = [
      [64, 256],
      [256, 512],
      [512, 784],
      [784, 512],
      [512, 256],
      [256, 1],
      [64, 3136],
      [3136, 1],
    ];
    for (const [fanIn, fanOut] of layers) {
      it(`dense ${fanIn}→${fanOut} at batch 64: x·W, dy·Wᵀ and xᵀ·dy match cpu`, async () => {
        const x = input([64, fanIn], fanIn);
        const w = input([fanIn, fanOut], fanIn * 7 + fanOut);
        const dy = input([64, fanOut], fanOut + 1);
        await expectMatchesCpu([x, w], (a, b) => tf.matMul(a, b));
        await expectMatchesCpu([dy, w], (a, b) => tf.matMul(a, b, false, true));
        await expectMatchesCpu([x, dy], (a, b) => tf.matMul(a, b, true, false));
      });
    }

    it("fused matMul with transposed b and a bias (not swapped) still matches", async () => {
      const inputs = [input([64, 512], 21), input([784, 512], 22), input([784], 23)];
      await expectMatchesCpu(inputs, (a, b, bias) =>
        tf.fused.matMul({ a, b, transposeB: true, bias, activation: "relu" }),
      );
    });

    it("batched matMul (left to the stock kernel) still matches", async () => {
      const inputs = [input([3, 16, 8], 1), input([3, 12, 8], 2)];
      await expectMatchesCpu(inputs, (a, b) => tf.matMul(a, b, false, true));
    });

    it("MLP gradients match cpu", async () => {
      const inputs = [
        input([64, 784], 3),
        input([784, 256], 4),
        input([256], 5),
        input([256, 1], 6),
      ];
      await expectMatchesCpu(inputs, mlpGrads);
    });
  });
}

for (const B of UNDER_TEST) {
  describe(`Sum and Mean on ${B}`, () => {
    beforeAll(() => {
      current = B;
    });
    // Bias gradients and batch-norm statistics (leading axes), per-sample sums (trailing), a
    // middle axis (left to the stock kernel on blas), everything, and keepDims.
    const cases: [string, number[], number | number[], boolean][] = [
      ["conv bias gradient", [16, 14, 14, 32], [0, 1, 2], false],
      ["dense bias gradient", [64, 256], 0, false],
      ["batch-norm statistics, keepDims", [8, 7, 7, 64], [0, 1, 2], true],
      ["per-sample sum", [8, 28, 28, 1], [1, 2, 3], false],
      ["last axis", [64, 10], -1, true],
      ["middle axis", [4, 6, 5], 1, false],
      ["all axes", [3, 5, 7], [0, 1, 2], false],
      ["one row", [1, 12], 0, false],
    ];
    for (const [name, shape, axis, keepDims] of cases) {
      it(`${name}: sum and mean of [${shape}] over ${JSON.stringify(axis)} match cpu`, async () => {
        const x = input(
          shape,
          shape.reduce((h, d) => h * 13 + d, 5),
        );
        await expectMatchesCpu([x], (t) => [tf.sum(t, axis, keepDims), tf.mean(t, axis, keepDims)]);
      });
    }
  });
}

/** Gradients of a 784-256-1 MLP's loss w.r.t. its weights and its input. */
function mlpGrads(x: tf.Tensor, w1: tf.Tensor, b1: tf.Tensor, w2: tf.Tensor): tf.Tensor[] {
  return tf.grads((xi: tf.Tensor, a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
    const h = tf.leakyRelu(tf.add(tf.matMul(xi, a), b), 0.2);
    return tf.mean(tf.sigmoid(tf.matMul(h, c)));
  })([x, w1, b1, w2]);
}

/** A small DCGAN (G: dense -> 2 convT, D: 2 conv -> dense) and the gradient of D(G(z)). */
function dcganGrads(f: number, batch: number) {
  const shapes = [
    [batch, 16], // z
    [16, 7 * 7 * 2 * f], // G dense
    [5, 5, f, 2 * f], // G convT1
    [5, 5, 1, f], // G convT2
    [5, 5, 1, f], // D conv1
    [5, 5, f, 2 * f], // D conv2
    [7 * 7 * 2 * f, 1], // D dense
  ];
  const inputs = shapes.map((s, i) => input(s, 100 + i));
  const grads = (...xs: tf.Tensor[]) => {
    const [z, ...weights] = xs;
    return tf.grads(
      (
        gd: tf.Tensor,
        g1: tf.Tensor,
        g2: tf.Tensor,
        d1: tf.Tensor,
        d2: tf.Tensor,
        dd: tf.Tensor,
      ) => {
        let h: tf.Tensor = tf.reshape(tf.relu(tf.matMul(z, gd)), [batch, 7, 7, 2 * f]);
        h = tf.relu(
          tf.conv2dTranspose(h as tf.Tensor4D, g1 as tf.Tensor4D, [batch, 14, 14, f], 2, "same"),
        );
        const img = tf.tanh(
          tf.conv2dTranspose(h as tf.Tensor4D, g2 as tf.Tensor4D, [batch, 28, 28, 1], 2, "same"),
        );
        let d: tf.Tensor = tf.leakyRelu(
          tf.conv2d(img as tf.Tensor4D, d1 as tf.Tensor4D, 2, "same"),
          0.2,
        );
        d = tf.leakyRelu(tf.conv2d(d as tf.Tensor4D, d2 as tf.Tensor4D, 2, "same"), 0.2);
        return tf.mean(tf.sigmoid(tf.matMul(tf.reshape(d, [batch, -1]), dd)));
      },
    )(weights);
  };
  return { inputs, grads };
}

for (const B of UNDER_TEST) {
  describe(`whole-model gradients on ${B}`, () => {
    beforeAll(() => {
      current = B;
    });

    it("a DCGAN-like conv stack's gradients run and match cpu", async () => {
      const { inputs, grads } = dcganGrads(8, 4);
      await expectMatchesCpu(inputs, grads);
    });

    it("is deterministic: same inputs give the same bits", async () => {
      // f = 32: on blas every conv path (im2col, col2im, the stride-1 flip) takes part.
      const { inputs, grads } = dcganGrads(32, 2);
      const mlpInputs = [
        input([64, 784], 3),
        input([784, 256], 4),
        input([256], 5),
        input([256, 1], 6),
      ];
      const swapped = [input([64, 512], 31), input([784, 512], 32)];
      const bits = async () => {
        const outs = [
          ...(await runOn(current, inputs, grads)),
          ...(await runOn(current, mlpInputs, mlpGrads)),
          ...(await runOn(current, swapped, (a, b) => tf.matMul(a, b, false, true))),
        ];
        return outs.map((o) => Array.from(new Uint32Array(o.buffer, o.byteOffset, o.length)));
      };
      expect(await bits()).toEqual(await bits());
    });

    it("leaves no wasm buffers behind", async () => {
      const { inputs, grads } = dcganGrads(8, 4);
      await runOn(current, inputs, grads); // warm up: first calls may allocate caches
      const backend = tf.engine().backend;
      const before = backend.numDataIds();
      await runOn(current, inputs, grads);
      expect(backend.numDataIds()).toBe(before);
    });
  });
}

describe.skipIf(!blasAvailable())("blas kernels", () => {
  it("Add, Sub, Multiply, RealDiv (shared/wasm/binary.wat) give the stock wasm kernels' bits: equal shapes, scalars, biases broadcast either side, odd sizes, NaN/Inf/-0/subnormals", async () => {
    const pairs: [number[], number[]][] = [
      [
        [64, 5, 5, 32],
        [64, 5, 5, 32],
      ],
      [
        [7, 3],
        [7, 3],
      ],
      [[3, 5, 5, 16], [16]],
      [
        [3, 5, 5, 16],
        [1, 1, 1, 16],
      ],
      [
        [1, 1, 1, 16],
        [3, 5, 5, 16],
      ],
      [[16], [2, 4, 16]],
      [[2, 9, 9, 3], [3]],
      [[33], []],
      [[], [33]],
      [[], []],
      [
        [5, 7],
        [5, 1],
      ], // not over leading axes: the stock kernel
      [[16], [1, 1, 1, 16]], // output has the smaller operand's rank: the stock kernel
    ];
    const specials = [0, -0, 1e-40, -1e-40, Number.NaN, Number.POSITIVE_INFINITY, -3.5];
    const fill = (shape: number[], seed: number): Input => {
      const x = input(shape, seed);
      for (let i = 0; i < x.values.length; i += 5)
        x.values[i] = specials[(i / 5 + seed) % specials.length];
      return x;
    };
    const ops: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
      ["add", tf.add],
      ["sub", tf.sub],
      ["mul", tf.mul],
      ["div", tf.div],
    ];
    const { wasmCalls } = await import("../shared/blas-kernels.js");
    for (const [k, [sa, sb]] of pairs.entries()) {
      const inputs = [fill(sa, 2 * k + 1), fill(sb, 2 * k + 2)];
      for (const [name, op] of ops) {
        const [stock] = await runOn("wasm", inputs, op);
        const before = wasmCalls().binary;
        const [ours] = await runOn("blas", inputs, op);
        // the last two pairs are not ours to compute: the stock kernel runs on blas too
        expect(wasmCalls().binary - before, `${name} [${sa}] [${sb}] in binary.wat`).toBe(
          k < pairs.length - 2 ? 1 : 0,
        );
        expect(bitsOf(ours), `${name} [${sa}] [${sb}]`).toEqual(bitsOf(stock));
      }
    }
  });

  it("Tanh (shared/wasm/tanh.wat) is within 1e-6 of tanh, exact at 0 and ±Inf, NaN for NaN, and the same per value in SIMD lanes and the scalar tail", async () => {
    const special = [
      0, -0, 1e-30, -3e-5, 0.0003999, 0.0004, -0.0004, 0.5, 1, -2.5, 8.99, 9, -9, 9.5, 20, -1e30,
    ];
    const rng = new Rng(5);
    const values = [
      ...special,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      Number.NaN,
      ...Array.from(
        { length: 20000 },
        () => (rng.nextFloat() * 2 - 1) * 10 ** (rng.nextFloat() * 5 - 4),
      ),
    ];
    // 20019 values: the last 3 take the scalar tail
    const x = Float32Array.from(values);
    const { wasmCalls } = await import("../shared/blas-kernels.js");
    const before = wasmCalls().tanh;
    const [y] = await runOn("blas", [{ shape: [x.length], values: x }], (t) => tf.tanh(t));
    expect(wasmCalls().tanh).toBe(before + 1);
    let worst = 0;
    for (let i = 0; i < x.length; i++) {
      if (Number.isNaN(x[i])) {
        expect(Number.isNaN(y[i])).toBe(true);
        continue;
      }
      const err = Math.abs(y[i] - Math.tanh(x[i]));
      worst = Math.max(worst, err / Math.max(Math.abs(Math.tanh(x[i])), 1e-30));
      expect(Math.abs(y[i])).toBeLessThanOrEqual(1);
      expect(Math.sign(y[i]) === Math.sign(x[i])).toBe(true);
    }
    expect(worst).toBeLessThan(1e-6);
    expect(y[0]).toBe(0);
    expect(Object.is(y[1], -0)).toBe(true);
    expect(y[special.length]).toBe(1);
    expect(y[special.length + 1]).toBe(-1);
    // the tail (values.length % 4 of them) computes what the lanes do: the same values again,
    // at offsets that put them in lanes
    const tail = x.subarray(x.length - 8);
    const [again] = await runOn(
      "blas",
      [{ shape: [12], values: Float32Array.from([...tail, 1, 2, 3, 4]) }],
      (t) => tf.tanh(t),
    );
    expect(bitsOf(again.subarray(0, 8))).toEqual(bitsOf(y.subarray(y.length - 8)));
  });

  it("im2col and col2im in WebAssembly (shared/wasm/conv-cols.wat) give the JavaScript loops' bits", async () => {
    const { useWasmConvCols, wasmCalls } = await import("../shared/blas-kernels.js");
    const explicit: Pad = [
      [0, 0],
      [1, 2],
      [0, 1],
      [0, 0],
    ];
    // forward, filter and input gradients; strides 1–3, same/valid/explicit padding, odd
    // sizes, channel counts that leave a scalar tail after the 4-float SIMD runs
    const convs = [
      conv2dCase([4, 14, 14, 32], [5, 5, 32, 64], 2, "same"),
      conv2dCase([3, 13, 11, 3], [3, 4, 3, 33], 2, "valid"),
      conv2dCase([2, 9, 10, 5], [3, 3, 5, 32], [2, 1], explicit),
      conv2dCase([2, 8, 8, 7], [3, 3, 7, 40], 1, "same"),
    ];
    const convTs = [
      convTCase([4, 14, 14, 32], [5, 5, 32, 64], 2, "same"),
      convTCase([2, 13, 13, 9], [3, 3, 9, 33], 3, "same"),
      convTCase([3, 13, 11, 8], [3, 4, 8, 35], 2, "valid"),
      convTCase([2, 9, 10, 6], [3, 3, 6, 32], [2, 1], explicit),
      convTCase([4, 16, 16, 32], [4, 4, 32, 64], 2, "same"),
    ];
    const bits = async () => {
      const outs: Float32Array[] = [];
      for (const c of convs) outs.push(...(await runOn("blas", c.inputs, c.grads)));
      for (const c of convTs) {
        outs.push(...(await runOn("blas", c.inputs.slice(0, 2), c.forward)));
        outs.push(...(await runOn("blas", c.inputs, c.grads)));
      }
      return outs.map(bitsOf);
    };
    try {
      useWasmConvCols(true);
      const before = wasmCalls();
      const inWasm = await bits();
      const mid = wasmCalls();
      expect(mid.im2col).toBeGreaterThan(before.im2col);
      expect(mid.col2im).toBeGreaterThan(before.col2im);
      expect(mid.jsConvCols).toBe(before.jsConvCols);
      useWasmConvCols(false);
      const inJs = await bits();
      const after = wasmCalls();
      expect(after.im2col + after.col2im).toBe(mid.im2col + mid.col2im);
      expect(after.jsConvCols).toBeGreaterThan(mid.jsConvCols);
      expect(inWasm.length).toBe(4 * 2 + 5 * 3);
      for (const [k, b] of inWasm.entries()) expect(b, `output ${k}`).toEqual(inJs[k]);
    } finally {
      useWasmConvCols(true);
    }
  });

  it("run the DCGAN's products, convolutions and sums on OpenBLAS, and unregister cleanly", async () => {
    const { loadBlas } = await import("../shared/blas.js");
    const { registerBlasKernels, activeBlas } = await import("../shared/blas-kernels.js");
    const real = loadBlas();
    let calls = 0;
    let sums = 0;
    await initBackend("blas");
    registerBlasKernels({
      label: real.label,
      coreName: real.coreName,
      path: real.path,
      sgemm: (...args: Parameters<typeof real.sgemm>) => {
        calls++;
        real.sgemm(...args);
      },
      sgemv: (...args: Parameters<typeof real.sgemv>) => {
        sums++;
        real.sgemv(...args);
      },
    });
    const { inputs, grads } = dcganGrads(32, 2);
    const xs = inputs.map((i) => tf.tensor(i.values, i.shape));
    const counted = new Map<string, number>();
    const profile = await tf.profile(() => {
      tf.dispose(grads(...xs));
      return [];
    });
    for (const k of profile.kernels) counted.set(k.name, (counted.get(k.name) ?? 0) + 1);
    // Every product and convolution of the step went through sgemm (a conv may chunk into more).
    const gemmShaped = ["BatchMatMul", "Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"];
    const expected = gemmShaped.reduce((n, k) => n + (counted.get(k) ?? 0), 0);
    expect(expected).toBeGreaterThan(10);
    expect(calls).toBeGreaterThanOrEqual(expected);
    // The bias-free test net still sums: its loss's mean and the gradients' reductions.
    expect(sums).toBeGreaterThan(0);
    expect(activeBlas()).toBeDefined();
    // A conv with few output channels goes to OpenBLAS too (one GEMM per chunk of images that
    // fits the L2 cache: 2 images × 64 rows × 36 taps is one), and so does a 1×1 conv (no im2col).
    const x = tf.ones([2, 8, 8, 4]) as tf.Tensor4D;
    const few = calls;
    tf.tidy(() => {
      tf.conv2d(x, tf.ones([3, 3, 4, 3]) as tf.Tensor4D, 1, "same");
    });
    expect(calls).toBe(few + 1);
    tf.tidy(() => {
      tf.conv2d(x, tf.ones([1, 1, 4, 8]) as tf.Tensor4D, 1, "same");
    });
    expect(calls).toBe(few + 2);
    x.dispose();
    await initBackend("wasm");
    expect(activeBlas()).toBeUndefined();
    const before = calls;
    tf.dispose(grads(...xs));
    expect(calls).toBe(before);
    tf.dispose(xs);
  });
});
