// Instances of the shared/wasm modules that keep their own memory (Adam, the EMA): a few
// resident float32 arrays (an optimizer's moments, the EMA's weights) that live in the
// module's memory for good, and scratch chunks that the caller's arrays are copied through.

/** Values per scratch chunk: callers copy their arrays in and out in pieces this long. */
export const CHUNK = 16384;
const PAGE = 65536;
const compiled = new Map<Uint8Array, WebAssembly.Module>();

/** The compiled module of one of shared/wasm's `-bytes.ts`, compiled once per process. */
export function compiledModule(bytes: Uint8Array<ArrayBuffer>): WebAssembly.Module {
  let mod = compiled.get(bytes);
  if (mod == null) {
    mod = new WebAssembly.Module(bytes);
    compiled.set(bytes, mod);
  }
  return mod;
}

/** A module instance with its resident arrays and scratch chunks laid out in its memory. */
export interface FlatInstance<T> {
  exports: T;
  /** `resident` arrays of `size` float32 values each, 16-byte aligned. */
  resident: Float32Array[];
  /** `scratch` arrays of CHUNK float32 values each. */
  scratch: Float32Array[];
}

/**
 * Instantiates `bytes` (a module exporting its memory as "memory") and grows that memory once
 * to hold `resident` arrays of `size` values and `scratch` chunks; it never grows again, so
 * the views stay valid. Returns null when the engine will not let one memory hold that much
 * (callers then run their JavaScript loop on ordinary arrays).
 */
export function flatInstance<T>(
  bytes: Uint8Array<ArrayBuffer>,
  size: number,
  resident: number,
  scratch: number,
): FlatInstance<T> | null {
  const exports = new WebAssembly.Instance(compiledModule(bytes), {}).exports as {
    memory: WebAssembly.Memory;
  };
  const vec = Math.ceil((size * 4) / 16) * 16;
  const need = resident * vec + scratch * CHUNK * 4;
  const have = exports.memory.buffer.byteLength;
  try {
    if (need > have) exports.memory.grow(Math.ceil((need - have) / PAGE));
  } catch {
    return null;
  }
  const buf = exports.memory.buffer;
  return {
    exports: exports as unknown as T,
    resident: Array.from({ length: resident }, (_, k) => new Float32Array(buf, k * vec, size)),
    scratch: Array.from(
      { length: scratch },
      (_, k) => new Float32Array(buf, resident * vec + k * CHUNK * 4, CHUNK),
    ),
  };
}
