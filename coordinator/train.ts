// `agon train`: the single-process trainer. It runs the same microtasks the
// workers run and combines them in shard order, so it is both a real tool and
// the reference the distributed system must match bit for bit.
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BackendName } from "../shared/backend.js";
import { initBackend } from "../shared/backend.js";
import type { RunConfig } from "../shared/config.js";
import { loadDataset } from "../shared/data/index.js";
import { Progress } from "../shared/progress.js";
import {
  MicrotaskRunner,
  samplesPng,
  transportWeights,
  writeSampleGrid,
} from "../shared/runner.js";
import { datasetSpec, microtaskSpec } from "../shared/schedule.js";
import { resumableCheckpoint, writeCheckpoint } from "./checkpoint.js";
import { type PhaseSummary, TrainingState } from "./state.js";

export interface TrainOptions {
  backend: BackendName;
  /** Ignore existing checkpoints and start from step 0. */
  fresh?: boolean;
  /** Resume even if the checkpoint was made with a different config. */
  force?: boolean;
  log?: (line: string) => void;
  progressOut?: NodeJS.WriteStream;
}

export interface TrainResult {
  step: number;
  hashes: { G: string; D: string };
  backend: string;
  runDir: string;
  resumedFrom: number | null;
}

export async function train(cfg: RunConfig, opts: TrainOptions): Promise<TrainResult> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const dataset = await loadDataset(datasetSpec(cfg));
  const backend = await initBackend(opts.backend, log);
  log(
    `dataset: ${dataset.name}, ${dataset.count} samples of ${dataset.sampleShape.join("×")}, ${cfg.shards} shards`,
  );
  const runner = new MicrotaskRunner(cfg, dataset);
  const state = new TrainingState(cfg, runner.model);
  log(
    `model: ${cfg.model.name}, G ${runner.model.g.size} params, D ${runner.model.d.size} params, loss ${cfg.loss.name}`,
  );

  const runDir = cfg.run.dir;
  mkdirSync(join(runDir, "samples"), { recursive: true });
  const resumedFrom = opts.fresh ? null : await resume(cfg, state, opts.force ?? false, log);
  writeFileSync(join(runDir, "config.json"), `${JSON.stringify(cfg, null, 2)}\n`);

  const progress = new Progress(opts.progressOut ?? process.stderr, undefined, state.step);
  let last: PhaseSummary | null = null;
  let lastD: PhaseSummary | null = null;
  while (!state.done) {
    const results = [];
    // Workers compute with the weights as the wire carries them (transport.params).
    const g = transportWeights(cfg, state.weights.G);
    const d = transportWeights(cfg, state.weights.D);
    for (let shard = 0; shard < cfg.shards; shard++) {
      const spec = microtaskSpec(cfg, state.step, state.phase, shard);
      results.push(await runner.runAsync(spec, g, d));
    }
    const summary = state.applyPhase(results);
    appendFileSync(
      join(runDir, "metrics.jsonl"),
      `${JSON.stringify({ schema: 1, runId: cfg.run.id, ...summary, time: new Date().toISOString() })}\n`,
    );
    last = summary;
    if (summary.kind === "D") lastD = summary;
    if (state.phase !== 0) continue;

    // A step just completed.
    progress.update(progressInfo(state.step, cfg.steps, lastD, last));
    if (state.step % cfg.samples.every === 0 || state.done) {
      await writeSamples(cfg, runner, state);
    }
    if (state.step % cfg.checkpoint.every === 0 || state.done) {
      await writeCheckpoint(runDir, cfg, state.snapshot(), cfg.checkpoint.keep);
    }
  }
  progress.finish(progressInfo(state.step, cfg.steps, lastD, last));

  const hashes = state.hashes();
  const result: TrainResult = { step: state.step, hashes, backend, runDir, resumedFrom };
  writeFileSync(join(runDir, "summary.json"), `${JSON.stringify(result, null, 2)}\n`);
  log(`done: step ${state.step}, G sha256 ${hashes.G}, D sha256 ${hashes.D}`);
  return result;
}

function progressInfo(
  step: number,
  total: number,
  d: PhaseSummary | null,
  last: PhaseSummary | null,
) {
  return {
    step,
    total,
    dLoss: d?.dLoss ?? null,
    gLoss: last?.gLoss ?? null,
    dReal: d?.dReal ?? null,
    dFake: last?.dFake ?? null,
  };
}

async function writeSamples(
  cfg: RunConfig,
  runner: MicrotaskRunner,
  state: TrainingState,
): Promise<void> {
  writeSampleGrid(cfg.run.dir, state.step, await samplesPng(cfg, runner.model, state.weights.G));
}

/** Loads the newest valid checkpoint into `state`; returns its step, or null when starting fresh. */
async function resume(
  cfg: RunConfig,
  state: TrainingState,
  force: boolean,
  log: (line: string) => void,
): Promise<number | null> {
  const found = await resumableCheckpoint(cfg, force, (dir, reason) =>
    log(`checkpoint rejected: ${dir}: ${reason}`),
  );
  if (!found) return null;
  state.restore(found.data);
  log(`resumed from ${found.dir} (step ${found.data.step})`);
  return found.data.step;
}
