// `bench step`: wall time of full training steps (kD D phases + kG G phases, each K
// microtasks + gradient aggregation + Adam), run exactly as coordinator/train.ts runs
// them but without writing files, for each model × backend.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs-core";
import { TrainingState } from "../coordinator/state.js";
import { type BackendName, initBackend } from "../shared/backend.js";
import { parseConfig, type RunConfig, readConfigFile } from "../shared/config.js";
import { type Dataset, loadDataset } from "../shared/data/index.js";
import type { MicrotaskResult } from "../shared/microtask.js";
import { Rng } from "../shared/rng.js";
import { MicrotaskRunner } from "../shared/runner.js";
import { datasetSpec, microtaskSpec, phasesPerStep } from "../shared/schedule.js";
import { reduceNode } from "../shared/tree.js";
import { type MachineInfo, machineHeader, machineInfo } from "./machine.js";
import { shapeImage } from "./shapes.js";
import { fmtMs, median, percentile, textTable } from "./stats.js";
import {
  interleave,
  KERNELS,
  type TorchReady,
  TorchServer,
  torchSpec,
  type VersusRow,
} from "./versus-torch.js";

const BACKENDS = ["tensorflow", "webgpu", "blas", "wasm", "cpu"] as const;
type Backend = (typeof BACKENDS)[number];

interface ModelCase {
  name: string;
  describe: string;
  /** Model and dataset sections of the run config. */
  raw: () => Record<string, unknown>;
  steps: number;
  warmup: number;
  /** Backends this model is skipped on unless --include-slow, and why. */
  slowOn?: Partial<Record<Backend, string>>;
}

const RING_YAML = fileURLToPath(new URL("../docs/examples/ring.yaml", import.meta.url));
const RESNET_YAML = fileURLToPath(
  new URL("../docs/examples/fashion-resnet-rpgan.yaml", import.meta.url),
);
const TORCH_SCRIPT = fileURLToPath(new URL("./torch_step.py", import.meta.url));
/** `python3` on PATH may be a pyenv without torch while Debian's python3-torch sits under /usr/bin. */
const PYTHONS = ["python3", "/usr/bin/python3"];

const MODELS: Record<string, ModelCase> = {
  mlp: {
    name: "mlp",
    describe: "MLP GAN on MNIST 28×28, G [256,512], D [512,256], latent 64",
    raw: () => ({
      model: { name: "mlp", latentDim: 64, gHidden: [256, 512], dHidden: [512, 256] },
      dataset: { name: "mnist", split: "train" },
    }),
    steps: 50,
    warmup: 3,
  },
  dcgan: {
    name: "dcgan",
    describe: "DCGAN on MNIST 28×28, gFilters = dFilters = 32, latent 64",
    raw: () => ({
      model: { name: "dcgan", latentDim: 64, gFilters: 32, dFilters: 32 },
      dataset: { name: "mnist", split: "train" },
    }),
    steps: 20,
    warmup: 2,
    slowOn: {
      cpu: "about a minute per step on 2 cores (the cpu backend's plain-JS conv gradients)",
    },
  },
  dcgan32: {
    name: "dcgan32",
    describe:
      "DCGAN on 32×32 RGB (generated shapes, bench/shapes.ts), gFilters = dFilters = 32, 4×4 kernels, latent 64",
    raw: () => ({
      model: { name: "dcgan", latentDim: 64, gFilters: 32, dFilters: 32, kernel: 4 },
      dataset: { name: "folder", path: shapesDir(32), channels: 3, size: 32 },
    }),
    steps: 10,
    warmup: 1,
    slowOn: { cpu: "minutes per step (the cpu backend's plain-JS conv gradients)" },
  },
  dcgan64: {
    name: "dcgan64",
    describe:
      "DCGAN on 64×64 RGB as docs/examples/shapes-rgb64.yaml (f 16, max 128, 4×4, spectral norm in D)",
    raw: () => ({
      model: {
        name: "dcgan",
        latentDim: 64,
        gFilters: 16,
        dFilters: 16,
        maxFilters: 128,
        kernel: 4,
        dNorm: "spectral",
      },
      dataset: { name: "folder", path: shapesDir(64), channels: 3, size: 64 },
    }),
    steps: 10,
    warmup: 1,
    slowOn: { cpu: "minutes per step (the cpu backend's plain-JS conv gradients)" },
  },
  resnet: {
    name: "resnet",
    describe:
      "R3GAN-style resnet of docs/examples/fashion-resnet-rpgan.yaml (widths [64,32,16], 1 block per stage, rpgan + R1/R2 on every 4th D phase) on Fashion-MNIST 28×28, latent 64; the median step is one without R1/R2, p90 one with",
    raw: () => {
      const file = readConfigFile(RESNET_YAML);
      return { model: file.model, loss: file.loss, dataset: file.dataset };
    },
    steps: 8,
    warmup: 1,
    slowOn: { cpu: "minutes per step (the cpu backend's plain-JS conv gradients)" },
  },
  ring: {
    name: "ring",
    describe: "small MLP GAN on the 8-Gaussian ring (model and dataset of docs/examples/ring.yaml)",
    raw: () => {
      const file = readConfigFile(RING_YAML);
      return { model: file.model, dataset: file.dataset };
    },
    steps: 100,
    warmup: 5,
  },
};

