// Picks and activates the tfjs backend a process computes on: native TensorFlow when tfjs-node
// happens to be installed, else WebGPU when a GPU adapter is found, else blas (wasm with its
// GEMMs on the system's OpenBLAS) when OpenBLAS loads, else wasm (with our kernel fixes), else
// the plain JS cpu backend.

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";

import { BACKEND_NAMES, type BackendName } from "./backend-names.js";

export { BACKEND_NAMES, type BackendName };

// Native bindings are an opt-in the user installs; they are never dependencies of ours.
const TFJS_NODE_PACKAGES = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"];

const require = createRequire(import.meta.url);
let wasmPathsSet = false;

/** Sets up and activates a tfjs backend; returns the name tfjs reports as active (e.g. "tensorflow", "wasm", "cpu"). */
export async function initBackend(
  requested: BackendName,
  log: (line: string) => void = () => {},
): Promise<string> {
  switch (requested) {
    case "tensorflow": {
      const name = await initTensorflow();
      log(`backend: tensorflow (${installedTfjsNode()})`);
      return name;
    }
    case "webgpu":
      return initWebgpu(log, true);
    case "blas":
      return initBlas(log);
    case "wasm": {
      const name = await initWasm();
      log("backend: wasm (tfjs-backend-wasm, XNNPACK with 128-bit SIMD, one thread)");
      return name;
    }
    case "cpu": {
      const name = await initCpu();
      log("backend: cpu (tfjs's plain JavaScript kernels: slow, for tests and as a last resort)");
      return name;
    }
    case "auto":
      return initAuto(log);
    default:
      throw new Error(
        `unknown backend '${String(requested)}'; expected one of ${BACKEND_NAMES.join(", ")}`,
      );
  }
}

async function initAuto(log: (line: string) => void): Promise<string> {
  const native = installedTfjsNode();
  if (native != null) {
    const name = await initTensorflow();
    log(`backend: auto chose ${name} (${native} installed)`);
    return name;
  }
  let why = "tfjs-node not installed";
  try {
    // Without the Vulkan loader Dawn finds nothing (and says so on stderr): skip it quietly.
    if (!vulkanLoaderPresent()) throw new Error("no libvulkan.so.1, so no WebGPU adapter");
    // Mesa's Vulkan drivers come with desktop packages (Chromium pulls them in) and,
    // with no GPU to drive, print warnings when Dawn asks them: skip them quietly too.
    if (!gpuDevicePresent()) {
      throw new Error("no GPU device (/dev/dri/renderD*, /dev/nvidia*), so no WebGPU adapter");
    }
    const name = await initWebgpu(log, false);
    log(`backend: auto chose ${name} (${why})`);
    return name;
  } catch (err) {
    why += `, ${errorText(err)}`;
  }
  try {
    const { loadBlas } = await import("./blas.js");
    const blas = loadBlas();
    const name = await initBlas(log, false);
    log(
      `backend: auto chose ${name}: wasm with ${blas.label} for matrix products and convolutions (${why})`,
    );
    return name;
  } catch (err) {
    why += `, ${errorText(err).replace(/^backend 'blas' needs /, "no ")}`;
  }
  try {
    const name = await initWasm();
    log(`backend: auto chose ${name} (${why})`);
    return name;
  } catch (err) {
    const name = await initCpu();
    log(`backend: auto chose ${name} (${why}, wasm failed: ${errorText(err)})`);
    return name;
  }
}

let webgpuAdapter: string | null = null;
/** The OpenBLAS build and kernels blas runs on, once initBlas has loaded it. */
let blasLabel: string | null = null;

/**
 * A backend name as initBackend returned it, with what decides its numbers: "blas (OpenBLAS
 * 0.3.21 Haswell)", "webgpu (nvidia hopper …)"; other names as they are. Workers report it at
 * Join, so the coordinator can tell when a run's workers round differently.
 */
export function describeBackend(name: string): string {
  if (name === "blas" && blasLabel != null) return `blas (${blasLabel})`;
  if (name === "webgpu" && webgpuAdapter != null) return `webgpu (${webgpuAdapter})`;
  return name;
}

