// The alternating GAN schedule as pure functions: which network a phase trains
// and what each of its K microtasks computes. Everything here is a function of
// the run config, so any process can derive any microtask on its own.
import { lossPairsReal, microBatch, type RunConfig } from "./config.js";
import { DatasetError, type DatasetSpec, listFolderDataset, readManifest } from "./data/index.js";
import type { Phase } from "./microtask.js";
import { noiseSeed } from "./rng.js";

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

/**
 * The phase whose noise seed a phase's microtasks use: its own, or for a G phase with
 * `schedule.reuseFakes`, the step's last D phase (so G trains on the fakes D just saw).
 */
export function noisePhase(cfg: RunConfig, phase: number): number {
  return phaseKind(cfg, phase) === "G" && cfg.schedule.reuseFakes ? cfg.schedule.kD - 1 : phase;
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
    noiseSeed: noiseSeed(cfg.seed, step, noisePhase(cfg, phase), shard),
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
 * filled in from its manifest, and a conditional model's class count
 * (`model.classes`) from the dataset, so they are part of the run (config hash,
 * checkpoints, what workers receive). Throws DatasetError when the config
 * already names a fingerprint and the dataset at the path has another one,
 * when a conditional model's dataset is unlabelled, or when a given
 * `model.classes` is not the dataset's. Otherwise: the config unchanged.
 */
export function withDatasetIdentity(config: RunConfig): RunConfig {
  const cfg = withClassCount(config);
  const ds = cfg.dataset;
  if (ds.name !== "prepared") return cfg;
  const m = readManifest(ds.path);
  if (ds.fingerprint !== undefined && ds.fingerprint !== m.fingerprint) {
    throw new DatasetError(
      `prepared dataset ${ds.path} has fingerprint ${m.fingerprint.slice(0, 16)}…, but the run's is ${ds.fingerprint.slice(0, 16)}…; point dataset.path at the run's data`,
    );
  }
  for (const [key, given, actual] of [
    ["resolution", ds.resolution, m.resolution],
    ["channels", ds.channels, m.channels],
  ] as const) {
    if (given !== undefined && given !== actual) {
      throw new DatasetError(
        `dataset.${key} is ${given}, but the prepared dataset ${ds.path} holds ${key === "resolution" ? `${actual}×${actual} images` : `${actual}-channel images`}; prepare it again (agon data prepare --${key} ${given}) or drop the setting`,
      );
    }
  }
  return {
    ...cfg,
    dataset: { ...ds, fingerprint: m.fingerprint, resolution: m.resolution, channels: m.channels },
  };
}

/** How many classes the dataset a config names has, without loading its samples (0: unlabelled). */
function datasetClassCount(cfg: RunConfig): number {
  const ds = cfg.dataset;
  switch (ds.name) {
    case "mnist":
    case "fashion-mnist":
      return 10;
    case "prepared":
      return readManifest(ds.path).classes.length;
    case "folder":
      return listFolderDataset(ds.path).classes?.length ?? 0;
    case "ring":
      return 0;
  }
}

/** The config with `model.classes` filled in for a conditional model (see withDatasetIdentity). */
function withClassCount(cfg: RunConfig): RunConfig {
  const model = cfg.model;
  if (!("conditional" in model) || !model.conditional) return cfg;
  const classes = datasetClassCount(cfg);
  const where = "path" in cfg.dataset ? ` ${cfg.dataset.path}` : "";
  if (classes === 0) {
    throw new DatasetError(
      `model.conditional needs a labelled dataset, but the ${cfg.dataset.name} dataset${where} has no classes (use class subfolders or a labels file, see docs/DATA.md)`,
    );
  }
  if (model.classes !== undefined && model.classes !== classes) {
    throw new DatasetError(
      `model.classes is ${model.classes}, but the ${cfg.dataset.name} dataset${where} has ${classes} classes; drop the setting`,
    );
  }
  return { ...cfg, model: { ...model, classes } };
}