/**
 * A folder of 256 generated SIZE×SIZE shape PNGs (bench/shapes.ts) in the temp
 * dir, written on first use: the step's cost does not depend on the pictures.
 */
function shapesDir(size: number): string {
  const dir = join(tmpdir(), `agon-bench-shapes-${size}`);
  if (existsSync(join(dir, "shape-00255.png"))) return dir;
  mkdirSync(dir, { recursive: true });
  const rng = new Rng(2026);
  for (let i = 0; i < 256; i++)
    writeFileSync(join(dir, `shape-${String(i).padStart(5, "0")}.png`), shapeImage(rng, size));
  return dir;
}

const DEFAULT_BUDGET_S = 15;
const DEFAULT_ROUNDS = 6;
const DEFAULT_BLOCK_MS = 1500;
const MIN_MEASURED = 2;

export const STEP_USAGE = `usage: npm run bench -- step [options]

Times full training steps (one D phase + one G phase, each K microtasks + aggregation +
Adam, as \`agon train\` runs them, without writing files) per model × backend. When wasm or
blas is measured and a python with torch is found (python3 on PATH, else /usr/bin/python3), every model
with a PyTorch twin (bench/torch_step.py: non-saturating mlp and dcgan, resnet with rpgan + R1/R2) is then compared with
PyTorch on the CPU (1 thread, OpenBLAS) in interleaved blocks: tfjs (wasm, then blas) here and one warm
torch_step.py --serve process per CPU kernel choice (what OpenBLAS and oneDNN pick, and both
pinned to AVX2: OPENBLAS_CORETYPE=Haswell, DNNL_MAX_CPU_ISA=AVX2; OPENBLAS_L2_SIZE unset for
both; PyTorch's convolutions run on oneDNN) take turns, A B C A B C ..., and
each round gives a tfjs / pytorch ratio per kernel (median and spread printed).

options:
  --backends LIST    comma-separated, from ${BACKENDS.join(",")} (default: all; unavailable ones are skipped)
  --models LIST      comma-separated, from ${Object.keys(MODELS).join(",")} (default: all)
  --steps N          measured steps per cell (default: mlp ${MODELS.mlp.steps}, dcgan ${MODELS.dcgan.steps}, resnet ${MODELS.resnet.steps}, ring ${MODELS.ring.steps})
  --warmup N         unmeasured steps first (default: mlp ${MODELS.mlp.warmup}, dcgan ${MODELS.dcgan.warmup}, resnet ${MODELS.resnet.warmup}, ring ${MODELS.ring.warmup})
  --shards K         microtasks per phase (default 1)
  --batch B          global batch per phase, a multiple of K (default 64)
  --max-seconds S    per-cell time budget: stop measuring once S seconds of measured steps
                     have passed (at least ${MIN_MEASURED} steps), and warm up at most 1 step when one
                     step is slower than S/4 (default ${DEFAULT_BUDGET_S}; 0 = no limit). This is what keeps
                     cpu × dcgan (seconds per step) to a few steps.
  --profile N        after the tables, each cell's N slowest kernels in one profiled step
                     (tf.profile: kernel, ms, calls; default 0 = none)
  --include-slow     also measure the cells skipped by default (dcgan × cpu: about a minute
                     per step here, so 1 warm-up + ${MIN_MEASURED} steps take several minutes)
  --rounds N         rounds of the interleaved PyTorch comparison (default ${DEFAULT_ROUNDS}; 0 = none)
  --block-ms MS      about how long each side's block of steps takes (default ${DEFAULT_BLOCK_MS})
  --json FILE        also write machine facts and all samples as JSON
  -h, --help         this text`;