/**
 * WebGPU through Dawn (the optional npm package `webgpu`, which ships its
 * native addon): Vulkan on Linux, so an NVIDIA GPU needs only its driver and
 * libvulkan1, no CUDA. `navigator.gpu` must exist before tfjs-backend-webgpu
 * is imported, because it registers itself only when it sees one.
 */
async function initWebgpu(log: (line: string) => void, explicit: boolean): Promise<string> {
  if (webgpuAdapter === null) {
    let dawn: typeof import("webgpu");
    try {
      dawn = await import("webgpu");
    } catch (err) {
      throw new Error(
        `webgpu: the optional package \`webgpu\` is not installed or cannot load (${errorText(err).split("\n")[0]})`,
      );
    }
    // Without an adapter, Dawn and the Vulkan loader print their warnings straight to fd 2
    // (several lines and a C++ source location per attempt); ask in a child first, so that a
    // machine without one gets our line alone.
    const missing = webgpuAdapterMissing();
    if (typeof missing === "string") {
      throw new Error(
        `webgpu: no GPU adapter found (needs a GPU, its Vulkan driver and libvulkan1${missing ? `; Vulkan said: ${missing}` : ""})`,
      );
    }
    Object.assign(globalThis, dawn.globals);
    const gpu = dawn.create([]);
    let adapter: GPUAdapter | null = null;
    try {
      adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
    } catch (err) {
      throw new Error(`webgpu: no adapter (${errorText(err).split("\n")[0]})`);
    }
    if (!adapter) {
      throw new Error(
        "webgpu: no GPU adapter found (needs a GPU, its Vulkan driver and libvulkan1)",
      );
    }
    const info = adapter.info;
    if (
      !explicit &&
      (adapter.isFallbackAdapter || /llvmpipe|swiftshader/i.test(info.description))
    ) {
      throw new Error(`webgpu: only a software adapter (${info.description}), slower than wasm`);
    }
    webgpuAdapter =
      [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") ||
      "unnamed adapter";
    const nav = (globalThis as { navigator?: { gpu?: unknown } }).navigator;
    if (nav) Object.defineProperty(nav, "gpu", { value: gpu, configurable: true });
    else Object.defineProperty(globalThis, "navigator", { value: { gpu }, configurable: true });
    await import("@tensorflow/tfjs-backend-webgpu");
  }
  const name = await activate("webgpu");
  log(`backend: webgpu on ${webgpuAdapter}${explicit ? "" : " (found by auto)"}`);
  return name;
}

/**
 * Asks Dawn (npm `webgpu`) for an adapter in a child process (~0.3 s), so this process never
 * loads Dawn for the question: null when one is found; when none is, the first thing the
 * driver stack said on stderr ("" when nothing), as one line without Dawn's source locations;
 * undefined when the probe itself could not run (no `webgpu` package; initBackend then asks
 * in-process).
 */
export function webgpuAdapterMissing(): string | null | undefined {
  let cwd: string;
  try {
    cwd = dirname(require.resolve("webgpu/package.json"));
  } catch {
    return undefined;
  }
  const probe =
    "const { create, globals } = await import('webgpu'); Object.assign(globalThis, globals);" +
    "const a = await create([]).requestAdapter({ powerPreference: 'high-performance' });" +
    "process.exit(a ? 0 : 3);";
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", probe], {
    cwd,
    encoding: "utf8",
    timeout: 60_000,
  });
  if (r.status === 0) return null;
  if (r.status !== 3) return undefined;
  const said = (r.stderr ?? "")
    .split("\n")
    .map((l) => l.trim().replace(/^Warning:\s*/, ""))
    .filter((l) => l !== "" && !l.startsWith("at "));
  return said[0] ?? "";
}

async function initTensorflow(): Promise<string> {
  const pkg = installedTfjsNode();
  if (pkg == null) {
    throw new Error(
      "backend 'tensorflow' needs native TensorFlow: run `npm install @tensorflow/tfjs-node` " +
        "(or @tensorflow/tfjs-node-gpu for CUDA), or use --backend wasm",
    );
  }
  // A variable specifier keeps tsc from needing the package's types, which may be absent.
  await import(/* @vite-ignore */ pkg);
  return activate("tensorflow");
}

