// `agon coordinator`: the gRPC service around the pure Scheduler and the
// TrainingState. It validates every inbound message, applies each phase when
// all K results are in (in shard order), broadcasts parameters on NATS after
// every update, and writes metrics, samples and checkpoints to the run dir.
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { NatsConnection } from "@nats-io/transport-node";
import type { CoordinatorHandlers } from "../proto/gen/agon/v1/Coordinator.js";
import type { CoordinatorMessage } from "../proto/gen/agon/v1/CoordinatorMessage.js";
import type { GradientChunk__Output } from "../proto/gen/agon/v1/GradientChunk.js";
import type { ParamChunk } from "../proto/gen/agon/v1/ParamChunk.js";
import type { WorkerMessage__Output } from "../proto/gen/agon/v1/WorkerMessage.js";
import { type BackendName, initBackend } from "../shared/backend.js";
import type { RunConfig } from "../shared/config.js";
import { loadDataset } from "../shared/data/index.js";
import { sha256 } from "../shared/hash.js";
import { HealthMonitor } from "../shared/health.js";
import type { MetricsMessage } from "../shared/metrics.js";
import type { MicrotaskResult } from "../shared/microtask.js";
import { buildModel, type GanModel } from "../shared/models.js";
import { connectNats, subjects } from "../shared/nats.js";
import { type Net, publishParams } from "../shared/params-bus.js";
import { generateSamples, samplesGridPng, writeSampleGrid } from "../shared/runner.js";
import { datasetSpec, phaseKind } from "../shared/schedule.js";
import {
  hasJoinToken,
  metadataValue,
  type NatsAuthFiles,
  randomSecret,
  SESSION_METADATA,
  type ServerTlsFiles,
  serverCredentials,
} from "../shared/security.js";
import {
  ChunkAssembler,
  checkDtype,
  chunksOf,
  type EncodedArray,
  encodeArray,
  loadAgonProto,
  SERVER_OPTIONS,
  WireError,
  wireDtype,
} from "../shared/wire.js";
import { latestValidCheckpoint, resumableCheckpoint, writeCheckpoint } from "./checkpoint.js";
import { type HttpServerHandle, type RunStatus, startHttpServer } from "./http.js";
import { type Action, Scheduler } from "./scheduler.js";
import { type PhaseSummary, TrainingState } from "./state.js";

export interface CoordinatorOptions {
  listen: string;
  /** host:port for /metrics, /healthz and the dashboard; none when absent. */
  http?: string;
  nats: string[];
  /** NATS credentials and TLS files. */
  natsAuth?: NatsAuthFiles;
  /** gRPC TLS (cert + key), mutual TLS when a CA is given; plaintext when absent. */
  tls?: ServerTlsFiles;
  /** Every call must carry this token (`authorization: Bearer ...`); none when absent. */
  joinToken?: string;
  /** Malformed gradients a worker may send before it is evicted. Default 5. */
  maxStrikes?: number;
  backend: BackendName;
  fresh?: boolean;
  force?: boolean;
  leaseMs?: number;
  log?: (line: string) => void;
  /** Called with machine-readable events (listening, done) for the CLI to print. */
  emit?: (event: Record<string, unknown>) => void;
}

/** A peer-chosen string cut to 64 characters before it goes into a log line, event or status. */
function clip(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
}

interface Published {
  version: number;
  /** The weights as they travel (transport.params), with the sha256 of those bytes. */
  encoded: EncodedArray;
}