interface StepOptions {
  backends: Backend[];
  models: ModelCase[];
  steps: number | null;
  warmup: number | null;
  shards: number;
  batch: number;
  budgetS: number;
  includeSlow: boolean;
  profile: number;
  rounds: number;
  blockMs: number;
  json: string | null;
}

export interface CellResult {
  model: string;
  backend: string;
  shards: number;
  batch: number;
  params: { G: number; D: number };
  warmup: number;
  /** Wall time of each measured step, ms. */
  stepMs: number[];
  medianMs: number;
  p90Ms: number;
  /** Real samples consumed per second: batch × kD per step / median step time. */
  samplesPerSec: number;
  /** Medians over measured steps of: all D microtasks, all G microtasks, aggregation + Adam. */
  partsMedianMs: { D: number; G: number; update: number };
  /** Live tfjs tensors gained over the cell (should be 0). */
  tensorLeak: number;
  /**
   * From one extra, untimed step: tfjs kernels dispatched per phase (all K
   * microtasks, forward and backward; tf.profile's kernel list) and bytes
   * uploaded host→device per microtask (what the backend's `write` received:
   * weights, noise, real samples).
   */
  dispatch: {
    kernelsPerPhase: { D: number; G: number };
    uploadBytesPerMicrotask: { D: number; G: number };
    /**
     * That step's kernel time by kernel name (tf.profile's kernelTimeMs: wall time on the CPU
     * backends, so it includes what a kernel does in JS), largest first.
     */
    kernelMs: Array<{ kernel: string; ms: number; calls: number }>;
  };
  note?: string;
}

export interface StepReport {
  benchmark: "step";
  date: string;
  command: string;
  machine: MachineInfo;
  options: {
    backends: string[];
    models: string[];
    steps: number | null;
    warmup: number | null;
    shards: number;
    batch: number;
    maxSeconds: number;
    includeSlow: boolean;
  };
  unavailable: Array<{ backend: string; reason: string }>;
  skipped: Array<{ model: string; backend: string; reason: string }>;
  failed: Array<{ model: string; backend: string; reason: string }>;
  results: CellResult[];
  /**
   * tfjs (wasm and blas) against PyTorch on the CPU, interleaved (bench/versus-torch.ts): the
   * PyTorch processes' facts per kernel, and one row per model with a twin.
   */
  pytorch:
    | {
        python: string;
        kernels: Array<{ label: string } & Omit<TorchReady, "params">>;
        params: TorchReady["params"];
        rows: VersusRow[];
      }
    | { skipped: string };
}

class UsageError extends Error {}