/** Stock wasm with our kernel fixes; `plain` also takes blas's kernels off (a process that switches). */
async function initWasm(plain = true): Promise<string> {
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  const { registerWasmKernels } = await import("./wasm-kernels.js");
  registerWasmKernels();
  if (plain) {
    const { unregisterBlasKernels } = await import("./blas-kernels.js");
    unregisterBlasKernels();
  }
  if (!wasmPathsSet) {
    // Under Node the .wasm binary is read from disk; point at the package's own dist folder
    // so bundling or a changed working directory cannot break the lookup.
    wasm.setWasmPaths(`${dirname(require.resolve("@tensorflow/tfjs-backend-wasm"))}/`);
    wasmPathsSet = true;
  }
  return activate("wasm");
}

/**
 * wasm with OpenBLAS for its GEMM-shaped kernels. Returns "blas" (tfjs itself reports "wasm").
 * @throws BlasUnavailableError (one line) when koffi or OpenBLAS cannot be loaded.
 */
async function initBlas(log: (line: string) => void, announce = true): Promise<string> {
  const { loadBlas } = await import("./blas.js");
  const blas = loadBlas();
  await initWasm(false);
  const { registerBlasKernels } = await import("./blas-kernels.js");
  registerBlasKernels(blas);
  if (announce) log(`backend: blas (wasm with ${blas.label} for matrix products and convolutions)`);
  // OpenBLAS takes a core type it does not know as a hint and picks its own: the bits then
  // follow the machine, which pinning was meant to prevent. Said once per process.
  const pinned = process.env.OPENBLAS_CORETYPE;
  if (pinned && pinned.toLowerCase() !== blas.coreName.toLowerCase() && blasLabel == null) {
    log(
      `backend: blas: OPENBLAS_CORETYPE=${pinned} but OpenBLAS runs its ${blas.coreName} kernels (a core type it does not know, or cannot run here); bits match only machines that run ${blas.coreName}`,
    );
  }
  blasLabel = blas.label;
  return "blas";
}

async function initCpu(): Promise<string> {
  await import("@tensorflow/tfjs-backend-cpu");
  const name = await activate("cpu");
  // The cpu backend nags "install tfjs-node" on its first tensor. We chose cpu on purpose,
  // and the nag's only switch is this flag (IS_TEST/PROD would also hide real warnings).
  const cpu = tf.findBackend("cpu") as unknown as { firstUse?: boolean } | null;
  if (cpu != null && "firstUse" in cpu) cpu.firstUse = false;
  return name;
}

async function activate(name: string): Promise<string> {
  if (tf.getBackend() !== name) {
    const ok = await tf.setBackend(name);
    if (!ok) throw new Error(`tfjs backend '${name}' failed to initialise`);
  }
  await tf.ready();
  return tf.getBackend();
}

/**
 * Whether "auto" could pick a GPU backend here (tfjs-node installed, or the
 * Vulkan loader WebGPU needs is present); false means it will pick wasm or cpu.
 * Loads nothing.
 */
export function gpuBackendPossible(): boolean {
  return installedTfjsNode() != null || vulkanLoaderPresent();
}

/** Whether the Vulkan loader Dawn needs can be found in the usual library folders. */
function vulkanLoaderPresent(env: NodeJS.ProcessEnv = process.env): boolean {
  const dirs = [
    ...(env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean),
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
  ];
  return dirs.some((d) => existsSync(join(d, "libvulkan.so.1")));
}

/**
 * Whether the machine shows a GPU device node a Vulkan driver could drive: a DRM render
 * node (/dev/dri/renderD128…: Mesa, AMD, Intel, NVIDIA's open driver), NVIDIA's
 * /dev/nvidia0… (what container runtimes pass in) or WSL's /dev/dxg. Never throws.
 */
function gpuDevicePresent(): boolean {
  const list = (dir: string) => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  return (
    list("/dev/dri").some((n) => n.startsWith("renderD")) ||
    list("/dev").some((n) => /^nvidia\d+$/.test(n) || n === "dxg")
  );
}

/** The tfjs-node flavour that is installed, or undefined; never loads it. */
function installedTfjsNode(): string | undefined {
  for (const pkg of TFJS_NODE_PACKAGES) {
    try {
      require.resolve(pkg);
      return pkg;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "MODULE_NOT_FOUND") throw err;
    }
  }
  return undefined;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