export class CoordinatorServer {
  private readonly server = new grpc.Server(SERVER_OPTIONS);
  private readonly streams = new Map<
    string,
    grpc.ServerDuplexStream<WorkerMessage__Output, CoordinatorMessage>
  >();
  private readonly published = new Map<Net, Published>();
  private scheduler!: Scheduler;
  private state!: TrainingState;
  private model!: GanModel;
  private nc!: NatsConnection;
  private ticker: NodeJS.Timeout | undefined;
  private phaseStarted = 0;
  private bytesIn = 0;
  /** Seconds each worker spent computing in the current phase (from gradient headers). */
  private computeByWorker = new Map<string, number>();
  /** Wall time of the last completed phase of each kind, for straggler deadlines. */
  private readonly lastPhaseMs: Partial<Record<"D" | "G", number>> = {};
  private bytesOut = 0;
  private finished: Promise<void> | null = null;
  /** The phase being applied (checkpoint/sample I/O included), so stop() can wait for it. */
  private applying: Promise<void> | null = null;
  /** Checkpoint writes run off the training path, one after another. */
  private checkpointing: Promise<void> = Promise.resolve();
  private stopping = false;
  private readonly health: HealthMonitor;
  private http: HttpServerHandle | null = null;
  private rolledBack = false;
  /** sha256 of each live session secret → the worker it belongs to. */
  private readonly sessions = new Map<string, string>();
  private readonly credentials: grpc.ServerCredentials;
  /** Malformed gradients per worker since it joined. */
  private readonly strikes = new Map<string, number>();
  /** Non-finite gradients received per microtask of the current phase. */
  private readonly nonFiniteTasks = new Map<string, number>();
  /** Set when the run ends in error (divergence); the CLI exits non-zero with it. */
  failure: Error | null = null;
  private resolveDone!: () => void;
  readonly done = new Promise<void>((r) => {
    this.resolveDone = r;
  });
  private readonly log: (line: string) => void;

  constructor(
    readonly cfg: RunConfig,
    private readonly opts: CoordinatorOptions,
  ) {
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
    // Read the TLS material first: a bad file fails before anything starts.
    this.credentials = serverCredentials(opts.tls ?? {});
    this.health = new HealthMonitor({
      dWinsPhases: cfg.health.dWinsPhases,
      collapseRatio: cfg.health.collapseRatio,
      loss: cfg.loss.name,
    });
  }

  async start(): Promise<string> {
    const cfg = this.cfg;
    const dataset = await loadDataset(datasetSpec(cfg));
    await initBackend(this.opts.backend, this.log);
    this.model = buildModel(cfg.model, dataset.sampleShape);
    this.state = new TrainingState(cfg, this.model);
    mkdirSync(join(cfg.run.dir, "samples"), { recursive: true });
    this.nc = await connectNats(
      this.opts.nats,
      `agon-coordinator-${cfg.run.id}`,
      this.log,
      this.opts.natsAuth,
    );
    if (!this.opts.fresh) await this.resume();
    writeFileSync(join(cfg.run.dir, "config.json"), `${JSON.stringify(cfg, null, 2)}\n`);
    this.publish("G");
    this.publish("D");

    this.scheduler = new Scheduler(cfg.shards, this.opts.leaseMs ?? 2000);
    const proto = loadAgonProto();
    this.server.addService(proto.agon.v1.Coordinator.service, this.handlers());
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(this.opts.listen, this.credentials, (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    const host = this.opts.listen.slice(0, this.opts.listen.lastIndexOf(":"));
    const loopback = /^(127\.|localhost$|\[::1\]$)/.test(host);
    if (!loopback && !this.opts.joinToken) {
      this.log(
        `coordinator: warning: listening on ${host} without a join token; anyone who can reach it can join (see docs/SECURITY.md)`,
      );
    }
    if (!loopback && !this.opts.tls?.cert) {
      this.log(`coordinator: warning: gRPC on ${host} is plaintext; use --tls-cert/--tls-key`);
    }
    const address = `${host}:${port}`;
    this.ticker = setInterval(() => this.dispatch(this.scheduler.tick(Date.now())), 250);
    this.log(
      `coordinator: run ${cfg.run.id} at step ${this.state.step}/${cfg.steps}, listening on ${address}, K=${cfg.shards}`,
    );
    this.opts.emit?.({ event: "listening", address });
    if (this.opts.http) {
      const at = this.opts.http.lastIndexOf(":");
      this.http = await startHttpServer({
        host: this.opts.http.slice(0, at),
        port: Number(this.opts.http.slice(at + 1)),
        runId: cfg.run.id,
        nats: this.nc,
        log: this.log,
        status: () => this.runStatus(),
      });
      this.log(`coordinator: dashboard and /metrics at ${this.http.address}`);
      this.opts.emit?.({ event: "http", address: this.http.address });
    }
    if (this.state.done) void this.finish();
    else this.startPhase();
    return address;
  }

  /** Writes a checkpoint of the last completed phase and stops (SIGTERM / Ctrl-C). */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.ticker) clearInterval(this.ticker);
    await this.applying;
    if (this.state && !this.state.done) this.checkpoint("stopped");
    await this.checkpointing;
    for (const s of this.streams.values()) s.end();
    await this.http?.close();
    this.server.forceShutdown();
    await this.nc?.drain().catch(() => {});
  }