function parseOptions(argv: string[]): StepOptions | null {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      backends: { type: "string" },
      models: { type: "string" },
      steps: { type: "string" },
      warmup: { type: "string" },
      shards: { type: "string" },
      batch: { type: "string" },
      "max-seconds": { type: "string" },
      "include-slow": { type: "boolean" },
      profile: { type: "string" },
      rounds: { type: "string" },
      "block-ms": { type: "string" },
      json: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return null;
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const list = (flag: string, value: string | undefined, allowed: readonly string[]) => {
    if (value === undefined) return [...allowed];
    const items = value
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    for (const item of items) {
      if (!allowed.includes(item)) {
        throw new UsageError(`--${flag}: unknown '${item}'; expected ${allowed.join(", ")}`);
      }
    }
    if (items.length === 0) throw new UsageError(`--${flag}: empty list`);
    return items;
  };
  const int = (flag: string, value: string | undefined, min: number): number | null => {
    if (value === undefined) return null;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) {
      throw new UsageError(`--${flag}: expected an integer >= ${min}, got '${value}'`);
    }
    return n;
  };
  const budget =
    values["max-seconds"] === undefined ? DEFAULT_BUDGET_S : Number(values["max-seconds"]);
  if (!Number.isFinite(budget) || budget < 0) {
    throw new UsageError(`--max-seconds: expected a number >= 0, got '${values["max-seconds"]}'`);
  }
  const shards = int("shards", values.shards, 1) ?? 1;
  const batch = int("batch", values.batch, 1) ?? 64;
  if (batch % shards !== 0) {
    throw new UsageError(`--batch ${batch} must be a multiple of --shards ${shards}`);
  }
  return {
    backends: list("backends", values.backends, BACKENDS) as Backend[],
    models: list("models", values.models, Object.keys(MODELS)).map((m) => MODELS[m]),
    steps: int("steps", values.steps, 1),
    warmup: int("warmup", values.warmup, 0),
    shards,
    batch,
    budgetS: budget,
    includeSlow: values["include-slow"] ?? false,
    profile: int("profile", values.profile, 0) ?? 0,
    rounds: int("rounds", values.rounds, 0) ?? DEFAULT_ROUNDS,
    blockMs: int("block-ms", values["block-ms"], 1) ?? DEFAULT_BLOCK_MS,
    json: values.json ?? null,
  };
}

function configFor(mc: ModelCase, opts: StepOptions, totalSteps: number): RunConfig {
  return parseConfig(
    {
      ...mc.raw(),
      run: { id: "bench", dir: "runs/bench" },
      seed: 1,
      shards: opts.shards,
      batch: opts.batch,
      steps: totalSteps,
    },
    `bench ${mc.name}`,
  );
}

interface StepTiming {
  total: number;
  D: number;
  G: number;
  update: number;
}

/**
 * Runs one step like trainStep, counting per phase the kernels tfjs
 * dispatches (tf.profile) and the bytes handed to the backend's `write` (host
 * to device; on wasm, into the wasm heap). Untimed: profiling slows kernels.
 */
async function dispatchStep(
  cfg: RunConfig,
  runner: MicrotaskRunner,
  state: TrainingState,
): Promise<CellResult["dispatch"]> {
  const backend = tf.backend() as unknown as {
    write: (values: unknown, ...rest: unknown[]) => unknown;
  };
  const original = backend.write;
  let uploaded = 0;
  backend.write = function (this: unknown, values: unknown, ...rest: unknown[]) {
    if (ArrayBuffer.isView(values)) uploaded += values.byteLength;
    return original.call(this, values, ...rest);
  };
  const out: CellResult["dispatch"] = {
    kernelsPerPhase: { D: 0, G: 0 },
    uploadBytesPerMicrotask: { D: 0, G: 0 },
    kernelMs: [],
  };
  const byKernel = new Map<string, { ms: number; calls: number }>();
  try {
    for (let p = 0; p < phasesPerStep(cfg); p++) {
      const kind = state.kind;
      const root = { lo: 0, hi: cfg.shards };
      uploaded = 0;
      let result: MicrotaskResult | undefined;
      const profile = await tf.profile(async () => {
        result = await reduceNode(root, cfg.transport.gradients, (shard) =>
          runner.runAsync(
            microtaskSpec(cfg, state.step, state.phase, shard),
            state.weights.G,
            state.weights.D,
            { G: `v${state.versions.G}`, D: `v${state.versions.D}` },
          ),
        );
        return [];
      });
      // The last phase of a kind stands for the kind (kD > 1 repeats the same work).
      out.kernelsPerPhase[kind] = profile.kernels.length;
      for (const k of profile.kernels) {
        const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
        const entry = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
        entry.ms += ms;
        entry.calls += 1;
        byKernel.set(k.name, entry);
      }
      out.uploadBytesPerMicrotask[kind] = uploaded / cfg.shards;
      state.applyPhase([{ ...root, result: result! }]);
    }
  } finally {
    backend.write = original;
  }
  out.kernelMs = [...byKernel]
    .map(([kernel, v]) => ({ kernel, ms: v.ms, calls: v.calls }))
    .sort((a, b) => b.ms - a.ms);
  return out;
}

