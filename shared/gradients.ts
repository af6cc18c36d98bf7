// Gradient functions we register with tfjs (globally, for every backend): ones it lacks and a
// cheaper form of one it has. Imported for its effect by microtask.ts, which runs every gradient.
import * as tf from "@tensorflow/tfjs-core";
// Load tfjs's own gradient registrations first, so ours replace theirs and not the reverse.
import "@tensorflow/tfjs";

// The WGAN-GP and R1/R2 penalties differentiate D's gradient again; a gradient built on
// Greater (tfjs's own LeakyReLU gradient, for one) then needs Greater's, which tfjs ships none
// for. A comparison is piecewise constant, so its gradient is zero wherever it is defined.
if (!tf.getGradient("Greater")) {
  tf.registerGradient({
    kernelName: "Greater",
    inputsToSave: ["a", "b"],
    gradFunc: (_dy, saved) => ({
      a: () => tf.zerosLike(saved[0]),
      b: () => tf.zerosLike(saved[1]),
    }),
  });
}

// LeakyReLU's gradient as tfjs ships it, where(x > 0, dy, dy·alpha), takes three kernels, two of
// which (Greater against a broadcast 0, Select) are scalar loops on wasm. dy · step(x, alpha),
// step = x > 0 ? 1 : alpha, is the same product in float32 (dy·1 = dy) in two fast kernels, and
// its own gradient (for R1/R2 and WGAN-GP) is dy's factor again plus step's zero gradient.
tf.registerGradient({
  kernelName: "LeakyRelu",
  inputsToSave: ["x"],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    const { alpha } = attrs as unknown as tf.LeakyReluAttrs;
    return { x: () => tf.mul(dy as tf.Tensor, tf.step(x, alpha)) };
  },
});
