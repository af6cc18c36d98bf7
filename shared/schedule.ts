// The alternating GAN schedule as pure functions: which network a phase trains
// and what each of its K microtasks computes. Everything here is a function of
// the run config, so any process can derive any microtask on its own.
import { microBatch, type RunConfig } from "./config.js";
import { DatasetError, type DatasetSpec, readManifest } from "./data/index.js";
import { lossPairsReal } from "./losses.js";
import { noiseSeed, type Phase } from "./microtask.js";

export interface MicrotaskSpec {
  step: number;
  /** Phase index within the step: 0..kD-1 train D, kD..kD+kG-1 train G. */
  phase: number;
  shard: number;
  kind: Phase;
  /** Samples in this microtask (b = batch / K). */
  batch: number;
  /**
   * Which draw of the shard's sample stream the microtask consumes; null when
   * it needs no real samples (G phases of non-relativistic losses).
   */
  draw: number | null;
  noiseSeed: number;
  /** D phase with R1/R2 on: whether this one applies them (every loss.regEvery-th D phase of the run). */
  regularize: boolean;
}

export function phasesPerStep(cfg: RunConfig): number {
  return cfg.schedule.kD + cfg.schedule.kG;
}

export function phaseKind(cfg: RunConfig, phase: number): Phase {
  return phase < cfg.schedule.kD ? "D" : "G";
}

export function microtaskSpec(
  cfg: RunConfig,
  step: number,
  phase: number,
  shard: number,
): MicrotaskSpec {
  const kind = phaseKind(cfg, phase);
  const dIndex = step * cfg.schedule.kD + phase;
  // Losses that pair reals with fakes draw in every phase, in phase order.
  let draw: number | null = kind === "D" ? dIndex : null;
  if (lossPairsReal(cfg.loss)) draw = step * phasesPerStep(cfg) + phase;
  return {
    step,
    phase,
    shard,
    kind,
    batch: microBatch(cfg),
    draw,
    noiseSeed: noiseSeed(cfg.seed, step, phase, shard),
    regularize: kind === "D" && dIndex % cfg.loss.regEvery === 0,
  };
}

/** The dataset a config names, in the loader's terms. */
export function datasetSpec(cfg: RunConfig): DatasetSpec {
  const ds = cfg.dataset;
  if (ds.name === "ring") return { ...ds, seed: cfg.seed };
  if (ds.name === "prepared") {
    return { name: "prepared", path: ds.path, cacheMB: ds.cacheMB ?? 256, limit: ds.limit };
  }
  return ds;
}

/**
 * The config with a prepared dataset's fingerprint, resolution and channels
 * filled in from its manifest, so they are part of the run (config hash,
 * checkpoints, what workers receive). Throws DatasetError when the config
 * already names a fingerprint and the dataset at the path has another one.
 * Other datasets: the config unchanged.
 */
export function withDatasetIdentity(cfg: RunConfig): RunConfig {
  const ds = cfg.dataset;
  if (ds.name !== "prepared") return cfg;
  const m = readManifest(ds.path);
  if (ds.fingerprint !== undefined && ds.fingerprint !== m.fingerprint) {
    throw new DatasetError(
      `prepared dataset ${ds.path} has fingerprint ${m.fingerprint.slice(0, 16)}…, but the run's is ${ds.fingerprint.slice(0, 16)}…; point dataset.path at the run's data`,
    );
  }
  return {
    ...cfg,
    dataset: { ...ds, fingerprint: m.fingerprint, resolution: m.resolution, channels: m.channels },
  };
}