/** One training step, the loop body of coordinator/train.ts without the file writes. */
async function trainStep(
  cfg: RunConfig,
  runner: MicrotaskRunner,
  state: TrainingState,
): Promise<StepTiming> {
  const t: StepTiming = { total: 0, D: 0, G: 0, update: 0 };
  const start = performance.now();
  for (let p = 0; p < phasesPerStep(cfg); p++) {
    const kind = state.kind;
    const t0 = performance.now();
    const root = { lo: 0, hi: cfg.shards };
    const result = await reduceNode(root, cfg.transport.gradients, (shard) =>
      runner.runAsync(
        microtaskSpec(cfg, state.step, state.phase, shard),
        state.weights.G,
        state.weights.D,
        { G: `v${state.versions.G}`, D: `v${state.versions.D}` },
      ),
    );
    const t1 = performance.now();
    state.applyPhase([{ ...root, result }]);
    t[kind] += t1 - t0;
    t.update += performance.now() - t1;
  }
  t.total = performance.now() - start;
  return t;
}

async function runCell(
  mc: ModelCase,
  backend: string,
  opts: StepOptions,
  datasets: Map<string, Promise<Dataset>>,
  log: (line: string) => void,
): Promise<CellResult> {
  const steps = opts.steps ?? mc.steps;
  const warmup = opts.warmup ?? mc.warmup;
  const cfg = configFor(mc, opts, steps + warmup);
  const key = JSON.stringify(datasetSpec(cfg));
  if (!datasets.has(key)) datasets.set(key, loadDataset(datasetSpec(cfg)));
  const dataset = await datasets.get(key)!;
  const runner = new MicrotaskRunner(cfg, dataset);
  const state = new TrainingState(cfg, runner.model);
  const budgetMs = opts.budgetS * 1000;
  const tensorsBefore = tf.memory().numTensors;
  const notes: string[] = [];

  let warmed = 0;
  for (let i = 0; i < warmup; i++) {
    const t = await trainStep(cfg, runner, state);
    warmed++;
    if (budgetMs > 0 && t.total > budgetMs / 4 && i + 1 < warmup) {
      notes.push(`warm-up cut to ${warmed} (step ${fmtMs(t.total)} ms > budget/4)`);
      break;
    }
  }
  const timings: StepTiming[] = [];
  let spent = 0;
  for (let i = 0; i < steps; i++) {
    const t = await trainStep(cfg, runner, state);
    timings.push(t);
    spent += t.total;
    if (budgetMs > 0 && spent > budgetMs && timings.length >= MIN_MEASURED && i + 1 < steps) {
      notes.push(`stopped at ${timings.length}/${steps} steps (${opts.budgetS} s budget)`);
      break;
    }
  }
  const dispatch = await dispatchStep(cfg, runner, state);
  runner.release();
  const tensorLeak = tf.memory().numTensors - tensorsBefore;
  if (tensorLeak !== 0) notes.push(`${tensorLeak} tensors leaked`);

  const stepMs = timings.map((t) => t.total);
  const med = median(stepMs);
  const result: CellResult = {
    model: mc.name,
    backend,
    shards: cfg.shards,
    batch: cfg.batch,
    params: { G: runner.model.g.size, D: runner.model.d.size },
    warmup: warmed,
    stepMs: stepMs.map((v) => Math.round(v * 1000) / 1000),
    medianMs: med,
    p90Ms: percentile(stepMs, 90),
    samplesPerSec: (cfg.batch * cfg.schedule.kD) / (med / 1000),
    partsMedianMs: {
      D: median(timings.map((t) => t.D)),
      G: median(timings.map((t) => t.G)),
      update: median(timings.map((t) => t.update)),
    },
    tensorLeak,
    dispatch,
  };
  if (notes.length > 0) result.note = notes.join("; ");
  log(
    `  ${mc.name} × ${backend}: median ${fmtMs(med)} ms over ${stepMs.length} steps` +
      (result.note ? ` (${result.note})` : ""),
  );
  return result;
}

