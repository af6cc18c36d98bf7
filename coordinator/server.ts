// `agon coordinator`: wires the pure Scheduler and the TrainingState to the
// world. The gRPC service (service.ts) turns calls into scheduler events, the
// publisher (publisher.ts) broadcasts parameters, events and metrics on NATS,
// the run recorder (recorder.ts) writes metrics, samples and checkpoints and
// checks the run's health; this file applies each phase when all K results are
// in (completing the reduction tree) and decides what happens next.

import type { Http2Server, Http2Session } from "node:http2";
import * as grpc from "@grpc/grpc-js";
import type { NatsConnection } from "@nats-io/transport-node";
import { type BackendName, initBackend } from "../shared/backend.js";
import type { RunConfig } from "../shared/config.js";
import { openDataset } from "../shared/data/index.js";
import { buildModel, type GanModel, resultSize } from "../shared/models/index.js";
import { connectNats } from "../shared/nats.js";
import type { Net } from "../shared/params-bus.js";
import { datasetSpec, withDatasetIdentity } from "../shared/schedule.js";
import { type NatsAuthFiles, type ServerTlsFiles, serverCredentials } from "../shared/security.js";
import type { TreePart } from "../shared/tree.js";
import { loadAgonProto, SERVER_OPTIONS } from "../shared/wire.js";
import { resumableCheckpoint } from "./checkpoint.js";
import { type HttpServerHandle, type RunStatus, startHttpServer } from "./http.js";
import { Publisher } from "./publisher.js";
import { DivergenceGuard, RunRecorder, resourceFailureLine } from "./recorder.js";
import { openRunDir, type RunDirLock, RunDirWriteError, trimAfterCheckpoint } from "./rundir.js";
import { type Action, Scheduler } from "./scheduler.js";
import { CoordinatorService, type ServiceCore } from "./service.js";
import { TrainingState } from "./state.js";

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

export class CoordinatorServer implements ServiceCore {
  private readonly server = new grpc.Server(SERVER_OPTIONS);
  readonly publisher: Publisher;
  scheduler!: Scheduler;
  private state!: TrainingState;
  private model!: GanModel;
  private recorder!: RunRecorder;
  private readonly service: CoordinatorService;
  private nc!: NatsConnection;
  private ticker: NodeJS.Timeout | undefined;
  private phaseStarted = 0;
  /** Seconds each worker spent computing in the current phase (from gradient headers). */
  private computeByWorker = new Map<string, number>();
  private finishing: Promise<void> | null = null;
  /** The phase being applied (checkpoint/sample I/O included), so stop() can wait for it. */
  private applying: Promise<void> | null = null;
  private isStopping = false;
  private http: HttpServerHandle | null = null;
  private divergence!: DivergenceGuard;
  /** This process's hold on the run dir, from start() to the end. */
  private lock: RunDirLock | null = null;
  /** Resumed at or past `steps`: the run ends at once and writes nothing. */
  private nothingToDo = false;
  /** Non-finite gradients received per microtask of the current phase. */
  private readonly nonFiniteTasks = new Map<string, number>();
  /** Set when the run ends in error (divergence); the CLI exits non-zero with it. */
  failure: Error | null = null;
  private resolveDone!: () => void;
  readonly done = new Promise<void>((r) => {
    this.resolveDone = r;
  });
  private readonly log: (line: string) => void;
  private readonly credentials: grpc.ServerCredentials;

  readonly cfg: RunConfig;
  /** The run's dataset fingerprint; a worker whose data has another one is refused at Join. */
  datasetFingerprint = "";

  constructor(
    config: RunConfig,
    private readonly opts: CoordinatorOptions,
  ) {
    this.cfg = withDatasetIdentity(config);
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
    // Read the TLS material first: a bad file fails before anything starts.
    this.credentials = serverCredentials(opts.tls ?? {});
    this.publisher = new Publisher(this.cfg, this.log);
    this.service = new CoordinatorService(this, {
      joinToken: opts.joinToken,
      maxStrikes: opts.maxStrikes,
    });
  }

  /** Values of a microtask result per phase: the gradient, then the network's report. */
  get sizes(): { G: number; D: number } {
    return { G: resultSize(this.model.g), D: resultSize(this.model.d) };
  }

