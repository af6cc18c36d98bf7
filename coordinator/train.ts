// `agon train`: the single-process trainer. It runs the same microtasks the
// workers run and sums them along the same reduction tree, so it is both a real tool and
// the reference the distributed system must match bit for bit.
import type { BackendName } from "../shared/backend.js";
import { initBackend } from "../shared/backend.js";
import type { RunConfig } from "../shared/config.js";
import { openDataset } from "../shared/data/index.js";
import { featureSpaceOf } from "../shared/evaluation.js";
import { Progress } from "../shared/progress.js";
import { MicrotaskRunner, transportWeights } from "../shared/runner.js";
import { datasetSpec, microtaskSpec, withDatasetIdentity } from "../shared/schedule.js";
import { reduceNode } from "../shared/tree.js";
import { rejectionLine, resumableCheckpoint } from "./checkpoint.js";
import { DivergenceGuard, RunRecorder, resourceFailureLine } from "./recorder.js";
import { assertRunDirFree, openRunDir, RunDirWriteError, trimAfterCheckpoint } from "./rundir.js";
import { type PhaseSummary, TrainingState } from "./state.js";

export interface TrainOptions {
  backend: BackendName;
  /** Ignore existing checkpoints and start from step 0. */
  fresh?: boolean;
  /** Resume even if the checkpoint was made with a different config. */
  force?: boolean;
  log?: (line: string) => void;
  progressOut?: NodeJS.WriteStream;
  /** Aborted (SIGINT/SIGTERM): checkpoint the last completed phase and return with `stopped`. */
  stop?: AbortSignal;
}

/** Training diverged (NaN/Inf) and could not roll back; the message is the one line shown. */
export class TrainingDiverged extends Error {
  override name = "TrainingDiverged";
}

export interface TrainResult {
  step: number;
  hashes: { G: string; D: string };
  backend: string;
  runDir: string;
  resumedFrom: number | null;
  /** Stopped by `stop` before `steps`; a checkpoint of `step` was written. */
  stopped?: boolean;
}

export async function train(config: RunConfig, opts: TrainOptions): Promise<TrainResult> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const cfg = withDatasetIdentity(config);
  // A run dir in use is refused before the dataset is read (openRunDir below takes the lock).
  assertRunDirFree(cfg.run.dir);
  const dataset = await openDataset(datasetSpec(cfg));
  // A prepared dataset without fitted features (eval.every) is refused before anything is written.
  if (cfg.eval) featureSpaceOf(cfg);
  const backend = await initBackend(opts.backend, log);
  log(
    `dataset: ${dataset.name}, ${dataset.count} samples of ${dataset.sampleShape.join("×")}, ${cfg.shards} shard${cfg.shards === 1 ? "" : "s"}`,
  );
  const runner = new MicrotaskRunner(cfg, dataset);
  const state = new TrainingState(cfg, runner.model);
  log(
    `model: ${cfg.model.name}, G ${runner.model.g.size} params, D ${runner.model.d.size} params, loss ${cfg.loss.name}`,
  );

  const runDir = cfg.run.dir;
  const lock = openRunDir(runDir, { command: "train", fresh: opts.fresh ?? false, log });
  try {
    return await trainLocked(cfg, opts, { log, runner, state, backend, runDir });
  } catch (err) {
    if (err instanceof RunDirWriteError)
      throw new RunDirWriteError(await resourceFailureLine(runDir, err));
    throw err;
  } finally {
    lock.release();
  }
}