  private async resume(): Promise<void> {
    const found = await resumableCheckpoint(this.cfg, this.opts.force ?? false, (dir, reason) =>
      this.event("checkpointRejected", `checkpoint rejected: ${reason}`, { dir, reason }),
    );
    if (!found) return;
    this.state.restore(found.data);
    this.event(
      "resumedFrom",
      `resumed from ${found.dir} (step ${found.data.step}, phase ${found.data.phase})`,
      {
        dir: found.dir,
        step: found.data.step,
        phase: found.data.phase,
      },
    );
  }

  private runStatus(): RunStatus {
    return {
      step: this.state.step,
      steps: this.cfg.steps,
      phase: this.state.phase,
      workers: [...this.scheduler.ownership()].map(([workerId, shards]) => ({
        workerId,
        workerName: this.scheduler.memberName(workerId) ?? "",
        shards,
      })),
      done: this.state.done,
      healthy: this.failure === null && !this.stopping,
    };
  }

  /** Logs a line and publishes the event on agon.<run>.events (schema 1). */
  private event(type: string, message: string, fields: object): void {
    this.log(`coordinator: ${message}`);
    const event = {
      schema: 1,
      runId: this.cfg.run.id,
      time: new Date().toISOString(),
      type,
      message,
      ...fields,
    };
    this.natsPublish(subjects(this.cfg.run.id).events, JSON.stringify(event));
  }

  /** Publishes unless the connection is going away (stopping, or NATS gone for good). */
  private natsPublish(subject: string, data: string | Uint8Array): void {
    if (!this.nc || this.nc.isClosed() || this.nc.isDraining()) return;
    // nats.js throws on a payload over the server's max_payload; a publish must
    // never take the coordinator down (events quote what peers sent).
    try {
      this.nc.publish(subject, data);
    } catch (err) {
      this.log(`coordinator: could not publish on ${subject}: ${(err as Error).message}`);
    }
  }

  /** The sha256 of `net` at `version` when that is the published version, else "". */
  private checksumOf(net: Net, version: number): string {
    const p = this.published.get(net);
    return p && p.version === version ? p.encoded.checksum : "";
  }

  /**
   * Refuses a call without the run's join token (UNAUTHENTICATED, and an
   * event naming the peer). Returns whether the call may go on.
   */
  private admit(
    call: { metadata: grpc.Metadata; getPeer(): string },
    rpc: string,
    refuse: (err: Partial<grpc.StatusObject>) => void,
  ): boolean {
    if (hasJoinToken(call.metadata, this.opts.joinToken)) return true;
    const reason = "missing or wrong join token";
    this.event("callRejected", `${rpc} from ${call.getPeer()} rejected: ${reason}`, {
      rpc,
      peer: call.getPeer(),
      reason,
    });
    refuse({ code: grpc.status.UNAUTHENTICATED, details: reason });
    return false;
  }

