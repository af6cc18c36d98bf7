// Per-shape kernel times, wasm vs blas: conv2d forward, input gradient (conv2dTranspose), filter gradient.
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs";
import { initBackend } from "./shared/backend.ts";
type S = [string, number[], number[], number, "same" | "valid"];
const shapes: S[] = [
  ["dcgan D1", [64, 28, 28, 1], [5, 5, 1, 32], 2, "same"],
  ["dcgan D2", [64, 14, 14, 32], [5, 5, 32, 64], 2, "same"],
  ["dcgan64 D1", [64, 64, 64, 3], [4, 4, 3, 16], 2, "same"],
  ["dcgan64 D3", [64, 16, 16, 32], [4, 4, 32, 64], 2, "same"],
  ["dcgan64 D4", [64, 8, 8, 64], [4, 4, 64, 128], 2, "same"],
  ["resnet 3x3 28", [8, 28, 28, 16], [3, 3, 16, 16], 1, "same"],
  ["resnet 3x3 14", [8, 14, 14, 32], [3, 3, 32, 32], 1, "same"],
  ["resnet 3x3 7", [8, 7, 7, 64], [3, 3, 64, 64], 1, "same"],
  ["resnet 1x1 28", [8, 28, 28, 16], [1, 1, 16, 16], 1, "same"],
  ["resnet 1x1 7", [8, 7, 7, 64], [1, 1, 64, 64], 1, "same"],
];
const which = process.argv[2] ?? "fwd,dx,dw";
const time = (f: () => tf.Tensor) => { for (let i = 0; i < 15; i++) f().dispose(); const t = performance.now(); const R = 15; for (let i = 0; i < R; i++) { const o = f(); o.dataSync(); o.dispose(); } return (performance.now() - t) / R; };
for (const [name, xs, ws, s, pad] of shapes) {
  const row: string[] = [name.padEnd(15)];
  for (const be of ["wasm", "blas"] as const) {
    await initBackend(be);
    const x = tf.randomNormal(xs) as tf.Tensor4D, w = tf.randomNormal(ws) as tf.Tensor4D;
    const y = tf.conv2d(x, w, s, pad);
    const dy = tf.randomNormal(y.shape) as tf.Tensor4D;
    if (which.includes("fwd")) row.push(`fwd ${be} ${time(() => tf.conv2d(x, w, s, pad)).toFixed(2)}`);
    if (which.includes("dx")) row.push(`dx ${be} ${time(() => tf.conv2dTranspose(dy, w, xs as any, s, pad)).toFixed(2)}`);
    if (which.includes("dw")) row.push(`dw ${be} ${time(() => tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, { strides: s, pad, dataFormat: "NHWC", filterShape: ws } as any) as tf.Tensor).toFixed(2)}`);
    tf.dispose([x, w, y, dy]);
  }
  console.log(row.join("  "));
}
