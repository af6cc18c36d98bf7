// `agon train`: the single-process trainer. It runs the same microtasks the
// workers run and sums them along the same reduction tree, so it is both a real tool and
// the reference the distributed system must match bit for bit.
import type { BackendName } from "../shared/backend.js";
import { initBackend } from "../shared/backend.js";
import type { RunConfig } from "../shared/config.js";
import { loadDataset } from "../shared/data/index.js";
import { Progress } from "../shared/progress.js";
import { MicrotaskRunner, transportWeights } from "../shared/runner.js";
import { datasetSpec, microtaskSpec } from "../shared/schedule.js";
import { reduceNode } from "../shared/tree.js";
import { resumableCheckpoint } from "./checkpoint.js";
import { RunRecorder } from "./recorder.js";
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
  const recorder = new RunRecorder(
    cfg,
    runner.model,
    { event: () => {} },
    { health: false, onCheckpointError: "throw" },
  );
  recorder.prepare();
  const resumedFrom = opts.fresh ? null : await resume(cfg, state, opts.force ?? false, log);
  recorder.writeConfig();

  const progress = new Progress(opts.progressOut ?? process.stderr, undefined, state.step);
  let last: PhaseSummary | null = null;
  let lastD: PhaseSummary | null = null;
  while (!state.done) {
    // Workers compute with the weights as the wire carries them (transport.params).
    const g = transportWeights(cfg, state.weights.G);
    const d = transportWeights(cfg, state.weights.D);
    // All K shards summed along the reduction tree, as workers and the coordinator do.
    const root = { lo: 0, hi: cfg.shards };
    const result = await reduceNode(root, cfg.transport.gradients, (shard) =>
      runner.runAsync(microtaskSpec(cfg, state.step, state.phase, shard), g, d, {
        G: `v${state.versions.G}`,
        D: `v${state.versions.D}`,
      }),
    );
    const summary = state.applyPhase([{ ...root, result }]);
    await recorder.afterPhase(state, summary, {
      schema: 1,
      runId: cfg.run.id,
      ...summary,
      time: new Date().toISOString(),
    });
    await recorder.flush();
    last = summary;
    if (summary.kind === "D") lastD = summary;
    // A step just completed.
    if (state.phase === 0) progress.update(progressInfo(state.step, cfg.steps, lastD, last));
  }
  progress.finish(progressInfo(state.step, cfg.steps, lastD, last));

  const hashes = state.hashes();
  const result: TrainResult = { step: state.step, hashes, backend, runDir, resumedFrom };
  recorder.writeSummary(result);
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