  /** The live worker whose session secret the call carries, if any. */
  private sessionWorker(md: grpc.Metadata): string | undefined {
    const secret = metadataValue(md, SESSION_METADATA);
    if (secret === undefined) return undefined;
    const workerId = this.sessions.get(sha256(Buffer.from(secret)));
    return workerId !== undefined && this.scheduler.isMember(workerId) ? workerId : undefined;
  }

  private endSessions(workerId: string): void {
    for (const [key, id] of this.sessions) if (id === workerId) this.sessions.delete(key);
  }

  /**
   * A worker sent a malformed gradient. After `maxStrikes` of them it is
   * evicted: its microtasks move on and its session ends (it may join again).
   */
  private strike(workerId: string, reason: string): void {
    if (!this.scheduler.isMember(workerId)) return;
    const n = (this.strikes.get(workerId) ?? 0) + 1;
    this.strikes.set(workerId, n);
    if (n < (this.opts.maxStrikes ?? 5)) return;
    this.strikes.delete(workerId);
    this.endSessions(workerId);
    const stream = this.streams.get(workerId);
    this.streams.delete(workerId);
    this.event("workerEvicted", `${workerId} evicted after ${n} malformed gradients (${reason})`, {
      workerId,
      reason,
    });
    this.dispatch(this.scheduler.lose(workerId, `evicted: ${reason}`, Date.now()));
    stream?.emit("error", { code: grpc.status.PERMISSION_DENIED, details: "evicted" });
    stream?.end();
  }

  private publish(net: Net): void {
    const dtype = this.cfg.transport.params;
    const master = this.state.weights[net];
    // fp32 encodes as a view of the array: copy it, the master weights change with the next update.
    const encoded = encodeArray(dtype === "fp32" ? master.slice() : master, dtype);
    const version = this.state.versions[net];
    this.published.set(net, { version, encoded });
    if (this.nc.isClosed() || this.nc.isDraining()) return;
    this.bytesOut += publishParams(this.nc, this.cfg.run.id, net, version, encoded);
  }

  private startPhase(): void {
    if (this.stopping) return;
    this.phaseStarted = performance.now();
    this.computeByWorker.clear();
    this.nonFiniteTasks.clear();
    // Stragglers: a microtask unfinished after 4× the last phase of its kind (≥ 2 s) also goes to an idle worker.
    const last = this.lastPhaseMs[this.state.kind];
    const deadlineMs = last === undefined ? 30_000 : Math.max(2000, 4 * last);
    this.dispatch(
      this.scheduler.startPhase(
        this.state.step,
        this.state.phase,
        { ...this.state.versions },
        Date.now(),
        deadlineMs,
      ),
    );
  }

  private dispatch(actions: Action[]): void {
    for (const a of actions) {
      switch (a.type) {
        case "assign": {
          const { task } = a;
          this.streams.get(a.workerId)?.write({
            task: {
              taskId: task.taskId,
              step: task.step,
              phase: task.phase,
              shard: task.shard,
              gVersion: task.versions.G,
              dVersion: task.versions.D,
              deadlineMs: 0,
              gSha256: this.checksumOf("G", task.versions.G),
              dSha256: this.checksumOf("D", task.versions.D),
            },
          });
          break;
        }
        case "cancel":
          this.streams.get(a.workerId)?.write({ cancel: { taskId: a.taskId, reason: a.reason } });
          break;
        case "workerLost": {
          if (!this.finished) {
            this.event("workerLost", `worker ${a.workerId} lost: ${a.reason}`, {
              workerId: a.workerId,
              reason: a.reason,
            });
          }
          const s = this.streams.get(a.workerId);
          this.streams.delete(a.workerId);
          s?.end();
          // Its session and strikes go with it (a lost worker joins again for a new
          // session), so they do not pile up over many joins.
          this.endSessions(a.workerId);
          this.strikes.delete(a.workerId);
          break;
        }
        case "taskReassigned":
          this.event(
            "taskReassigned",
            `microtask ${a.taskId} reassigned from ${a.from} to ${a.to}`,
            a,
          );
          break;
        case "taskReissued":
          this.event(
            "taskReissued",
            `microtask ${a.taskId} is late on ${a.holder}; also sent to ${a.to}`,
            a,
          );
          break;
        case "phaseComplete":
          this.applying = this.completePhase(a.results).finally(() => {
            this.applying = null;
          });
          break;
      }
    }
  }

