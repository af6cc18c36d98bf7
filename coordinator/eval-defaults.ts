// `agon eval`'s defaults, apart from coordinator/eval.ts so that `agon eval
// --help` can show them without loading TensorFlow.js.

/** Latent seed of the evaluation samples: the same for every run, so runs compare on equal noise. */
export const EVAL_SEED = 0x46d;
/** Generated samples per evaluation when `--n` is not given. */
export const EVAL_DEFAULT_N = 2000;
