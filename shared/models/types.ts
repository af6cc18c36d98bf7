// What every architecture declares: its trainable parameters, its
// non-trainable state, and how it computes. The flat Float32Array of a network
// is its parameters followed by its state, in declaration order; that array is
// what travels to workers, what checkpoints hold and what weight hashes cover.
import type * as tf from "@tensorflow/tfjs-core";

/** How an initial value is drawn (pure JS, from the run seed; see weights.ts). */
export type InitSpec =
  | { kind: "zeros" }
  | { kind: "ones" }
  | { kind: "normal"; std: number; mean?: number }
  | { kind: "glorot"; fanIn: number; fanOut: number }
  /** A random unit vector (spectral norm's power-iteration start, as PyTorch's `u`). */
  | { kind: "unit" };

/** One named tensor of a network: a trainable parameter or a piece of state. */
export interface ParamSpec {
  /** e.g. "g.dense0.kernel"; unique within a network. */
  name: string;
  shape: number[];
  init: InitSpec;
}

/**
 * How a network is run. Training mode: batch norm normalises with the batch's
 * own statistics and pushes them onto `report`; eval mode (samples, eval,
 * export): it uses the running statistics held in the network's state.
 */
export interface ApplyContext {
  training: boolean;
  /**
   * Where a training-mode pass pushes what the coordinator folds into the state
   * (batch norm: per layer, the channel means then the channel means of
   * squares). The tensors are kept (tf.keep); the caller disposes them.
   */
  report?: tf.Tensor[];
  /**
   * Conditional models (config `model.conditional`): the samples' classes,
   * int32 [b] in [0, classes). G makes a sample of class labels[i] from row i
   * of z; D judges sample i as of class labels[i]. Unconditional models ignore it.
   */
  labels?: tf.Tensor;
}

export interface Network {
  /** "G" or "D". */
  role: "G" | "D";
  /** Trainable parameters: the gradient and Adam's moments cover exactly these. */
  params: ParamSpec[];
  /** Non-trainable state (batch-norm running statistics, spectral-norm vectors), after params. */
  state: ParamSpec[];
  /** Float32 values of the parameters: the gradient's length. */
  trainableSize: number;
  /** Float32 values of parameters plus state: the flat array that travels and is checkpointed. */
  size: number;
  /**
   * Values a training pass of this network reports in its own phase, appended
   * to the microtask's gradient (0 when it has nothing to report).
   */
  reportSize: number;
  /**
   * G: [b, latentDim] → [b, ...sampleShape]; D: [b, ...sampleShape] → [b, 1] logits.
   * `weights` are the tensors of params then state (see toTensors).
   */
  apply(weights: tf.Tensor[], input: tf.Tensor, ctx: ApplyContext): tf.Tensor;
  /**
   * Folds reports (the coordinator passes one: the phase's mean report from
   * the reduction tree, with `counts[0]` = the phase batch; `counts[k]` samples each)
   * into the state part of `flat`, in place, in double precision.
   */
  absorbReports(flat: Float32Array, reports: Float32Array[], counts: number[]): void;
  /**
   * Advances state that depends on the weights alone (one spectral-norm power
   * iteration), in place, after an optimizer update. Pure JS, so every
   * process gets the same bits.
   */
  advanceState(flat: Float32Array): void;
}

export interface GanModel {
  latentDim: number;
  /** Classes of a conditional model (G and D read ApplyContext.labels); 0: unconditional. */
  classes: number;
  sampleShape: number[];
  g: Network;
  d: Network;
}
