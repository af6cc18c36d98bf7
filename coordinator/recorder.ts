// What a run writes besides its weights, for `agon train` and the coordinator
// alike: the metrics.jsonl line of every phase, the sample grids, the
// checkpoint cadence and the health checks on both, and the same as
// TensorBoard event files (coordinator/tensorboard.ts).
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RunConfig } from "../shared/config.js";
import {
  chunkSizeOf,
  evalChunks,
  type FeatureSpace,
  fdFromSums,
  featureSpaceOf,
  metricOf,
  nodeSums,
} from "../shared/evaluation.js";
import type { FeatureSums } from "../shared/fid.js";
import { DIVERGENCE_SIGNALS, HealthMonitor, type HealthSignal } from "../shared/health.js";
import type { GanModel } from "../shared/models/index.js";
import { generateSamples, samplesGridPng, writeSampleGrid } from "../shared/runner.js";
import { BestCheckpoints } from "./best.js";
import {
  type CheckpointData,
  type FoundCheckpoint,
  latestValidCheckpoint,
  nonFiniteBlob,
  writeCheckpoint,
} from "./checkpoint.js";
import { guardWrite, RunDirWriteError, trimAfterCheckpoint } from "./rundir.js";
import type { PhaseSummary, TrainingState } from "./state.js";
import { EventFileWriter } from "./tensorboard.js";

/** Where a recorder's events and broadcasts go. */
export interface RecorderSink {
  /** A run event (checkpointWritten, a health signal, ...): one line for a person plus fields. */
  event(type: string, message: string, fields: object): void;
  /** The phase's metrics line as written to metrics.jsonl (the coordinator publishes it). */
  metrics?(json: string): void;
  /** A sample grid as written to samples/ (the coordinator publishes it). */
  samples?(png: Buffer): void;
}

export interface RecorderOptions {
  /** Run the health checks on every phase and sample grid. */
  health: boolean;
  /**
   * What a failed checkpoint write does: "event" reports checkpointFailed and
   * training goes on; "throw" makes the next flush() reject with the error.
   */
  onCheckpointError: "event" | "throw";
  /**
   * Computes an evaluation's feature statistics (eval.every) from `state`'s generator for
   * evaluation (the EMA one when kept): the coordinator hands them to its workers as
   * evaluation microtasks; null means the evaluation was given up (the run is stopping).
   * Absent: computed in this process, chunk by chunk along the same tree (`agon train`).
   */
  evaluate?: (state: TrainingState) => Promise<FeatureSums | null>;
  /**
   * Stops an evaluation computed in this process (`agon train`: SIGINT/SIGTERM) between
   * Inception passes; the evaluation is then given up, with a line to `log`.
   */
  stop?: AbortSignal;
  /** Lines for a person about an evaluation computed in this process (a slow one says it starts). */
  log?: (line: string) => void;
}

export class RunRecorder {
  readonly health: HealthMonitor | null;
  /** Checkpoint writes run off the training path, one after another. */
  private checkpointing: Promise<void> = Promise.resolve();
  private checkpointError: Error | null = null;
  /** A checkpoint write failed for a reason no retry fixes (RunDirWriteError); flush() rethrows it. */
  fatal: RunDirWriteError | null = null;
  /** The evaluation's feature space, loaded at the first evaluation (null: none). */
  private space: FeatureSpace | null | undefined;
  /** An evaluation has completed in this process (its reference statistics are cached). */
  private referenceReady = false;
  /** checkpoint.keepBest's ranking; created at prepare(), after the run dir exists. */
  private best: BestCheckpoints | null = null;
  /** Opened at the first phase this process records (run.tensorboard). */
  private tensorboard: EventFileWriter | null = null;

  constructor(
    readonly cfg: RunConfig,
    private readonly model: GanModel,
    private readonly sink: RecorderSink,
    private readonly opts: RecorderOptions,
  ) {
    this.health = opts.health
      ? new HealthMonitor({
          dWinsPhases: cfg.health.dWinsPhases,
          collapseRatio: cfg.health.collapseRatio,
          loss: cfg.loss.name,
        })
      : null;
  }

