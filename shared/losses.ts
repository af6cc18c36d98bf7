// GAN losses as small pure functions of the discriminator's outputs (logits),
// selected by name. The training code never knows which one it runs.
import * as tf from "@tensorflow/tfjs-core";
import type { LossConfig } from "./config.js";

export interface GanLoss {
  name: LossConfig["name"];
  /** D loss from D's outputs on real samples and on fakes. */
  discriminator(realOut: tf.Tensor, fakeOut: tf.Tensor): tf.Scalar;
  /**
   * G loss from D's outputs on fakes (D frozen). Relativistic losses
   * (`pairsReal`) also take D's outputs on the paired real samples.
   */
  generator(fakeOut: tf.Tensor, realOut?: tf.Tensor): tf.Scalar;
  /** True when the G phase needs real samples too (sample i of the reals is paired with fake i). */
  pairsReal: boolean;
  /** Weight λ of the gradient penalty on D, 0 when the loss has none. */
  gradientPenalty: number;
  /** Zero-centred penalties on D: γ of R1 (on reals) and R2 (on fakes), 0 = off. */
  r1: number;
  r2: number;
  /** R1/R2 are applied every `regEvery` D phases, scaled by regEvery (StyleGAN2's lazy regularisation). */
  regEvery: number;
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
const nonSaturating = {
  name: "non-saturating",
  discriminator: logisticD,
  generator: (fakeOut: tf.Tensor) => mean(tf.softplus(tf.neg(fakeOut))),
  pairsReal: false,
  gradientPenalty: 0,
  report: probability,
} as const;

/** The original minimax objective: G minimises log(1 − σ(f)) = −softplus(f). */
const minimax = {
  name: "minimax",
  discriminator: logisticD,
  generator: (fakeOut: tf.Tensor) => tf.neg(mean(tf.softplus(fakeOut))),
  pairsReal: false,
  gradientPenalty: 0,
  report: probability,
} as const;

/** Wasserstein critic (Gulrajani et al. 2017); the penalty term is added by the microtask. */
function wganGp(lambda: number) {
  return {
    name: "wgan-gp",
    discriminator: (realOut: tf.Tensor, fakeOut: tf.Tensor) =>
      tf.sub(mean(fakeOut), mean(realOut)) as tf.Scalar,
    generator: (fakeOut: tf.Tensor) => tf.neg(mean(fakeOut)),
    pairsReal: false,
    gradientPenalty: lambda,
    report: mean,
  } as const;
}

/** Hinge loss (Lim & Ye 2017; Miyato et al. 2018). */
const hinge = {
  name: "hinge",
  discriminator: (realOut: tf.Tensor, fakeOut: tf.Tensor) =>
    tf.add(mean(tf.relu(tf.sub(1, realOut))), mean(tf.relu(tf.add(1, fakeOut)))) as tf.Scalar,
  generator: (fakeOut: tf.Tensor) => tf.neg(mean(fakeOut)),
  pairsReal: false,
  gradientPenalty: 0,
  report: mean,
} as const;

/**
 * The relativistic pairing loss RpGAN (Jolicoeur-Martineau 2018; Huang et al.
 * 2024, "The GAN is dead; long live the GAN!", R3GAN): over pairs (x_r, x_f),
 * D minimises softplus(−(D(x_r) − D(x_f))) and G minimises
 * softplus(−(D(x_f) − D(x_r))). Both phases see real samples.
 */
const rpgan = {
  name: "rpgan",
  discriminator: (realOut: tf.Tensor, fakeOut: tf.Tensor) =>
    mean(tf.softplus(tf.sub(fakeOut, realOut))),
  generator: (fakeOut: tf.Tensor, realOut?: tf.Tensor) => {
    if (!realOut) throw new RangeError("rpgan's G loss needs D's outputs on real samples");
    return mean(tf.softplus(tf.sub(realOut, fakeOut)));
  },
  pairsReal: true,
  gradientPenalty: 0,
  report: mean,
} as const;

function base(cfg: LossConfig) {
  switch (cfg.name) {
    case "non-saturating":
      return nonSaturating;
    case "minimax":
      return minimax;
    case "wgan-gp":
      return wganGp(cfg.gpWeight);
    case "hinge":
      return hinge;
    case "rpgan":
      return rpgan;
  }
}

/** The loss a config names, with its R1/R2 settings. */
export function selectLoss(cfg: LossConfig): GanLoss {
  return { ...base(cfg), r1: cfg.r1, r2: cfg.r2, regEvery: cfg.regEvery };
}