/** The first python that can `import torch`, or why none could. */
function findTorchPython(): { python: string } | { skipped: string } {
  const tried: string[] = [];
  for (const python of PYTHONS) {
    const r = spawnSync(python, ["-c", "import torch"], { encoding: "utf8", timeout: 60_000 });
    if (r.status === 0) return { python };
    const why = r.error
      ? r.error.message
      : (r.stderr.trim().split("\n").at(-1) ?? `exit ${r.status}`);
    tried.push(`${python}: ${why}`);
  }
  return { skipped: `no python with torch (${tried.join("; ")})` };
}

/**
 * The interleaved comparison (see STEP_USAGE) for the models with a PyTorch twin:
 * tfjs on wasm in this process against one torch_step.py --serve per kernel.
 */
async function versusTorch(
  opts: StepOptions,
  datasets: Map<string, Promise<Dataset>>,
  log: (line: string) => void,
): Promise<StepReport["pytorch"]> {
  if (opts.rounds === 0) return { skipped: "--rounds 0" };
  // The CPU backends with a twin comparison: wasm, and blas (wasm's GEMMs on OpenBLAS). Both are
  // tfjs's wasm backend with different kernels registered, so switching between them is cheap
  // and their tensors stay valid.
  const tfjsBackends = (["wasm", "blas"] as const).filter((b) => opts.backends.includes(b));
  if (tfjsBackends.length === 0) return { skipped: "neither wasm nor blas measured (--backends)" };
  const found = findTorchPython();
  if ("skipped" in found) return found;
  let selected = "";
  const use = async (backend: "wasm" | "blas") => {
    if (selected !== backend) await initBackend(backend);
    selected = backend;
  };
  const sides: Array<{
    name: string;
    backend: "wasm" | "blas";
    step: () => Promise<number>;
    release: () => void;
  }> = [];
  const specs: Record<string, unknown> = {};
  for (const backend of tfjsBackends) {
    try {
      await use(backend);
    } catch {
      continue; // said when its cells were measured
    }
    for (const mc of opts.models) {
      const warmup = opts.warmup ?? mc.warmup;
      const cfg = configFor(mc, opts, 1_000_000);
      const runner = await runnerFor(cfg, datasets);
      const spec = torchSpec(cfg, runner.model.sampleShape, warmup);
      if (spec === null || cfg.shards !== 1) {
        runner.release();
        continue;
      }
      const state = new TrainingState(cfg, runner.model);
      for (let i = 0; i < warmup; i++) await trainStep(cfg, runner, state);
      specs[mc.name] = spec;
      sides.push({
        name: mc.name,
        backend,
        step: async () => {
          await use(backend);
          return (await trainStep(cfg, runner, state)).total;
        },
        release: () => runner.release(),
      });
    }
  }
  if (sides.length === 0) return { skipped: "no model with a PyTorch twin (or K > 1)" };
  log(
    `pytorch: starting ${KERNELS.length} warm ${found.python} processes (${KERNELS.map((k) => k.label).join(", ")})`,
  );
  const servers: TorchServer[] = [];
  try {
    for (const k of KERNELS)
      servers.push(await TorchServer.start(found.python, TORCH_SCRIPT, specs, k));
    const rows: VersusRow[] = [];
    for (const side of sides) {
      log(`  ${side.name} (${side.backend}): ${opts.rounds} interleaved rounds`);
      const row = await interleave(side.name, side.step, servers, opts.rounds, opts.blockMs);
      rows.push({ ...row, backend: side.backend });
      side.release();
    }
    return {
      python: found.python,
      kernels: servers.map((s, i) => {
        const { params: _params, ...facts } = s.ready;
        return { label: KERNELS[i].label, ...facts };
      }),
      params: servers[0].ready.params,
      rows,
    };
  } finally {
    for (const s of servers) s.close();
  }
}