  private get dir(): string {
    return this.cfg.run.dir;
  }

  /** Creates the run dir and its samples/ folder. */
  prepare(): void {
    const samples = join(this.dir, "samples");
    guardWrite(samples, () => mkdirSync(samples, { recursive: true }));
    const k = this.cfg.checkpoint.keepBest;
    this.best = k !== undefined ? new BestCheckpoints(this.cfg, k) : null;
    const dropped = this.best?.droppedLine();
    if (this.best && dropped) {
      this.sink.event("bestCheckpointsDropped", dropped, {
        dropped: this.best.dropped.map((d) => ({ step: d.step, reason: d.why })),
      });
    }
  }

  /** Writes the run's config.json (the config as resolved, for people and tools). */
  writeConfig(): void {
    const path = join(this.dir, "config.json");
    guardWrite(path, () => writeFileSync(path, `${JSON.stringify(this.cfg, null, 2)}\n`));
  }

  /**
   * Records a phase that `state` has just applied: appends `metrics` to
   * metrics.jsonl, checks its health, and when it completed a step writes the
   * sample grid and queues the checkpoint their cadences call for. Returns the
   * health signals that start with it (already reported as events).
   */
  async afterPhase(
    state: TrainingState,
    summary: PhaseSummary,
    metrics: object,
  ): Promise<HealthSignal[]> {
    const json = JSON.stringify(metrics);
    const metricsPath = join(this.dir, "metrics.jsonl");
    guardWrite(metricsPath, () => appendFileSync(metricsPath, `${json}\n`));
    this.sink.metrics?.(json);
    this.recordScalars(metrics as Record<string, unknown>);
    const signals = this.health?.observePhase(summary) ?? [];
    if (state.phase === 0) {
      const step = state.step;
      if (step % this.cfg.samples.every === 0 || state.done) {
        const count = this.cfg.samples.count;
        const samples = await generateSamples(
          this.model,
          state.sampleWeights,
          this.cfg.seed,
          count,
        );
        if (this.health) {
          signals.push(...this.health.observeSamples(step, samples, count, samples.length / count));
        }
        const png = samplesGridPng(this.cfg, this.model, samples);
        guardWrite(join(this.dir, "samples"), () => writeSampleGrid(this.dir, step, png));
        this.tensorboard?.image("samples", step, png);
        this.sink.samples?.(png);
      }
      if (this.cfg.eval && (step % this.cfg.eval.every === 0 || state.done)) {
        await this.evaluate(state);
      }
      if (step % this.cfg.checkpoint.every === 0 || state.done) {
        this.checkpoint(state.snapshot(), "interval");
      }
    }
    for (const signal of signals) {
      this.sink.event(signal.type, signal.message, {
        step: signal.step,
        value: signal.value ?? null,
      });
    }
    return signals;
  }

  /**
   * The metrics line's numbers as TensorBoard scalars at its step, tagged
   * `<kind>/<field>` (`D/dLoss`, `G/gradNorm`, `D/versions.G`). The first
   * line this process records starts its event file, with the config as text
   * (older files were cut back on resume by trimAfterCheckpoint).
   */
  private recordScalars(metrics: Record<string, unknown>): void {
    if (!this.cfg.run.tensorboard) return;
    const step = Number(metrics.step);
    if (this.tensorboard === null) {
      this.tensorboard = new EventFileWriter(this.dir);
      this.tensorboard.text(
        "config",
        step,
        `\`\`\`json\n${JSON.stringify(this.cfg, null, 2)}\n\`\`\``,
      );
    }
    const scalars: Record<string, number> = {};
    const add = (prefix: string, value: unknown) => {
      if (typeof value === "number") scalars[prefix] = value;
      else if (value !== null && typeof value === "object")
        for (const [k, v] of Object.entries(value)) add(`${prefix}.${k}`, v);
    };
    for (const [field, value] of Object.entries(metrics)) {
      if (field !== "schema" && field !== "step") add(`${String(metrics.kind)}/${field}`, value);
    }
    this.tensorboard.scalars(step, scalars);
  }