  private async completePhase(results: MicrotaskResult[]): Promise<void> {
    this.lastPhaseMs[this.state.kind] = performance.now() - this.phaseStarted;
    const summary = this.state.applyPhase(results);
    this.publish(summary.kind);
    const stepDone = this.state.phase === 0;
    this.recordMetrics(summary, stepDone);
    const signals = this.health.observePhase(summary);
    if (stepDone) {
      const step = this.state.step;
      if (step % this.cfg.samples.every === 0 || this.state.done) {
        const count = this.cfg.samples.count;
        const samples = await generateSamples(
          this.model,
          this.state.weights.G,
          this.cfg.seed,
          count,
        );
        signals.push(...this.health.observeSamples(step, samples, count, samples.length / count));
        const png = samplesGridPng(this.cfg, this.model, samples);
        writeSampleGrid(this.cfg.run.dir, step, png);
        this.natsPublish(subjects(this.cfg.run.id).samples, png);
      }
      if (step % this.cfg.checkpoint.every === 0 || this.state.done) this.checkpoint("interval");
    }
    for (const signal of signals) {
      this.event(signal.type, signal.message, { step: signal.step, value: signal.value ?? null });
    }
    if (signals.some((x) => x.type === "nonFinite"))
      return this.diverged(summary.step, "non-finite loss");
    if (this.state.done) await this.finish();
    else this.startPhase();
  }

  /**
   * A worker sent NaN/Inf. It is evicted (its microtasks move on; a healthy
   * worker re-joins). Microtasks are deterministic, so when a second worker
   * gets NaN for the same microtask, training itself has diverged.
   */
  private nonFiniteGradient(workerId: string, taskId: string): void {
    const task = this.scheduler.task(taskId);
    if (!task || !this.scheduler.isMember(workerId)) return;
    const seen = (this.nonFiniteTasks.get(taskId) ?? 0) + 1;
    this.nonFiniteTasks.set(taskId, seen);
    this.dispatch(
      this.scheduler.lose(workerId, `sent a non-finite gradient for ${taskId}`, Date.now()),
    );
    if (seen >= 2) void this.diverged(task.step, `non-finite gradient for microtask ${taskId}`);
  }

  /**
   * Training produced NaN/Inf. With health.rollback the newest valid checkpoint
   * is restored once; training is deterministic, so a second divergence after
   * a rollback would only repeat itself and the run stops instead.
   */
  private async diverged(step: number, why: string): Promise<void> {
    const stop = (message: string) => {
      this.event("diverged", message, { step });
      this.failure = new Error(message);
      void this.finish();
    };
    if (!this.cfg.health.rollback) {
      return stop(
        `training diverged at step ${step} (${why}); lower the learning rate, or set health.rollback`,
      );
    }
    if (this.rolledBack) {
      return stop(
        `training diverged again at step ${step} (${why}) after a rollback; lower the learning rate`,
      );
    }
    await this.checkpointing;
    const found = await latestValidCheckpoint(this.cfg.run.dir);
    if (!found)
      return stop(
        `training diverged at step ${step} (${why}) and there is no checkpoint to roll back to`,
      );
    this.rolledBack = true;
    this.state.restore(found.data);
    this.event(
      "rolledBack",
      `rolled back to ${found.dir} (step ${found.data.step}) after ${why} at step ${step}`,
      {
        dir: found.dir,
        step: found.data.step,
      },
    );
    this.publish("G");
    this.publish("D");
    this.startPhase();
  }

