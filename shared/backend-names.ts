// The compute backends by name, apart from shared/backend.ts so that the CLI
// can list them (`--backend` choices, `--help`) without loading TensorFlow.js.

/**
 * A compute backend; `auto` picks the fastest that initialises (shared/backend.ts). `blas` is
 * wasm with its matrix products and convolutions on the system's OpenBLAS (shared/blas-kernels.ts).
 */
export type BackendName = "auto" | "tensorflow" | "webgpu" | "blas" | "wasm" | "cpu";

/** Every BackendName, in the order `--help` lists them. */
export const BACKEND_NAMES: readonly BackendName[] = [
  "auto",
  "tensorflow",
  "webgpu",
  "blas",
  "wasm",
  "cpu",
];
