// The system's OpenBLAS, called through koffi (a C FFI with prebuilt binaries) for the `blas`
// backend's matrix products. Loaded only when that backend is asked for; absent either part,
// `loadBlas` throws one line that says what to install.

import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/** CBLAS's enums (cblas.h): row-major storage, and whether an operand is transposed. */
const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

/** Where Debian, Ubuntu, Fedora and Alpine put OpenBLAS (pthread build first), then the soname. */
const LIBRARY_CANDIDATES = [
  "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
  "/usr/lib64/libopenblas.so.0",
  "/usr/lib/libopenblas.so.0",
  "libopenblas.so.0",
];

/** An OpenBLAS call failed to load, or the library is not OpenBLAS. Message: one line. */
export class BlasUnavailableError extends Error {
  override name = "BlasUnavailableError";
}

/**
 * Single-precision GEMM on row-major matrices, C = op(A)·op(B) (beta 0) or C += op(A)·op(B)
 * (beta 1), op = transpose when the flag is set; m × k times k × n, leading dimensions in
 * floats. Operands may be views into a wasm heap (any Float32Array, at its byteOffset).
 * Single-threaded: one call's bits depend only on its operands, their shapes and the OpenBLAS
 * build and core type (`label`), never on timing.
 */
export interface Blas {
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: 0 | 1,
    c: Float32Array,
    ldc: number,
  ): void;
  /**
   * Single-precision GEMV on a row-major m × n matrix: y = op(A)·x, op = transpose when set
   * (y has n values then, else m). Used for sums over an axis (x all ones): unlike a GEMM with
   * one row it packs nothing, ~4× faster. Bits as sgemm's: operands, shapes, build, core type.
   */
  sgemv(
    trans: boolean,
    m: number,
    n: number,
    a: Float32Array,
    lda: number,
    x: Float32Array,
    y: Float32Array,
  ): void;
  /** e.g. "OpenBLAS 0.3.21 Haswell": the library version and the kernel set it runs. */
  readonly label: string;
  /** The kernel set alone, as openblas_get_corename() says it: "Haswell", "Cooperlake", … */
  readonly coreName: string;
  /** The shared object that was loaded. */
  readonly path: string;
}

/**
 * What we use of koffi (typed here, so that building Agon never needs the optional package):
 * load a shared library, and declare its functions from C prototypes.
 */
interface Koffi {
  load(path: string): KoffiLibrary;
}
interface KoffiLibrary {
  // biome-ignore lint/suspicious/noExplicitAny: koffi's functions take and return whatever the prototype says.
  func(prototype: string): (...args: any[]) => any;
}

let loaded: Blas | undefined;

/**
 * Loads OpenBLAS once per thread (koffi in a worker thread loads its own handle) and sets it to
 * one thread: Agon parallelises across worker processes, and a threaded GEMM would compete with
 * them for cores. OPENBLAS_CORETYPE (read by OpenBLAS itself) pins the kernel set, so machines
 * with different CPUs can compute the same bits.
 * @throws BlasUnavailableError when koffi or OpenBLAS is missing (message names what to install).
 */
export function loadBlas(): Blas {
  if (loaded != null) return loaded;
  let koffi: Koffi;
  try {
    koffi = require("koffi") as Koffi;
  } catch (err) {
    throw new BlasUnavailableError(
      `backend 'blas' needs the npm package koffi (an optional dependency of agon; run \`npm install koffi\`): ${firstLine(err)}`,
    );
  }
  let lib: KoffiLibrary | undefined;
  let path = "";
  let reason = "";
  const override = process.env.AGON_OPENBLAS;
  for (const candidate of override ? [override] : LIBRARY_CANDIDATES) {
    try {
      lib = koffi.load(candidate);
      path = candidate;
      break;
    } catch (err) {
      reason = firstLine(err); // not there: try the next place
    }
  }
  if (lib == null) {
    throw new BlasUnavailableError(
      override
        ? `backend 'blas': AGON_OPENBLAS=${override} could not be loaded as a shared library (${reason})`
        : "backend 'blas' needs OpenBLAS (Debian/Ubuntu: apt-get install libopenblas0-pthread; or set AGON_OPENBLAS to its libopenblas.so.0)",
    );
  }
  let sgemm: (...args: unknown[]) => void;
  let sgemv: (...args: unknown[]) => void;
  let corename: () => string;
  let config: () => string;
  try {
    sgemm = lib.func(
      "void cblas_sgemm(int, int, int, int, int, int, float, const float *, int, const float *, int, float, _Inout_ float *, int)",
    );
    sgemv = lib.func(
      "void cblas_sgemv(int, int, int, int, float, const float *, int, const float *, int, float, _Inout_ float *, int)",
    );
    corename = lib.func("const char *openblas_get_corename()");
    config = lib.func("const char *openblas_get_config()");
    const setThreads = lib.func("void openblas_set_num_threads(int)");
    setThreads(1);
  } catch (err) {
    throw new BlasUnavailableError(
      `backend 'blas': ${override ? "AGON_OPENBLAS=" : ""}${path} is not OpenBLAS (no cblas_sgemm/openblas_get_corename): ${firstLine(err)}`,
    );
  }
  const version = /OpenBLAS\s+([\d.]+)/.exec(config())?.[1] ?? "?";
  const coreName = corename();
  const label = `OpenBLAS ${version} ${coreName}`;
  loaded = {
    label,
    coreName,
    path,
    sgemm(transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc) {
      if (m === 0 || n === 0) return;
      sgemm(
        ROW_MAJOR,
        transA ? TRANS : NO_TRANS,
        transB ? TRANS : NO_TRANS,
        m,
        n,
        k,
        1,
        a,
        lda,
        b,
        ldb,
        beta,
        c,
        ldc,
      );
    },
    sgemv(trans, m, n, a, lda, x, y) {
      const out = trans ? n : m;
      if (out === 0) return;
      if ((trans ? m : n) === 0) {
        y.fill(0, 0, out);
        return;
      }
      sgemv(ROW_MAJOR, trans ? TRANS : NO_TRANS, m, n, 1, a, lda, x, 1, 0, y, 1);
    },
  };
  return loaded;
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}