async function runnerFor(
  cfg: RunConfig,
  datasets: Map<string, Promise<Dataset>>,
): Promise<MicrotaskRunner> {
  const key = JSON.stringify(datasetSpec(cfg));
  if (!datasets.has(key)) datasets.set(key, loadDataset(datasetSpec(cfg)));
  return new MicrotaskRunner(cfg, await datasets.get(key)!);
}

/** The interleaved comparison as a table: per model, tfjs and PyTorch per kernel, the ratio's median and range. */
export function formatVersusTable(
  torch: Exclude<StepReport["pytorch"], { skipped: string }>,
  results: readonly CellResult[],
): string {
  const header = [
    "model",
    "tfjs backend",
    "params G+D (tfjs / torch)",
    "rounds",
    "tfjs ms/step",
    ...torch.kernels.flatMap((k) => [`torch ${k.corename ?? k.label} ms`, `ratio (min–max)`]),
  ];
  const body = torch.rows.map((r) => {
    const cell = results.find((c) => c.model === r.model && c.backend === r.backend);
    const p = torch.params[r.model];
    const ours = cell ? String(cell.params.G + cell.params.D) : "?";
    return [
      r.model,
      r.backend ?? "wasm",
      `${ours} / ${p ? p.G + p.D : "?"}`,
      String(r.tfjsMs.length),
      fmtMs(median(r.tfjsMs)),
      ...r.torch.flatMap((k) => [
        fmtMs(median(k.ms)),
        `${median(k.ratios).toFixed(2)}× (${Math.min(...k.ratios).toFixed(2)}–${Math.max(...k.ratios).toFixed(2)})`,
      ]),
    ];
  });
  return [
    `pytorch ${torch.kernels[0]?.torch} (${torch.python}), ${torch.kernels[0]?.threads} thread(s), ` +
      `BLAS ${torch.kernels[0]?.blas}; kernels: ` +
      torch.kernels
        .map(
          (k) =>
            `${k.label} → openblas_get_corename() = ${k.corename}, oneDNN ${k.onednn ? `${k.onednn.isa} (convolutions: ${k.onednn.conv})` : "not used"}`,
        )
        .join("; "),
    "tfjs / pytorch per interleaved round (A B C A B C ...): median (min–max); lower is better, 1 = parity",
    textTable(header, body, new Set([3, 4, 5, 6, 7, 8])),
  ].join("\n");
}

function errorLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split("\n")[0];
}