  /**
   * Snapshots the state now (a copy, ~1 ms) and writes it in the background so
   * the next phase starts at once; writes are queued, never concurrent.
   */
  private checkpoint(why: "interval" | "stopped"): void {
    const snapshot = this.state.snapshot();
    const started = performance.now();
    this.checkpointing = this.checkpointing
      .then(() => writeCheckpoint(this.cfg.run.dir, this.cfg, snapshot, this.cfg.checkpoint.keep))
      .then(
        (dir) =>
          this.event(
            "checkpointWritten",
            `checkpoint ${dir} (${why}, ${(performance.now() - started).toFixed(1)} ms)`,
            {
              dir,
              step: snapshot.step,
              phase: snapshot.phase,
              seconds: (performance.now() - started) / 1000,
            },
          ),
        (err: Error) =>
          this.event("checkpointFailed", `checkpoint failed: ${err.message}`, {
            reason: err.message,
          }),
      );
  }

  private recordMetrics(summary: PhaseSummary, stepDone: boolean): void {
    const metrics: MetricsMessage = {
      schema: 1,
      runId: this.cfg.run.id,
      ...summary,
      steps: this.cfg.steps,
      stepDone,
      workers: this.scheduler.liveCount(),
      time: new Date().toISOString(),
      phaseSeconds: (performance.now() - this.phaseStarted) / 1000,
      /** The busiest worker's compute time: the rest of phaseSeconds is communication and waiting. */
      computeSeconds: Math.max(0, ...this.computeByWorker.values()),
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
    };
    appendFileSync(join(this.cfg.run.dir, "metrics.jsonl"), `${JSON.stringify(metrics)}\n`);
    this.natsPublish(subjects(this.cfg.run.id).metrics, JSON.stringify(metrics));
  }

  private finish(): Promise<void> {
    this.finished ??= (async () => {
      if (this.ticker) clearInterval(this.ticker);
      await this.checkpointing;
      const hashes = this.state.hashes();
      const summary = {
        step: this.state.step,
        hashes,
        backend: "coordinator",
        runDir: this.cfg.run.dir,
        ...(this.failure ? { error: this.failure.message } : {}),
      };
      writeFileSync(
        join(this.cfg.run.dir, "summary.json"),
        `${JSON.stringify(summary, null, 2)}\n`,
      );
      for (const s of this.streams.values()) {
        s.write({ finished: { step: this.state.step } });
        s.end();
      }
      await this.nc.flush().catch(() => {});
      if (this.failure) {
        this.opts.emit?.({ event: "failed", step: this.state.step, error: this.failure.message });
      } else {
        this.log(`done: step ${this.state.step}, G sha256 ${hashes.G}, D sha256 ${hashes.D}`);
        this.opts.emit?.({ event: "done", step: this.state.step, hashes });
      }
      // Give workers a moment to read Finished before the server goes away.
      setTimeout(() => {
        void this.http?.close();
        this.server.forceShutdown();
        void this.nc.drain().catch(() => {});
        this.resolveDone();
      }, 300);
    })();
    return this.finished;
  }

