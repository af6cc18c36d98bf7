// GAN losses as small pure functions of the discriminator's outputs (logits),
// selected by name. The training code never knows which one it runs.
import * as tf from "@tensorflow/tfjs-core";
import type { LossConfig } from "./config.js";

export interface GanLoss {
  name: LossConfig["name"];
  /** D loss from D's outputs on real samples and on fakes. */
  discriminator(realOut: tf.Tensor, fakeOut: tf.Tensor): tf.Scalar;
  /** G loss from D's outputs on fakes (D frozen). */
  generator(fakeOut: tf.Tensor): tf.Scalar;
  /** Weight λ of the gradient penalty on D, 0 when the loss has none. */
  gradientPenalty: number;
  /** How D's raw output is reported as "D(x)": a probability for logistic losses, the critic value otherwise. */
  report(out: tf.Tensor): tf.Scalar;
}

const mean = (t: tf.Tensor): tf.Scalar => tf.mean(t) as tf.Scalar;
const probability = (out: tf.Tensor): tf.Scalar => mean(tf.sigmoid(out));

/** −log σ(r) − log(1 − σ(f)), the usual binary cross-entropy on logits. */
function logisticD(realOut: tf.Tensor, fakeOut: tf.Tensor): tf.Scalar {
  return tf.add(mean(tf.softplus(tf.neg(realOut))), mean(tf.softplus(fakeOut)));
}

/** Goodfellow et al.'s practical G loss: −log σ(f), i.e. fakes labelled 1. */
const nonSaturating: GanLoss = {
  name: "non-saturating",
  discriminator: logisticD,
  generator: (fakeOut) => mean(tf.softplus(tf.neg(fakeOut))),
  gradientPenalty: 0,
  report: probability,
};

/** The original minimax objective: G minimises log(1 − σ(f)) = −softplus(f). */
const minimax: GanLoss = {
  name: "minimax",
  discriminator: logisticD,
  generator: (fakeOut) => tf.neg(mean(tf.softplus(fakeOut))),
  gradientPenalty: 0,
  report: probability,
};

/** Wasserstein critic (Gulrajani et al. 2017); the penalty term is added by the microtask. */
function wganGp(lambda: number): GanLoss {
  return {
    name: "wgan-gp",
    discriminator: (realOut, fakeOut) => tf.sub(mean(fakeOut), mean(realOut)),
    generator: (fakeOut) => tf.neg(mean(fakeOut)),
    gradientPenalty: lambda,
    report: mean,
  };
}

/** Hinge loss (Lim & Ye 2017; Miyato et al. 2018). */
const hinge: GanLoss = {
  name: "hinge",
  discriminator: (realOut, fakeOut) =>
    tf.add(mean(tf.relu(tf.sub(1, realOut))), mean(tf.relu(tf.add(1, fakeOut)))),
  generator: (fakeOut) => tf.neg(mean(fakeOut)),
  gradientPenalty: 0,
  report: mean,
};

export function selectLoss(cfg: LossConfig): GanLoss {
  switch (cfg.name) {
    case "non-saturating":
      return nonSaturating;
    case "minimax":
      return minimax;
    case "wgan-gp":
      return wganGp(cfg.gpWeight);
    case "hinge":
      return hinge;
  }
}
