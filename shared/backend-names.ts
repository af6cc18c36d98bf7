// The compute backends by name, apart from shared/backend.ts so that the CLI
// can list them (`--backend` choices, `--help`) without loading TensorFlow.js.

/** A compute backend; `auto` picks the fastest that initialises (shared/backend.ts). */
export type BackendName = "auto" | "tensorflow" | "webgpu" | "wasm" | "cpu";

/** Every BackendName, in the order `--help` lists them. */
export const BACKEND_NAMES: readonly BackendName[] = [
  "auto",
  "tensorflow",
  "webgpu",
  "wasm",
  "cpu",
];
