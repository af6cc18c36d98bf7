// The alternating GAN schedule as pure functions: which network a phase trains
// and what each of its K microtasks computes. Everything here is a function of
// the run config, so any process can derive any microtask on its own.
import { microBatch, type RunConfig } from "./config.js";
import type { DatasetSpec } from "./data/index.js";
import { noiseSeed, type Phase } from "./microtask.js";

export interface MicrotaskSpec {
  step: number;
  /** Phase index within the step: 0..kD-1 train D, kD..kD+kG-1 train G. */
  phase: number;
  shard: number;
  kind: Phase;
  /** Samples in this microtask (b = batch / K). */
  batch: number;
  /** Which draw of the shard's sample stream the D phase consumes; null for G. */
  draw: number | null;
  noiseSeed: number;
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
  return {
    step,
    phase,
    shard,
    kind,
    batch: microBatch(cfg),
    draw: kind === "D" ? step * cfg.schedule.kD + phase : null,
    noiseSeed: noiseSeed(cfg.seed, step, phase, shard),
  };
}

/** The dataset a config names, in the loader's terms. */
export function datasetSpec(cfg: RunConfig): DatasetSpec {
  const ds = cfg.dataset;
  if (ds.name === "ring") return { ...ds, seed: cfg.seed };
  return ds;
}