  /**
   * The evaluation of a completed step: FD of G (its EMA when kept) on eval.n fixed latents
   * (FID with eval.features inception), appended to eval.jsonl and reported as an
   * `evaluation` event (field `fd` or `fid`, TensorBoard `eval/fd` or `eval/fid`); with
   * keepBest, the step's checkpoint is offered to the best ones (written in the checkpoint
   * queue). Reads the weights only.
   */
  private async evaluate(state: TrainingState): Promise<void> {
    const cfg = this.cfg;
    if (!cfg.eval) return;
    this.space ??= featureSpaceOf(cfg);
    const space = this.space;
    if (space === null) return;
    const started = performance.now();
    const { n, seed } = cfg.eval;
    const stop = this.opts.evaluate ? undefined : this.opts.stop;
    // Inception on wasm takes seconds per image: say what is computed, and how to stop it.
    if (!this.opts.evaluate && metricOf(space) === "fid") {
      this.opts.log?.(
        `step ${state.step}: evaluating FID: Inception features of ${n} generated samples${this.referenceReady ? "" : ` and, once, of up to ${n} real images (the reference)`}; Ctrl-C stops it`,
      );
    }
    let sums: FeatureSums | null;
    let fd: number;
    try {
      // The EMA generator when the run keeps one (as agon eval's default), else G.
      sums = this.opts.evaluate
        ? await this.opts.evaluate(state)
        : await nodeSums(
            this.model,
            state.sampleWeights,
            space,
            seed,
            n,
            { lo: 0, hi: evalChunks(n, chunkSizeOf(space)).length },
            undefined,
            stop,
          );
      if (sums === null) return;
      fd = await fdFromSums(space, sums, stop);
      this.referenceReady = true;
    } catch (err) {
      if (stop?.aborted && (err as Error)?.name === "AbortError") {
        this.opts.log?.(`step ${state.step}: evaluation given up: stopping`);
        return;
      }
      throw err;
    }
    const metric = metricOf(space);
    const seconds = (performance.now() - started) / 1000;
    const step = state.step;
    this.tensorboard?.scalars(step, { [`eval/${metric}`]: fd });
    const line = {
      schema: 1,
      runId: cfg.run.id,
      step,
      [metric]: fd,
      n,
      seed: cfg.eval.seed,
      seconds,
    };
    const evalPath = join(this.dir, "eval.jsonl");
    guardWrite(evalPath, () =>
      appendFileSync(evalPath, `${JSON.stringify({ ...line, time: new Date().toISOString() })}\n`),
    );
    this.sink.event(
      "evaluation",
      `step ${step}: ${metric} ${fd.toFixed(3)} (n ${n}, ${seconds.toFixed(2)} s)`,
      {
        step,
        [metric]: fd,
        n,
        seconds,
      },
    );
    const best = this.best;
    if (best?.qualifies(step, fd)) {
      const snapshot = state.snapshot();
      this.checkpointing = this.checkpointing
        .then(() => best.offer(snapshot, fd))
        .then(
          () =>
            this.sink.event(
              "bestCheckpoint",
              `best checkpoints: ${best.scores.map((e) => `step ${e.step} ${metric} ${e.fd.toFixed(3)}`).join(", ")}`,
              {
                step,
                metric,
                [metric]: fd,
                best: best.scores.map((e) => ({ step: e.step, [metric]: e.fd })),
              },
            ),
          (err: Error) => {
            if (this.opts.onCheckpointError === "throw") {
              this.checkpointError ??= err;
              return;
            }
            this.sink.event("checkpointFailed", `best checkpoint failed: ${err.message}`, {
              reason: err.message,
            });
          },
        );
    }
  }

