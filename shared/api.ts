// Agon as a library: `import { train, Coordinator, Worker, loadCheckpoint,
// sample } from "agon"`. These are the functions, classes and option types the
// `agon` CLI itself runs (shared/cli/commands/), so a program gets the same
// runs, checkpoints and weights bit for bit. Reference: docs/API.md.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  CheckpointError,
  latestValidCheckpoint,
  type Manifest,
  readCheckpoint,
} from "../coordinator/checkpoint.js";
import { runSample, type SampleOptions, type SampleResult } from "../coordinator/export.js";
import {
  type TrainOptions,
  type TrainResult,
  train as trainInProcess,
} from "../coordinator/train.js";
import { parseConfig, type RunConfig, type RunConfigInput } from "./config.js";

export { CheckpointError, type Manifest } from "../coordinator/checkpoint.js";
export {
  ExportError,
  exportedModelFiles,
  type SampleOptions,
  type SampleResult,
  sampleNoise,
} from "../coordinator/export.js";
export {
  type CoordinatorOptions,
  CoordinatorServer as Coordinator,
} from "../coordinator/server.js";
export type { TrainOptions, TrainResult } from "../coordinator/train.js";
export { Worker, type WorkerOptions } from "../worker/worker.js";
export { BACKEND_NAMES, type BackendName } from "./backend-names.js";
export {
  ConfigError,
  loadConfig,
  parseConfig,
  type RunConfig,
  type RunConfigInput,
} from "./config.js";
export { DatasetError } from "./data/index.js";
export { weightsHash } from "./hash.js";
export { NatsError } from "./nats.js";
export { SecurityError } from "./security.js";

/**
 * Trains `config` (a RunConfig, or an object that parseConfig completes with
 * defaults) in this process, as `agon train` does: resumes from the
 * newest valid checkpoint in `config.run.dir` unless `fresh`, writes
 * checkpoints, sample grids, metrics.jsonl and summary.json there, and
 * resolves when step `config.steps` is done. The weights are the same bit for
 * bit as `agon local` with any number of workers on the same backend.
 *
 * `options.backend` defaults to "auto"; `log` (one line at a time) and
 * `progressOut` default to stderr. Throws ConfigError for a config that does
 * not parse, CheckpointError when the newest checkpoint was written with a
 * different config (unless `force`), DatasetError when the data cannot be read.
 */
export async function train(
  config: RunConfigInput,
  options: Partial<TrainOptions> = {},
): Promise<TrainResult> {
  return trainInProcess(parseConfig(config), { backend: "auto", ...options });
}

/** A verified checkpoint: weights and Adam state as written, with the run's config. */
export interface Checkpoint {
  /** The ckpt-NNNNNNNN directory it was read from (absolute). */
  dir: string;
  /** Steps completed when it was written. */
  step: number;
  config: RunConfig;
  /** Flat float32 weights of G and D, in the networks' weight order (docs/ARCHITECTURE.md). */
  weights: { G: Float32Array; D: Float32Array };
  /** The manifest: versions, Adam step counts, sha256 of every blob, creation time. */
  manifest: Manifest;
}

/**
 * Reads a checkpoint and verifies every blob's sha256. `path` is a
 * ckpt-NNNNNNNN directory, or a run dir (then its newest checkpoint that
 * verifies). Throws CheckpointError when nothing valid is there.
 */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  const dir = resolve(path);
  let found: { dir: string; manifest: Manifest; data: { weights: Checkpoint["weights"] } } | null;
  if (existsSync(join(dir, "manifest.json"))) found = { dir, ...(await readCheckpoint(dir)) };
  else found = await latestValidCheckpoint(dir);
  if (!found) throw new CheckpointError(`${dir}: no valid checkpoint (ckpt-NNNNNNNN) there`);
  return {
    dir: found.dir,
    step: found.manifest.step,
    config: parseConfig(found.manifest.config, `${found.dir}/manifest.json config`),
    weights: found.data.weights,
    manifest: found.manifest,
  };
}

/**
 * Writes a PNG grid of a checkpoint's generator on fixed noise, as `agon
 * sample` does (by default the run's seed and sample count, so the grid is the
 * run's own `samples/step-<step>.png`), and returns the samples too. A
 * conditional model's grid has one row per class; `classIndex: N` makes
 * every sample of class N (ExportError when out of range or unconditional).
 */
export async function sample(options: SampleOptions): Promise<SampleResult> {
  return runSample(options);
}