export function formatStepTable(results: readonly CellResult[]): string {
  const header = [
    "model",
    "backend",
    "K",
    "median ms/step",
    "p90 ms/step",
    "samples/s",
    "steps",
    "D ms",
    "G ms",
    "update ms",
    "kernels/phase D/G",
    "h→d KiB/microtask D/G",
  ];
  const rows = results.map((r) => [
    r.model,
    r.backend,
    String(r.shards),
    fmtMs(r.medianMs),
    fmtMs(r.p90Ms),
    r.samplesPerSec.toFixed(r.samplesPerSec >= 100 ? 0 : 1),
    String(r.stepMs.length),
    fmtMs(r.partsMedianMs.D),
    fmtMs(r.partsMedianMs.G),
    fmtMs(r.partsMedianMs.update),
    `${r.dispatch.kernelsPerPhase.D}/${r.dispatch.kernelsPerPhase.G}`,
    `${(r.dispatch.uploadBytesPerMicrotask.D / 1024).toFixed(0)}/${(r.dispatch.uploadBytesPerMicrotask.G / 1024).toFixed(0)}`,
  ]);
  return textTable(header, rows, new Set([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
}

export async function runStepBench(argv: string[]): Promise<number> {
  let opts: StepOptions | null;
  try {
    opts = parseOptions(argv);
  } catch (err) {
    process.stderr.write(`bench step: ${errorLine(err)}\n\n${STEP_USAGE}\n`);
    return 2;
  }
  if (opts == null) {
    process.stdout.write(`${STEP_USAGE}\n`);
    return 0;
  }
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const machine = machineInfo();
  out(machineHeader(machine));
  out(
    `bench step: global batch ${opts.batch}, K=${opts.shards} shard(s) (${opts.batch / opts.shards} samples per microtask), ` +
      `one step = 1 D phase + 1 G phase, time budget ${opts.budgetS > 0 ? `${opts.budgetS} s` : "none"} per cell`,
  );
  for (const mc of opts.models) out(`  ${mc.name}: ${mc.describe}`);
  out("");

  const report: StepReport = {
    benchmark: "step",
    date: new Date().toISOString(),
    command: ["npm run bench --", "step", ...argv].join(" "),
    machine,
    options: {
      backends: opts.backends,
      models: opts.models.map((m) => m.name),
      steps: opts.steps,
      warmup: opts.warmup,
      shards: opts.shards,
      batch: opts.batch,
      maxSeconds: opts.budgetS,
      includeSlow: opts.includeSlow,
    },
    unavailable: [],
    skipped: [],
    failed: [],
    results: [],
    pytorch: { skipped: "not run" },
  };
  const datasets = new Map<string, Promise<Dataset>>();
  for (const backend of opts.backends) {
    let active: string;
    try {
      active = await initBackend(backend as BackendName);
    } catch (err) {
      const reason = errorLine(err);
      out(`${backend}: not available: ${reason}`);
      report.unavailable.push({ backend, reason });
      continue;
    }
    log(`${backend}: measuring (tfjs reports '${active}')`);
    for (const mc of opts.models) {
      const slow = mc.slowOn?.[backend];
      if (slow && !opts.includeSlow) {
        out(`${mc.name} × ${backend}: skipped by default: ${slow}; --include-slow measures it`);
        report.skipped.push({ model: mc.name, backend, reason: slow });
        continue;
      }
      try {
        report.results.push(await runCell(mc, active, opts, datasets, log));
      } catch (err) {
        const reason = errorLine(err);
        out(`${mc.name} × ${backend}: failed: ${reason}`);
        report.failed.push({ model: mc.name, backend, reason });
      }
    }
  }

  // After the tfjs cells, never beside them: both sides get the whole machine in turn.
  report.pytorch = await versusTorch(opts, datasets, log);

  const order = opts.models.map((m) => m.name);
  report.results.sort((a, b) => order.indexOf(a.model) - order.indexOf(b.model));
  out("");
  out(formatStepTable(report.results));
  if (opts.profile > 0) {
    for (const r of report.results) {
      out("");
      out(`${r.model} × ${r.backend}: slowest kernels in one profiled step (ms, calls)`);
      for (const k of r.dispatch.kernelMs.slice(0, opts.profile)) {
        out(
          `  ${k.kernel.padEnd(24)} ${k.ms.toFixed(1).padStart(8)} ${String(k.calls).padStart(5)}`,
        );
      }
    }
  }
  const noted = report.results.filter((r) => r.note);
  if (noted.length > 0) {
    out("");
    for (const r of noted) out(`note: ${r.model} × ${r.backend}: ${r.note}`);
  }
  out("");
  if ("skipped" in report.pytorch) out(`pytorch: skipped: ${report.pytorch.skipped}`);
  else out(formatVersusTable(report.pytorch, report.results));
  out("");
  out(
    "samples/s = real samples per step (batch × kD) / median step time; D/G ms = the phase's " +
      "microtasks, update ms = aggregation + Adam (medians).",
  );
  if (opts.json) {
    writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
    out(`wrote ${opts.json}`);
  }
  return report.failed.length > 0 ? 1 : 0;
}