  /**
   * Queues a checkpoint of `snapshot` (a copy, so training can go on) and
   * writes it in the background; writes are queued, never concurrent.
   */
  checkpoint(snapshot: CheckpointData, why: "interval" | "stopped"): void {
    // Never written (so rotation never deletes the last good one): reported, and training's health decides.
    const bad = nonFiniteBlob(snapshot);
    if (bad) {
      this.sink.event(
        "checkpointSkipped",
        `checkpoint of step ${snapshot.step} not written: ${bad} holds NaN or Inf`,
        { step: snapshot.step, blob: bad },
      );
      return;
    }
    const started = performance.now();
    this.checkpointing = this.checkpointing
      .then(() => writeCheckpoint(this.dir, this.cfg, snapshot, this.cfg.checkpoint.keep))
      .then(
        (dir) =>
          this.sink.event(
            "checkpointWritten",
            `checkpoint ${dir} (${why}, ${(performance.now() - started).toFixed(1)} ms)`,
            {
              dir,
              step: snapshot.step,
              phase: snapshot.phase,
              seconds: (performance.now() - started) / 1000,
            },
          ),
        (err: Error) => {
          // No retry fixes a full disk or a read-only dir: the run stops, in either mode.
          if (err instanceof RunDirWriteError) this.fatal ??= err;
          if (this.opts.onCheckpointError === "throw") {
            this.checkpointError ??= err;
            return;
          }
          this.sink.event("checkpointFailed", `checkpoint failed: ${err.message}`, {
            reason: err.message,
          });
        },
      );
  }

  /**
   * Resolves when every queued checkpoint is written; rejects with a write's
   * error in "throw" mode, and with a RunDirWriteError in either mode.
   */
  async flush(): Promise<void> {
    await this.checkpointing;
    if (this.checkpointError) throw this.checkpointError;
    if (this.fatal) throw this.fatal;
  }

  /** Writes summary.json: the run's final step and weight hashes. */
  writeSummary(summary: object): void {
    const path = join(this.dir, "summary.json");
    guardWrite(path, () => writeFileSync(path, `${JSON.stringify(summary, null, 2)}\n`));
  }
}

/**
 * What a trainer does when training diverges (a divergence signal, or NaN
 * gradients the coordinator has confirmed): shared by `agon train` and the
 * coordinator so both follow the same rules. With health.rollback the newest
 * valid checkpoint is restored once; training is deterministic, so a second
 * divergence after a rollback would only repeat itself and the run stops.
 */
export class DivergenceGuard {
  private rolledBack = false;

  constructor(
    private readonly cfg: RunConfig,
    private readonly recorder: RunRecorder,
  ) {}

  /** The divergence among `signals`, as the reason a person reads, or null. */
  static reasonOf(signals: HealthSignal[]): string | null {
    const s = signals.find((x) => DIVERGENCE_SIGNALS.has(x.type));
    return s ? s.message : null;
  }

  /**
   * Decides after a divergence at `step` for `why`: `{ rollback }` with the
   * checkpoint to restore, or `{ stop }` with the one line the run ends with.
   */
  async decide(
    step: number,
    why: string,
  ): Promise<{ rollback: FoundCheckpoint } | { stop: string }> {
    if (!this.cfg.health.rollback) {
      return {
        stop: `training diverged at step ${step} (${why}); lower the learning rate, or set health.rollback`,
      };
    }
    if (this.rolledBack) {
      return {
        stop: `training diverged again at step ${step} (${why}) after a rollback; lower the learning rate`,
      };
    }
    await this.recorder.flush().catch(() => {});
    const found = await latestValidCheckpoint(this.cfg.run.dir);
    if (!found) {
      return {
        stop: `training diverged at step ${step} (${why}) and there is no checkpoint to roll back to`,
      };
    }
    this.rolledBack = true;
    // The phases after that checkpoint will be applied again: their lines and grids go.
    trimAfterCheckpoint(this.cfg.run.dir, found.data);
    return { rollback: found };
  }
}

/**
 * The one line a run stops with after `err` (a RunDirWriteError): the path and
 * cause, and the checkpoint a restart resumes from.
 */
export async function resourceFailureLine(runDir: string, err: RunDirWriteError): Promise<string> {
  const found = await latestValidCheckpoint(runDir).catch(() => null);
  return `${err.message}; ${found ? `the last good checkpoint ${found.dir} (step ${found.data.step}) is intact` : "no checkpoint was written yet"}`;
}