  private handlers(): CoordinatorHandlers {
    return {
      Join: (call, callback) => {
        if (!this.admit(call, "Join", (e) => callback(e))) return;
        const name = call.request.workerName;
        if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
          callback({
            code: grpc.status.INVALID_ARGUMENT,
            details: "worker_name must be 1-64 of [A-Za-z0-9_.-]",
          });
          return;
        }
        const { workerId, actions } = this.scheduler.join(name, Date.now());
        // A re-join under the same name starts a new session; the old secret stops
        // working (its worker id is no longer a member), and is forgotten here.
        for (const [key, id] of this.sessions) {
          if (id === workerId || !this.scheduler.isMember(id)) this.sessions.delete(key);
        }
        this.strikes.delete(workerId);
        const session = randomSecret();
        this.sessions.set(sha256(Buffer.from(session)), workerId);
        this.dispatch(actions);
        const backend = clip(call.request.backend);
        this.event("workerJoined", `${workerId} joined (backend ${backend || "?"})`, {
          workerId,
          backend,
        });
        callback(null, {
          workerId,
          leaseMs: this.scheduler.leaseMs,
          runId: this.cfg.run.id,
          configJson: JSON.stringify(this.cfg),
          session,
        });
      },

      Work: (call) => {
        const refuse = (e: Partial<grpc.StatusObject>) => {
          call.emit("error", e);
          call.end();
        };
        if (!this.admit(call, "Work", refuse)) return;
        const sessionOf = this.sessionWorker(call.metadata);
        let workerId: string | null = null;
        const lost = (reason: string) => {
          if (workerId && this.streams.get(workerId) === call) {
            this.streams.delete(workerId);
            this.dispatch(this.scheduler.lose(workerId, reason, Date.now()));
          }
        };
        call.on("data", (msg: WorkerMessage__Output) => {
          const now = Date.now();
          if (workerId === null) {
            if (
              msg.body !== "hello" ||
              !this.scheduler.isMember(msg.workerId) ||
              sessionOf !== msg.workerId
            ) {
              refuse({
                code: grpc.status.PERMISSION_DENIED,
                details: "join first, then say hello with the session you were given",
              });
              return;
            }
            workerId = msg.workerId;
            this.streams.set(workerId, call);
            if (this.finished) {
              call.write({ finished: { step: this.state.step } });
              call.end();
              return;
            }
            this.dispatch(this.scheduler.connect(workerId, now));
            return;
          }
          if (msg.workerId !== workerId) return; // a stream speaks for its own worker only
          if (msg.body === "heartbeat" || msg.body === "ack")
            this.scheduler.heartbeat(workerId, now);
          else if (msg.body === "leaving") lost("left cleanly");
        });
        call.on("end", () => {
          lost("stream closed");
          call.end();
        });
        call.on("error", () => lost("stream error"));
        call.on("cancelled", () => lost("stream cancelled"));
      },

      SubmitGradients: (call, callback) => {
        if (!this.admit(call, "SubmitGradients", (e) => callback(e))) return;
        const sender = this.sessionWorker(call.metadata);
        let assembler: ChunkAssembler | null = null;
        let header: GradientChunk__Output["header"] = null;
        let failed: string | null = null;
        /** Whether the failure is the sender's fault (malformed), not just late. */
        let malformed = false;
        let chunksSeen = 0;
        call.on("data", (chunk: GradientChunk__Output) => {
          if (failed) return;
          try {
            chunksSeen += 1;
            if (!assembler) {
              header = chunk.header;
              malformed = true;
              if (!header) throw new WireError("first chunk carries no header");
              if (sender === undefined) throw new WireError("no valid session; join first");
              if (header.workerId !== sender) {
                throw new WireError(
                  `worker id ${JSON.stringify(clip(header.workerId))} does not match the session (${sender})`,
                );
              }
              malformed = false;
              const task = this.scheduler.task(header.taskId);
              if (!task)
                throw new WireError(`task ${clip(header.taskId)} is not part of the current phase`);
              malformed = true;
              const kind = phaseKind(this.cfg, task.phase);
              const expected = kind === "D" ? this.model.d.size : this.model.g.size;
              if (header.length !== expected) {
                throw new WireError(
                  `gradient has ${header.length} values, ${kind} has ${expected}`,
                );
              }
              const dtype = this.cfg.transport.gradients;
              checkDtype(header.dtype, dtype, "gradient");
              assembler = new ChunkAssembler(header.length, header.chunks, header.sha256, dtype);
            } else if (chunk.header) {
              throw new WireError("only the first chunk may carry a header");
            }
            if (chunksSeen > assembler.chunks) {
              throw new WireError(`more than the announced ${assembler.chunks} chunks`);
            }
            assembler.add(chunk.index, chunk.data);
            this.bytesIn += chunk.data.byteLength;
          } catch (err) {
            // `malformed` stays as set above: a task outside the current phase (a late or
            // stale result) is refused without a strike; everything else is the sender's fault.
            failed = (err as Error).message;
          }
        });
        call.on("end", () => {
          const reject = (reason: string, isMalformed: boolean) => {
            this.event("gradientRejected", `rejected a gradient: ${reason}`, {
              workerId: sender ?? null,
              taskId: header ? clip(header.taskId) : null,
              reason,
            });
            callback(null, { accepted: false, reason });
            if (isMalformed && sender !== undefined) this.strike(sender, reason);
          };
          if (this.stopping) return reject("coordinator is stopping", false);
          if (failed) return reject(failed, malformed);
          if (!assembler || !header || sender === undefined) return reject("empty stream", true);
          let grad: Float32Array;
          try {
            grad = assembler.finish(true);
          } catch (err) {
            const message = (err as Error).message;
            // Only the task's own holder can make NaN count towards divergence.
            if (/not finite/.test(message) && this.scheduler.holds(sender, header.taskId)) {
              this.nonFiniteGradient(sender, header.taskId);
              return reject(message, false);
            }
            return reject(message, true);
          }
          const h = header;
          const task = this.scheduler.task(h.taskId);
          const isD = task !== undefined && phaseKind(this.cfg, task.phase) === "D";
          if (!Number.isInteger(h.count) || h.count !== this.cfg.batch / this.cfg.shards) {
            return reject(`count ${h.count} does not match the microtask batch`, true);
          }
          for (const [field, value] of [
            ["d_loss", h.dLoss],
            ["g_loss", h.gLoss],
            ["d_real", h.dReal],
            ["d_fake", h.dFake],
          ] as const) {
            if (!Number.isFinite(value)) return reject(`${field} is not finite`, true);
          }
          const result: MicrotaskResult = {
            grad,
            count: h.count,
            dLoss: isD ? h.dLoss : null,
            gLoss: h.gLoss,
            dReal: isD ? h.dReal : null,
            dFake: h.dFake,
          };
          const { verdict, actions } = this.scheduler.submit(
            h.workerId,
            h.taskId,
            result,
            Date.now(),
          );
          if (!verdict.ok) return reject(verdict.reason, false);
          const seconds =
            Number.isFinite(h.computeSeconds) && h.computeSeconds > 0 ? h.computeSeconds : 0;
          this.computeByWorker.set(
            h.workerId,
            (this.computeByWorker.get(h.workerId) ?? 0) + seconds,
          );
          callback(null, { accepted: true, reason: "" });
          this.dispatch(actions);
        });
      },

      FetchParams: (call) => {
        if (!this.admit(call, "FetchParams", (e) => call.emit("error", e))) return;
        const net = call.request.net;
        if (net !== "G" && net !== "D") {
          call.emit("error", {
            code: grpc.status.INVALID_ARGUMENT,
            details: `net must be G or D, got ${clip(net)}`,
          });
          return;
        }
        const p = this.published.get(net);
        if (!p || (call.request.version !== 0 && call.request.version !== p.version)) {
          call.emit("error", {
            code: grpc.status.NOT_FOUND,
            details: `${net} version ${call.request.version} is not available (current ${p?.version})`,
          });
          return;
        }
        const chunks = chunksOf(p.encoded.bytes);
        chunks.forEach((data, index) => {
          const msg: ParamChunk = {
            net,
            version: p.version,
            index,
            chunks: chunks.length,
            length: p.encoded.length,
            sha256: p.encoded.checksum,
            data,
            dtype: wireDtype(p.encoded.dtype),
          };
          call.write(msg);
          this.bytesOut += data.byteLength;
        });
        call.end();
      },

      Status: (call, callback) => {
        if (!this.admit(call, "Status", (e) => callback(e))) return;
        const { step, phase, steps, workers, done } = this.runStatus();
        callback(null, {
          runId: this.cfg.run.id,
          step,
          phase,
          steps,
          gVersion: this.state.versions.G,
          dVersion: this.state.versions.D,
          workers,
          done,
        });
      },
    };
  }
}