async function trainLocked(
  cfg: RunConfig,
  opts: TrainOptions,
  ctx: {
    log: (line: string) => void;
    runner: MicrotaskRunner;
    state: TrainingState;
    backend: string;
    runDir: string;
  },
): Promise<TrainResult> {
  const { log, runner, state, backend, runDir } = ctx;
  const recorder = new RunRecorder(
    cfg,
    runner.model,
    {
      // Checkpoints are routine; health signals and skipped checkpoints are for a person.
      event: (type, message) => {
        if (type !== "checkpointWritten") log(`train: ${message}`);
      },
    },
    {
      health: true,
      onCheckpointError: "throw",
      stop: opts.stop,
      log: (line) => log(`train: ${line}`),
    },
  );
  const divergence = new DivergenceGuard(cfg, recorder);
  recorder.prepare();
  const resumedFrom = opts.fresh ? null : await resume(cfg, state, opts.force ?? false, log);
  if (resumedFrom !== null && state.done) {
    // Nothing to do: the run is already at or past its steps. Nothing is written.
    log(
      `nothing to do: the checkpoint is at step ${state.step} and the run has steps: ${cfg.steps}; ` +
        "raise --steps to train on",
    );
    return { step: state.step, hashes: state.hashes(), backend, runDir, resumedFrom };
  }
  recorder.writeConfig();

  const progress = new Progress(opts.progressOut ?? process.stderr, undefined, state.step);
  let last: PhaseSummary | null = null;
  let lastD: PhaseSummary | null = null;
  let applied = 0;
  while (!state.done) {
    // Let the event loop run (signals arrive there): the phase's awaits are all microtasks.
    await new Promise((r) => setImmediate(r));
    if (opts.stop?.aborted) {
      // As the coordinator does: a checkpoint of the last completed phase, then out.
      if (applied > 0) recorder.checkpoint(state.snapshot(), "stopped");
      await recorder.flush();
      progress.finish(progressInfo(state.step, cfg.steps, lastD, last));
      log(
        `stopped at step ${state.step} phase ${state.phase}${applied > 0 ? "; checkpoint written" : ""}; resume with the same command` +
          (opts.fresh ? " without --fresh" : ""),
      );
      return {
        step: state.step,
        hashes: state.hashes(),
        backend,
        runDir,
        resumedFrom,
        stopped: true,
      };
    }
    // Workers compute with the weights as the wire carries them (transport.params).
    const g = transportWeights(cfg, state.weights.G);
    const d = transportWeights(cfg, state.weights.D);
    // All K shards summed along the reduction tree, as workers and the coordinator do;
    // each version's weights go to the device once (keyed by version).
    const root = { lo: 0, hi: cfg.shards };
    const result = await reduceNode(root, cfg.transport.gradients, (shard) =>
      runner.runAsync(microtaskSpec(cfg, state.step, state.phase, shard), g, d, {
        G: `v${state.versions.G}`,
        D: `v${state.versions.D}`,
      }),
    );
    const summary = state.applyPhase([{ ...root, result }]);
    applied += 1;
    const signals = await recorder.afterPhase(state, summary, {
      schema: 1,
      runId: cfg.run.id,
      ...summary,
      time: new Date().toISOString(),
    });
    await recorder.flush();
    last = summary;
    if (summary.kind === "D") lastD = summary;
    const why = DivergenceGuard.reasonOf(signals);
    if (why) {
      const decision = await divergence.decide(summary.step, "non-finite loss");
      if ("stop" in decision) {
        progress.finish(progressInfo(state.step, cfg.steps, lastD, last));
        recorder.writeSummary({
          step: state.step,
          hashes: state.hashes(),
          backend,
          runDir,
          resumedFrom,
          error: decision.stop,
        });
        throw new TrainingDiverged(decision.stop);
      }
      state.restore(decision.rollback.data);
      log(
        `train: rolled back to ${decision.rollback.dir} (step ${decision.rollback.data.step}) after ${why}`,
      );
      continue;
    }
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
    log(rejectionLine(dir, reason)),
  );
  if (!found) {
    // Starting at step 0: what an earlier attempt wrote before its first checkpoint goes.
    const cut = trimAfterCheckpoint(cfg.run.dir, { step: 0, phase: 0 });
    if (cut.metricsLines + cut.grids > 0) {
      log(
        `start: no checkpoint to resume from; removed ${cut.metricsLines} metrics line(s) and ${cut.grids} sample grid(s) of an earlier attempt`,
      );
    }
    return null;
  }
  state.restore(found.data);
  log(`resumed from ${found.dir} (step ${found.data.step})`);
  const cut = trimAfterCheckpoint(cfg.run.dir, found.data);
  if (cut.metricsLines + cut.grids > 0) {
    log(
      `resume: removed ${cut.metricsLines} metrics line(s) and ${cut.grids} sample grid(s) written after that checkpoint`,
    );
  }
  return found.data.step;
}