  async start(): Promise<string> {
    const cfg = this.cfg;
    const dataset = await openDataset(datasetSpec(cfg));
    this.datasetFingerprint = dataset.fingerprint;
    await initBackend(this.opts.backend, this.log);
    this.model = buildModel(cfg.model, dataset.sampleShape);
    this.state = new TrainingState(cfg, this.model);
    this.lock = openRunDir(cfg.run.dir, {
      command: "coordinator",
      fresh: this.opts.fresh ?? false,
      log: this.log,
    });
    this.recorder = new RunRecorder(
      cfg,
      this.model,
      {
        event: (type, message, fields) => this.event(type, message, fields),
        metrics: (json) => this.publisher.metrics(json),
        samples: (png) => this.publisher.samples(png),
      },
      { health: true, onCheckpointError: "event" },
    );
    this.recorder.prepare();
    this.divergence = new DivergenceGuard(cfg, this.recorder);
    this.nc = await connectNats(
      this.opts.nats,
      `agon-coordinator-${cfg.run.id}`,
      this.log,
      this.opts.natsAuth,
    );
    this.publisher.attach(this.nc);
    if (!this.opts.fresh) await this.resume();
    if (!this.nothingToDo) this.recorder.writeConfig();
    this.publish("G");
    this.publish("D");

    this.scheduler = new Scheduler(cfg.shards, this.opts.leaseMs ?? 2000);
    const proto = loadAgonProto();
    this.server.addService(proto.agon.v1.Coordinator.service, this.service.handlers());
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(this.opts.listen, this.credentials, (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    closeSilentConnections(this.server, SILENT_CONNECTION_MS);
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
        status: () => this.status(),
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
    this.isStopping = true;
    if (this.ticker) clearInterval(this.ticker);
    await this.applying;
    if (this.state && !this.state.done && !this.recorder.fatal) {
      this.recorder.checkpoint(this.state.snapshot(), "stopped");
    }
    await this.recorder?.flush().catch((err: Error) => this.log(`agon: error: ${err.message}`));
    this.service.endAll();
    await this.http?.close();
    this.server.forceShutdown();
    await this.nc?.drain().catch(() => {});
    this.lock?.release();
  }

  private async resume(): Promise<void> {
    const found = await resumableCheckpoint(this.cfg, this.opts.force ?? false, (dir, reason) =>
      this.event("checkpointRejected", `checkpoint rejected: ${reason}`, { dir, reason }),
    );
    if (!found) {
      // Starting at step 0: what an earlier attempt wrote before its first checkpoint goes.
      const cut = trimAfterCheckpoint(this.cfg.run.dir, { step: 0, phase: 0 });
      if (cut.metricsLines + cut.grids > 0) {
        this.log(
          `coordinator: no checkpoint to resume from; removed ${cut.metricsLines} metrics line(s) and ${cut.grids} sample grid(s) of an earlier attempt`,
        );
      }
      return;
    }
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
    if (this.state.done) {
      this.nothingToDo = true;
      this.log(
        `coordinator: nothing to do: the checkpoint is at step ${this.state.step} and the run has steps: ${this.cfg.steps}; raise --steps to train on`,
      );
      return;
    }
    const cut = trimAfterCheckpoint(this.cfg.run.dir, found.data);
    if (cut.metricsLines + cut.grids > 0) {
      this.log(
        `coordinator: resume: removed ${cut.metricsLines} metrics line(s) and ${cut.grids} sample grid(s) written after that checkpoint`,
      );
    }
  }

  // --- ServiceCore: what the gRPC service asks of the coordinator.

  status(): RunStatus & { versions: { G: number; D: number } } {
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
      healthy: this.failure === null && !this.isStopping,
      versions: { ...this.state.versions },
    };
  }

  finished(): boolean {
    return this.finishing !== null;
  }

  stopping(): boolean {
    return this.isStopping;
  }

  accepted(workerId: string, seconds: number): void {
    this.computeByWorker.set(workerId, (this.computeByWorker.get(workerId) ?? 0) + seconds);
  }

  /** Logs a line and publishes the event on agon.<run>.events (schema 1). */
  event(type: string, message: string, fields: object): void {
    this.log(`coordinator: ${message}`);
    this.publisher.event(type, message, fields);
  }

  private publish(net: Net): void {
    this.publisher.params(net, this.state.versions[net], this.state.weights[net]);
  }

  private startPhase(): void {
    if (this.isStopping) return;
    this.phaseStarted = performance.now();
    this.computeByWorker.clear();
    this.nonFiniteTasks.clear();
    // Deadlines come from the measured compute time of this kind of phase (see DeadlinePolicy).
    this.dispatch(
      this.scheduler.startPhase(
        this.state.step,
        this.state.phase,
        { ...this.state.versions },
        Date.now(),
        { kind: this.state.kind },
      ),
    );
  }

  dispatch(actions: Action[]): void {
    for (const a of actions) {
      switch (a.type) {
        case "assign":
          this.service.assign(a.workerId, a.task);
          break;
        case "cancel":
          this.service.cancel(a.workerId, a.taskId, a.reason);
          break;
        case "workerLost":
          if (!this.finishing) {
            this.event("workerLost", `worker ${a.workerId} lost: ${a.reason}`, {
              workerId: a.workerId,
              reason: a.reason,
            });
          }
          this.service.drop(a.workerId);
          break;
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
        case "workerQuarantined":
          this.event(
            "workerQuarantined",
            `worker ${a.workerId} quarantined: ${a.reason}; it gets only probe microtasks until one is in time`,
            { workerId: a.workerId, reason: a.reason },
          );
          break;
        case "workerReinstated":
          this.event(
            "workerReinstated",
            `worker ${a.workerId} answered in time; it gets microtasks again`,
            { workerId: a.workerId },
          );
          break;
        case "phaseComplete":
          this.applying = this.completePhase(a.parts)
            .catch((err: Error) => this.fail(err))
            .finally(() => {
              this.applying = null;
            });
          break;
      }
    }
  }

  private async completePhase(parts: TreePart[]): Promise<void> {
    if (this.recorder.fatal) throw this.recorder.fatal;
    const summary = this.state.applyPhase(parts);
    this.publish(summary.kind);
    const signals = await this.recorder.afterPhase(this.state, summary, {
      schema: 1,
      runId: this.cfg.run.id,
      ...summary,
      steps: this.cfg.steps,
      stepDone: this.state.phase === 0,
      workers: this.scheduler.liveCount(),
      time: new Date().toISOString(),
      phaseSeconds: (performance.now() - this.phaseStarted) / 1000,
      /** The busiest worker's compute time: the rest of phaseSeconds is communication and waiting. */
      computeSeconds: Math.max(0, ...this.computeByWorker.values()),
      bytesIn: this.service.bytesIn,
      bytesOut: this.publisher.bytesOut,
    });
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
  nonFiniteGradient(workerId: string, taskId: string): void {
    const task = this.scheduler.task(taskId);
    if (!task || !this.scheduler.isMember(workerId)) return;
    const seen = (this.nonFiniteTasks.get(taskId) ?? 0) + 1;
    this.nonFiniteTasks.set(taskId, seen);
    this.dispatch(
      this.scheduler.lose(workerId, `sent a non-finite gradient for ${taskId}`, Date.now()),
    );
    if (seen >= 2) void this.diverged(task.step, `non-finite gradient for microtask ${taskId}`);
  }

  /** Training produced NaN/Inf: roll back or stop, by the rules `agon train` follows too. */
  private async diverged(step: number, why: string): Promise<void> {
    const decision = await this.divergence.decide(step, why);
    if ("stop" in decision) {
      this.event("diverged", decision.stop, { step });
      this.failure = new Error(decision.stop);
      void this.finish();
      return;
    }
    const found = decision.rollback;
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
   * Applying a phase failed: a write into the run dir (full disk, read-only,
   * vanished), or an internal error. The run ends with one line naming it.
   */
  private async fail(err: Error): Promise<void> {
    const message =
      err instanceof RunDirWriteError
        ? await resourceFailureLine(this.cfg.run.dir, err)
        : `applying step ${this.state.step} phase ${this.state.phase} failed: ${err.message}`;
    this.failure ??= new Error(message);
    await this.finish();
  }

  private finish(): Promise<void> {
    this.finishing ??= (async () => {
      if (this.ticker) clearInterval(this.ticker);
      try {
        await this.recorder.flush();
      } catch (err) {
        this.failure ??=
          err instanceof RunDirWriteError
            ? new Error(await resourceFailureLine(this.cfg.run.dir, err))
            : (err as Error);
      }
      const hashes = this.state.hashes();
      try {
        if (!this.nothingToDo) {
          this.recorder.writeSummary({
            step: this.state.step,
            hashes,
            backend: "coordinator",
            runDir: this.cfg.run.dir,
            ...(this.failure ? { error: this.failure.message } : {}),
          });
        }
      } catch (err) {
        // A full disk: the failure that stopped the run is the line to show, if there is one.
        this.failure ??= new Error(
          err instanceof RunDirWriteError
            ? await resourceFailureLine(this.cfg.run.dir, err)
            : (err as Error).message,
        );
      }
      this.service.finishAll(this.state.step);
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
        this.lock?.release();
        this.resolveDone();
      }, 300);
    })();
    return this.finishing;
  }
}

/** A connection with no bytes either way for this long is closed (workers heartbeat every 500 ms). */
const SILENT_CONNECTION_MS = 5000;

/**
 * Closes connections that stay silent for `ms` (a peer that connects and never
 * speaks HTTP/2, or stops mid-handshake of a stream). grpc-js turns the
 * HTTP/2 server's socket timeout off and offers no option for it, so this
 * reaches its (private, 1.14) `http2Servers` map and sets the timeout on each
 * listening HTTP/2 server: connections accepted afterwards get an inactivity
 * timer, and on expiry their session is destroyed. Must run after bindAsync
 * and before peers connect. With TLS it applies once the handshake is done
 * (Node's own TLS handshake timeout covers the rest). Does nothing when
 * grpc-js has no such map.
 */
function closeSilentConnections(server: grpc.Server, ms: number): void {
  const servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
  if (!(servers instanceof Map)) return;
  for (const http2Server of servers.keys()) {
    http2Server.removeAllListeners("timeout");
    http2Server.setTimeout(ms);
    // Node emits the expired connection's session with "timeout".
    http2Server.on("timeout", (session: Http2Session) => session.destroy());
  }
}
