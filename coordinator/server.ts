// `agon coordinator`: wires the pure Scheduler and the TrainingState to the
// world. The gRPC service (service.ts) turns calls into scheduler events, the
// publisher (publisher.ts) broadcasts parameters, events and metrics on NATS,
// the run recorder (recorder.ts) writes metrics, samples and checkpoints and
// checks the run's health; this file applies each phase when all K results are
// in (completing the reduction tree) and decides what happens next.

import type { Http2Server, Http2Session } from "node:http2";
import type { Socket } from "node:net";
import { hostname } from "node:os";
import * as grpc from "@grpc/grpc-js";
import type { NatsConnection } from "@nats-io/transport-node";
import { type BackendName, initBackend } from "../shared/backend.js";
import { LAUNCHER_ENV } from "../shared/cli/orphan.js";
import { ConfigError, type RunConfig } from "../shared/config.js";
import { openDataset } from "../shared/data/index.js";
import {
  chunkSizeOfConfig,
  combineParts,
  evalChunks,
  featureSpaceOf,
  metricOf,
  referenceStats,
} from "../shared/evaluation.js";
import type { FeatureSums } from "../shared/fid.js";
import { weightsHash } from "../shared/hash.js";
import { buildModel, type GanModel, resultSize } from "../shared/models/index.js";
import { connectNats, subjects } from "../shared/nats.js";
import type { Net } from "../shared/params-bus.js";
import { datasetSpec, withDatasetIdentity } from "../shared/schedule.js";
import { type NatsAuthFiles, type ServerTlsFiles, serverCredentials } from "../shared/security.js";
import { trace, tracing } from "../shared/trace.js";
import type { TreePart } from "../shared/tree.js";
import { loadAgonProto, SERVER_OPTIONS } from "../shared/wire.js";
import { configHash, resumableCheckpoint } from "./checkpoint.js";
import { Follower, StandbyMismatchError, type Takeover } from "./ha/follower.js";
import { DEFAULT_LEASE_MS, Leadership, LeaseBucket, type LeaseRecord } from "./ha/lease.js";
import { LogFencedError, ReplicatedLog } from "./ha/log.js";
import { type HttpServerHandle, type RunStatus, startHttpServer } from "./http.js";
import { Publisher } from "./publisher.js";
import { DivergenceGuard, RunRecorder, resourceFailureLine } from "./recorder.js";
import {
  assertRunDirFree,
  openRunDir,
  type RunDirLock,
  RunDirWriteError,
  trimAfterCheckpoint,
} from "./rundir.js";
import { type Action, Scheduler } from "./scheduler.js";
import { CoordinatorService, type ServiceCore } from "./service.js";
import { type PhaseSummary, TrainingState } from "./state.js";

export interface CoordinatorOptions {
  listen: string;
  /** host:port for /metrics, /healthz and the dashboard; none when absent. */
  http?: string;
  /**
   * NATS server URLs. Absent or empty: the run has no NATS; workers fetch
   * parameters over gRPC FetchParams, and the dashboard reads the publisher.
   */
  nats?: string[];
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
  /**
   * Hot standby (coordinator/ha): the leader appends each phase to a
   * replicated log on JetStream and holds a lease; a standby follows the log
   * and takes over when the lease lapses. Absent: no log, no lease, epoch 0.
   */
  ha?: {
    /** Start as a follower (`--standby`); else lead unless a live leader holds the lease. */
    standby: boolean;
    /** Lease duration (ms); default DEFAULT_LEASE_MS. */
    leaseMs?: number;
    /** The gRPC address workers reach this coordinator at (recorded in the lease). */
    advertise?: string;
  };
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
  private nc: NatsConnection | null = null;
  private ticker: NodeJS.Timeout | undefined;
  private phaseStarted = 0;
  /** Seconds each worker spent computing in the current phase (from gradient headers). */
  private computeByWorker = new Map<string, number>();
  private finishing: Promise<void> | null = null;
  /** The phase being applied (checkpoint/sample I/O included), so stop() can wait for it. */
  private applying: Promise<void> | null = null;
  private isStopping = false;
  /** The gRPC server's bind, once started (see bind()). */
  private bound: Promise<string> | null = null;
  /** serve() has run: workers are served (see serving()). */
  private isServing = false;
  private http: HttpServerHandle | null = null;
  private divergence!: DivergenceGuard;
  /** This process's hold on the run dir, from start() to the end. */
  private lock: RunDirLock | null = null;
  /** Resumed at or past `steps`: the run ends at once and writes nothing. */
  private nothingToDo = false;
  /** Non-finite gradients received per microtask of the current phase. */
  private readonly nonFiniteTasks = new Map<string, number>();
  /** The evaluation phase under way (eval.every): resolved with its statistics, or null when given up. */
  private evaluating: ((sums: FeatureSums | null) => void) | null = null;
  /** Set when the run ends in error (divergence); the CLI exits non-zero with it. */
  failure: Error | null = null;
  /** Why this coordinator stepped down as leader (a newer epoch), when it did; the CLI exits 0. */
  steppedDown: string | null = null;
  /** The leader's fencing epoch (0 without ha). */
  epoch = 0;
  /** The gRPC address recorded in the lease: --advertise, else --listen (a standby: as bound). */
  private address: string;
  private bucket: LeaseBucket | null = null;
  private hlog: ReplicatedLog | null = null;
  private leadership: Leadership | null = null;
  private follower: Follower | null = null;
  /** Phase entries appended since the last snapshot entry (a new one every SNAPSHOT_EVERY). */
  private sinceSnapshot = 0;
  /** A standby asked for a snapshot entry (it resyncs from it); appended after the next phase. */
  private snapshotWanted = false;
  private snapshotSeqs: number[] = [];
  private resolveDone!: () => void;
  readonly done = new Promise<void>((r) => {
    this.resolveDone = r;
  });
  private readonly log: (line: string) => void;
  private readonly credentials: grpc.ServerCredentials;

  readonly cfg: RunConfig;
  /** The run's dataset fingerprint; a worker whose data has another one is refused at Join. */
  datasetFingerprint = "";
  /** sha256 of the run's Inception weights (eval.features inception), sent to workers; "" without. */
  inceptionSha256 = "";

  constructor(
    config: RunConfig,
    private readonly opts: CoordinatorOptions,
  ) {
    this.cfg = withDatasetIdentity(config);
    this.address = opts.ha?.advertise ?? opts.listen;
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

  /** Aborted by abortStart(): a start still computing its evaluation reference stops there. */
  private readonly startAbort = new AbortController();

  /**
   * A signal arrived while start() runs: start() stops at its next chance (between Inception
   * passes of the evaluation reference, before anything is written) with an AbortError.
   */
  abortStart(): void {
    this.startAbort.abort();
  }

  async start(): Promise<string> {
    const cfg = this.cfg;
    // A run dir in use is refused before the dataset is read (openRunDir below takes the lock).
    assertRunDirFree(cfg.run.dir);
    const dataset = await openDataset(datasetSpec(cfg));
    this.datasetFingerprint = dataset.fingerprint;
    await initBackend(this.opts.backend, this.log);
    this.model = buildModel(cfg.model, dataset.sampleShape);
    // The reference statistics of evaluations (eval.every) take seconds of compute: here,
    // before any worker joins, not in the middle of the run where they would stall leases.
    // A prepared dataset without fitted features is refused here, before anything is written.
    const space = cfg.eval ? featureSpaceOf(cfg) : null;
    if (space !== null && typeof space === "object" && "kind" in space)
      this.inceptionSha256 = space.sha256;
    if (space !== null) {
      const t0 = performance.now();
      if (metricOf(space) === "fid")
        this.log(
          `coordinator: computing the evaluation reference: Inception features of up to ${cfg.eval?.n} real images of ${cfg.dataset.name} (once; Ctrl-C stops it)`,
        );
      await referenceStats(space, this.startAbort.signal);
      this.log(
        `coordinator: evaluation reference statistics of ${cfg.dataset.name} ready (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
      );
    }
    this.state = new TrainingState(cfg, this.model);
    this.lock = openRunDir(cfg.run.dir, {
      command: process.env[LAUNCHER_ENV]
        ? `coordinator under ${process.env[LAUNCHER_ENV]}`
        : "coordinator",
      fresh: this.opts.fresh ?? false,
      log: this.log,
    });
    this.recorder = new RunRecorder(
      cfg,
      this.model,
      {
        // A standby records what the leader did; only the leader broadcasts it.
        event: (type, message, fields) =>
          this.follower ? this.log(`standby: ${message}`) : this.event(type, message, fields),
        metrics: (json) => {
          if (!this.follower) this.publisher.metrics(json);
        },
        samples: (png) => {
          if (!this.follower) this.publisher.samples(png);
        },
      },
      {
        health: true,
        onCheckpointError: "event",
        // A standby has no workers: the leader's evaluations are its own, not replayed.
        evaluate: (state) =>
          this.follower ? Promise.resolve(null) : this.evaluateOnWorkers(state),
      },
    );
    this.recorder.prepare();
    this.divergence = new DivergenceGuard(cfg, this.recorder);
    if (this.opts.nats?.length) {
      this.nc = await connectNats(
        this.opts.nats,
        `agon-coordinator-${cfg.run.id}`,
        this.log,
        this.opts.natsAuth,
      );
      this.publisher.attach(this.nc);
    }
    if (this.opts.ha) {
      if (!this.nc)
        throw new Error("a hot standby (--ha, --standby) needs NATS with JetStream (--nats)");
      const lead = await this.openHa();
      if (!lead) return this.follow();
      // Held (renewed) from here on: resuming and replaying may take longer than a lease.
      this.hold(lead);
      let fromLog = false;
      if (!this.opts.fresh) {
        await this.resume();
        if (!this.nothingToDo) fromLog = await this.replayLog(lead.record.value.snapshotSeq);
      }
      await this.becomeLeader(fromLog ? "log" : "checkpoint");
    } else if (!this.opts.fresh) await this.resume();
    if (!this.nothingToDo) this.recorder.writeConfig();
    return this.serve();
  }

  /**
   * Serves the run as its leader (or its only coordinator): publishes the
   * parameters, binds gRPC and starts the current phase.
   */
  private async serve(): Promise<string> {
    const cfg = this.cfg;
    this.publish("G");
    this.publish("D");

    this.scheduler = new Scheduler(cfg.shards, this.opts.leaseMs ?? 2000);
    const address = await this.bind();
    this.isServing = true;
    // The tick runs after the event loop's next poll: when this process was busy (a big
    // update, GC) the heartbeats that came in meanwhile are read before leases are judged.
    this.ticker = setInterval(
      () =>
        setImmediate(() => {
          if (!this.finishing && !this.isStopping) this.dispatch(this.scheduler.tick(Date.now()));
        }),
      250,
    );
    this.log(
      `coordinator: run ${cfg.run.id} at step ${this.state.step}/${cfg.steps}, listening on ${address}, K=${cfg.shards}`,
    );
    // `finished`: the run had nothing left to do (resumed at its last step); it ends at once.
    this.opts.emit?.({
      event: "listening",
      address,
      ...(this.state.done ? { finished: true } : {}),
    });
    await this.startHttp();
    if (this.state.done) void this.finish();
    else this.startPhase();
    return address;
  }

  /**
   * Binds the gRPC server (once; a standby binds while it follows and refuses
   * every call until it leads, see ServiceCore.serving) and resolves the
   * address it listens on.
   */
  private async bind(): Promise<string> {
    this.bound ??= (async () => {
      const proto = loadAgonProto();
      this.server.addService(proto.agon.v1.Coordinator.service, this.service.handlers());
      // gRPC logs a failed bind as "E No address added …" itself; bindError says it in one line.
      grpc.setLogVerbosity(grpc.logVerbosity.NONE);
      const port = await new Promise<number>((resolve, reject) =>
        this.server.bindAsync(this.opts.listen, this.credentials, (err, p) =>
          err ? reject(bindError(this.opts.listen, err)) : resolve(p),
        ),
      ).finally(() => grpc.setLogVerbosity(grpc.logVerbosity.ERROR));
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
      return `${host}:${port}`;
    })();
    return this.bound;
  }

  serving(): boolean {
    return this.isServing && this.follower === null && this.steppedDown === null;
  }

  /** Serves /metrics, /healthz and the dashboard (a standby too, so its probes pass); once. */
  private async startHttp(): Promise<void> {
    if (this.opts.http && !this.http) {
      const cfg = this.cfg;
      const at = this.opts.http.lastIndexOf(":");
      this.http = await startHttpServer({
        host: this.opts.http.slice(0, at),
        port: Number(this.opts.http.slice(at + 1)),
        runId: cfg.run.id,
        ...(this.nc ? { nats: this.nc } : { feed: this.publisher }),
        log: this.log,
        status: () => this.status(),
      });
      this.log(`coordinator: dashboard and /metrics at ${this.http.address}`);
      this.opts.emit?.({ event: "http", address: this.http.address });
    }
  }

  /** Writes a checkpoint of the last completed phase and stops (SIGTERM / Ctrl-C). */
  async stop(): Promise<void> {
    this.isStopping = true;
    this.follower?.stop();
    this.leadership?.stop();
    if (this.ticker) clearInterval(this.ticker);
    // An evaluation under way is given up: its workers may be gone, and the step's checkpoint matters more.
    this.evaluating?.(null);
    await this.applying;
    const mayWrite = !this.leadership || this.leadership.valid() || this.follower !== null;
    // A planned stop lets go of the lease at once: a standby takes over without waiting it out.
    if (this.leadership?.valid() && this.steppedDown === null) {
      await this.leadership.release();
      this.log(`coordinator: released the lease of epoch ${this.epoch}`);
    }
    if (this.state && !this.state.done && !this.recorder.fatal && mayWrite) {
      this.recorder.checkpoint(this.state.snapshot(), "stopped");
    }
    await this.recorder?.flush().catch((err: Error) => this.log(`agon: error: ${err.message}`));
    this.service.endAll();
    await this.http?.close();
    // Let the streams' final status reach the workers (so they know this was a stop), then close.
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 1000);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    await this.nc?.drain().catch(() => {});
    this.lock?.release();
  }

  // --- Hot standby (coordinator/ha): lease, log, follow, take over, step down.

  /** This process as the lease's holder names it. */
  private get holder(): string {
    return `${hostname()}:${process.pid}`;
  }

  private get leaseMs(): number {
    return this.opts.ha?.leaseMs ?? DEFAULT_LEASE_MS;
  }

  /**
   * Opens the lease bucket and the log. Resolves the lease this process won
   * (to lead), or null when it is to follow (`--standby`, or a live leader
   * holds the lease). One line when JetStream is not there.
   */
  private async openHa(): Promise<{ record: LeaseRecord; sentAt: number } | null> {
    try {
      this.bucket = await LeaseBucket.open(this.nc!, this.cfg.run.id);
      this.hlog = await ReplicatedLog.open(this.nc!, this.cfg.run.id);
    } catch (err) {
      throw new Error(
        `a hot standby needs NATS JetStream (nats-server -js): ${(err as Error).message.split("\n")[0]}`,
      );
    }
    if (this.opts.ha?.standby) return null;
    const bucket = this.bucket;
    const value = {
      epoch: 1,
      holder: this.holder,
      address: this.address,
      snapshotSeq: 0,
    };
    const first = await bucket.read();
    if (first?.value.released) {
      this.log(
        `coordinator: lease of epoch ${first.value.epoch} was released by ${first.value.holder}; taking epoch ${first.value.epoch + 1}`,
      );
      value.epoch = first.value.epoch + 1;
      value.snapshotSeq = first.value.snapshotSeq;
    } else if (first) {
      // Someone held it: lead only if it stays silent for a whole lease.
      this.log(
        `coordinator: lease of epoch ${first.value.epoch} held by ${first.value.holder}; waiting ${this.leaseMs} ms to see whether it is alive`,
      );
      const until = performance.now() + this.leaseMs + this.leaseMs / 4;
      while (performance.now() < until) {
        await new Promise((r) => setTimeout(r, this.leaseMs / 8));
        const now = await bucket.read();
        if (now && now.revision !== first.revision) {
          this.log(
            `coordinator: epoch ${now.value.epoch} is led by ${now.value.holder}; following it as a standby`,
          );
          return null;
        }
      }
      value.epoch = first.value.epoch + 1;
      value.snapshotSeq = first.value.snapshotSeq;
    }
    const sentAt = performance.now();
    const revision = await bucket.write(value, first?.revision ?? null);
    if (revision === null) return null;
    this.hlog.lastSeq = await this.hlog.tail();
    return { record: { value, revision }, sentAt };
  }

  /** Holds the lease won: renews it from now on; steps down when another coordinator takes it. */
  private hold(lead: { record: LeaseRecord; sentAt: number }): void {
    this.epoch = lead.record.value.epoch;
    this.leadership = new Leadership(
      this.bucket!,
      lead.record,
      this.leaseMs,
      (reason) => void this.stepDown(reason),
      lead.sentAt,
    );
  }

  /**
   * Writes a snapshot entry of the state (where followers start) and
   * announces the leadership held. `from`: where the state came from (memory:
   * a standby in sync; log: replayed from it at start; checkpoint: this run
   * dir's checkpoint, or step 0).
   */
  private async becomeLeader(from: "memory" | "log" | "checkpoint"): Promise<void> {
    // A standby whose state stopped matching asks for a snapshot entry; it goes after the next phase.
    this.nc?.subscribe(subjects(this.cfg.run.id).resync, {
      callback: () => {
        if (!this.snapshotWanted) this.log("coordinator: a standby asked for a snapshot to resync");
        this.snapshotWanted = true;
      },
    });
    if (from === "checkpoint") await this.appendSnapshot();
    // A state that is the log's end (a standby in sync, a replay) is what the log's newest
    // snapshot and the phases after it describe already: followers can start there, and
    // this leader's own snapshot goes after its first phase instead of before it serves.
    else this.snapshotWanted = true;
    const why = {
      memory: "memory, in sync with the log",
      log: "the replicated log, replayed past this run dir's checkpoint",
      checkpoint: "checkpoint or step 0",
    }[from];
    this.event(
      "leaderElected",
      `leading epoch ${this.epoch} at step ${this.state.step} phase ${this.state.phase} (state from ${why})`,
      { epoch: this.epoch, step: this.state.step, phase: this.state.phase, from },
    );
  }

  /**
   * Before it leads (lease held, so nobody else appends): brings the state
   * resumed from this run dir up to the end of the run's log, when the log
   * holds phases past it (a standby took over and trained on, then stopped),
   * with this process's optimizer, every hash checked. Resolves whether
   * anything came from the log. Throws (one line) when the log does not match
   * this run (another config, other bits).
   */
  private async replayLog(from: number): Promise<boolean> {
    if (from <= 0) return false;
    const before = { step: this.state.step, phase: this.state.phase };
    const replayer = this.newFollower();
    // As a standby's, the replayed phases are recorded, not broadcast.
    this.follower = replayer;
    let done: { applied: number; restored: boolean };
    try {
      done = await replayer.replay(from);
    } catch (err) {
      throw new Error(
        err instanceof StandbyMismatchError
          ? `the run's replicated log does not match this coordinator: ${err.message}`
          : `reading the run's replicated log failed: ${(err as Error).message}`,
      );
    } finally {
      this.follower = null;
    }
    if (!done.restored && done.applied === 0) return false;
    this.log(
      `coordinator: replayed the run's log from step ${before.step} phase ${before.phase} to step ${this.state.step} phase ${this.state.phase} (${done.restored ? "its snapshot, then " : ""}${done.applied} phase(s), hashes checked); --fresh ignores it`,
    );
    return true;
  }

  private newFollower(): Follower {
    return new Follower(
      {
        state: this.state,
        recorder: this.recorder,
        runDir: this.cfg.run.dir,
        holder: this.holder,
        address: this.address,
        configHash: configHash(this.cfg),
        log: this.log,
        event: (type, message, fields) => this.event(type, message, fields),
        requestSnapshot: () => this.nc?.publish(subjects(this.cfg.run.id).resync),
      },
      this.hlog!,
      this.bucket!,
      this.leaseMs,
    );
  }

  /** Follows the leader's log until this process takes over (then serves) or the run ends. */
  private async follow(): Promise<string> {
    // Bound now, refusing every call until it leads: workers' connections are up at the takeover.
    const bound = await this.bind();
    this.address = this.opts.ha?.advertise ?? bound;
    const address = this.address;
    this.follower = this.newFollower();
    this.recorder.writeConfig();
    await this.startHttp();
    this.opts.emit?.({ event: "standby", address });
    void this.runFollower();
    return address;
  }

  private async runFollower(): Promise<void> {
    const follower = this.follower!;
    let outcome: Takeover | "done" | "stopped";
    try {
      outcome = await follower.run();
    } catch (err) {
      this.failure =
        err instanceof StandbyMismatchError
          ? err
          : new Error(`standby: following the log failed: ${(err as Error).message}`);
      this.event("standbyFailed", this.failure.message, {});
      this.follower = null;
      return void this.finish();
    }
    if (outcome === "stopped") return;
    if (outcome === "done") {
      this.follower = null;
      return void this.finish();
    }
    this.follower = null;
    this.hold(outcome);
    if (!outcome.inMemory && !this.opts.fresh) await this.resume();
    await this.becomeLeader(outcome.inMemory ? "memory" : "checkpoint");
    await this.serve();
  }

  /** Whether this process may act as leader now (always, without ha). */
  private mayAct(): boolean {
    if (this.steppedDown !== null || this.follower) return false;
    return !this.leadership || this.leadership.valid();
  }

  /**
   * Called before acting: true when this process still leads. A lapsed lease
   * is renewed once by compare-and-set; if another coordinator has written,
   * this one steps down (and false).
   */
  private async confirmLeadership(): Promise<boolean> {
    if (this.steppedDown !== null) return false;
    if (!this.leadership || this.leadership.valid()) return true;
    await this.leadership.renew();
    if (this.leadership.valid()) return true;
    await this.stepDown(`its lease of epoch ${this.epoch} lapsed`);
    return false;
  }

  /** Appends to the log; false (and steps down) when another leader wrote or the lease is gone. */
  private async appendLog(entry: Parameters<ReplicatedLog["append"]>[0]): Promise<number | null> {
    for (;;) {
      if (!(await this.confirmLeadership())) return null;
      try {
        return await this.hlog!.append(entry);
      } catch (err) {
        if (err instanceof LogFencedError) {
          // Someone else wrote. If the lease is still ours, it was a deposed leader's late
          // append (followers ignore its older epoch): write after it. Else step down.
          await this.leadership!.renew();
          if (!this.leadership!.valid()) {
            await this.stepDown(`the log has entries of a newer leader (${err.message})`);
            return null;
          }
          this.hlog!.lastSeq = await this.hlog!.tail();
          continue;
        }
        this.log(`coordinator: appending to the log failed (${(err as Error).message}); retrying`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Appends a snapshot entry of the whole state; the lease then points followers at it. */
  private async appendSnapshot(): Promise<boolean> {
    const seq = await this.appendLog({
      type: "snapshot",
      epoch: this.epoch,
      data: this.state.snapshot(),
      hashes: this.state.hashes(),
      configHash: configHash(this.cfg),
    });
    if (seq === null) return false;
    this.sinceSnapshot = 0;
    this.snapshotWanted = false;
    this.leadership!.snapshotSeq = seq;
    this.snapshotSeqs.push(seq);
    // Keep the newest two snapshots and what follows them; a follower reading the older is not cut off.
    if (this.snapshotSeqs.length > 2) {
      const drop = this.snapshotSeqs.shift()!;
      void drop;
      await this.hlog!.purgeBefore(this.snapshotSeqs[0]).catch(() => {});
    }
    return true;
  }

  /**
   * Another coordinator leads a newer epoch: stop without publishing or
   * applying anything more. The CLI exits 0 with the line.
   */
  private async stepDown(reason: string): Promise<void> {
    if (this.steppedDown !== null) return;
    this.steppedDown = reason;
    this.isStopping = true;
    this.leadership?.stop();
    if (this.ticker) clearInterval(this.ticker);
    this.log(`coordinator: stepped down as leader of epoch ${this.epoch}: ${reason}`);
    this.publisher.event(
      "steppedDown",
      `coordinator of epoch ${this.epoch} stepped down: ${reason}`,
      { epoch: this.epoch, reason },
    );
    this.service.endAll();
    this.server.forceShutdown();
    await this.nc?.flush().catch(() => {});
    void this.http?.close();
    void this.nc?.drain().catch(() => {});
    this.lock?.release();
    this.opts.emit?.({ event: "steppedDown", epoch: this.epoch, reason });
    this.resolveDone();
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
      workers: [...(this.scheduler?.ownership() ?? [])].map(([workerId, shards]) => ({
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

  /**
   * A worker cannot evaluate (its features do not load, or extraction failed): it gets
   * no evaluation microtasks from now on, and its chunks of the evaluation under way go
   * to the workers that can evaluate, with one `evaluationFailed` event naming the worker
   * and the cause. When no live worker can evaluate, the evaluation is skipped (its other
   * microtasks cancelled). Training goes on either way (its weights never depend on an
   * evaluation).
   */
  evaluationFailed(workerId: string, taskId: string, reason: string): void {
    if (!this.evaluating) return;
    const step = this.state.step;
    const name = this.scheduler.memberName(workerId) ?? workerId;
    const moved = this.scheduler.cannotEvaluate(workerId, Date.now(), "cannot evaluate");
    const skipped = moved === null;
    this.event(
      "evaluationFailed",
      `worker ${workerId} (${name}) cannot evaluate: ${reason}; ${skipped ? `evaluation of step ${step} skipped: no worker that can evaluate is left` : "it gets no evaluation microtasks; its chunks go to the other workers"}`,
      { step, workerId, workerName: name, taskId, reason, skipped },
    );
    if (!skipped) {
      this.dispatch(moved);
      return;
    }
    this.dispatch(this.scheduler.abandonEvaluation("evaluation skipped"));
    this.evaluating(null);
  }

  /** Logs a line and publishes the event on agon.<run>.events (schema 1). */
  event(type: string, message: string, fields: object): void {
    this.log(`coordinator: ${message}`);
    this.publisher.event(type, message, fields);
  }

  /** The current phase, as traces name it. */
  private phaseIds(): { step: number; phase: number } {
    return { step: this.state.step, phase: this.state.phase };
  }

  private publish(net: Net): void {
    if (!this.mayAct()) return;
    this.publisher.params(net, this.state.versions[net], this.state.weights[net]);
  }

  private startPhase(): void {
    if (this.isStopping) return;
    if (tracing) trace({ event: "phase.start", who: "coordinator", ...this.phaseIds() });
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

  /**
   * An evaluation (eval.every) as a phase of evaluation microtasks between training phases:
   * the generator to evaluate is kept for FetchParams "EVAL", the workers each compute
   * the feature statistics of their chunks' tree nodes, and the tree is completed over
   * their results in chunk order, so the bits are those of `agon train` and `agon eval`
   * for any number of workers. Lost or late workers' chunks move on as microtasks do.
   * Resolves null when the coordinator stops first.
   */
  private evaluateOnWorkers(state: TrainingState): Promise<FeatureSums | null> {
    const evalCfg = this.cfg.eval;
    if (!evalCfg || this.isStopping) return Promise.resolve(null);
    if (this.scheduler.liveCount() > 0 && !this.scheduler.canEvaluate()) {
      this.event(
        "evaluationFailed",
        `evaluation of step ${state.step} skipped: none of the workers can evaluate (each answered an evaluation with an error before; see their lines)`,
        { step: state.step, skipped: true },
      );
      return Promise.resolve(null);
    }
    this.publisher.evaluation(state.step, state.sampleWeights);
    this.computeByWorker.clear();
    return new Promise((resolve) => {
      this.evaluating = (sums) => {
        this.evaluating = null;
        resolve(sums);
      };
      this.dispatch(
        this.scheduler.startPhase(state.step, 0, { ...state.versions }, Date.now(), {
          kind: "eval",
          evaluation: { width: evalChunks(evalCfg.n, chunkSizeOfConfig(this.cfg)).length },
        }),
      );
    });
  }

  dispatch(actions: Action[]): void {
    // A leader whose lease ran out (it was frozen, or cut off) sends nothing until it knows.
    if (!this.mayAct()) {
      void this.confirmLeadership();
      return;
    }
    for (const a of actions) {
      // A stopping coordinator hands out and reports nothing; lost workers are just dropped.
      if (this.isStopping) {
        if (a.type === "workerLost") this.service.drop(a.workerId);
        continue;
      }
      switch (a.type) {
        case "assign":
          this.service.assign(a.workerId, a.task);
          break;
        case "cancel":
          this.service.cancel(a.workerId, a.taskId, a.reason);
          break;
        case "workerLost":
          // A finishing or stopping coordinator ends the streams itself: no loss to report.
          if (!this.finishing && !this.isStopping) {
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
        case "evaluationComplete":
          if (this.evaluating) {
            try {
              this.evaluating(
                combineParts(a.parts, this.cfg.eval?.n ?? 0, chunkSizeOfConfig(this.cfg)),
              );
            } catch (err) {
              this.evaluating(null);
              void this.fail(err as Error);
            }
          }
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
    if (!(await this.confirmLeadership())) return;
    const at = this.phaseIds();
    if (tracing) trace({ event: "phase.complete", who: "coordinator", ...at });
    const update = this.state.reducePhase(parts);
    const summary = this.state.applyUpdate(update);
    if (tracing) trace({ event: "update.done", who: "coordinator", ...at });
    const metrics = this.metricsOf(summary);
    if (this.hlog && this.leadership) {
      // The phase is in the log before anyone sees its parameters: a standby never lags a worker.
      // Only what the phase changed is hashed (a sha256 pass over one network, and the EMA after G).
      const w = this.state.weights[summary.kind];
      const ema = summary.kind === "G" ? this.state.ema?.weights : undefined;
      const hashes = {
        [summary.kind]: weightsHash(w),
        ...(ema ? { ema: weightsHash(ema) } : {}),
      };
      const appended = await this.appendLog({
        type: "phase",
        epoch: this.epoch,
        update,
        adamSteps: { G: this.state.adam.G.steps, D: this.state.adam.D.steps },
        hashes,
        metrics,
      });
      if (!appended) return;
      if (++this.sinceSnapshot >= SNAPSHOT_EVERY || this.snapshotWanted)
        await this.appendSnapshot();
    }
    this.publish(summary.kind);
    if (tracing) trace({ event: "publish.done", who: "coordinator", ...at });
    const signals = await this.recorder.afterPhase(this.state, summary, metrics);
    if (tracing) trace({ event: "record.done", who: "coordinator", ...at });
    if (signals.some((x) => x.type === "nonFinite"))
      return this.diverged(summary.step, "non-finite loss");
    if (this.state.done) await this.finish();
    else this.startPhase();
  }

  /** The metrics line of a phase just applied. */
  private metricsOf(summary: PhaseSummary): object {
    return {
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
    };
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
    if (this.hlog && !(await this.appendSnapshot())) return;
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
            // What computed the weights: the workers' backends ("coordinator" before any joined).
            backend: [...this.service.backendsSeen].join(", ") || "coordinator",
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
      await this.nc?.flush().catch(() => {});
      if (this.failure) {
        this.opts.emit?.({ event: "failed", step: this.state.step, error: this.failure.message });
      } else {
        this.log(`done: step ${this.state.step}, G sha256 ${hashes.G}, D sha256 ${hashes.D}`);
        this.opts.emit?.({
          event: "done",
          step: this.state.step,
          hashes,
          runDir: this.cfg.run.dir,
        });
      }
      // Give workers a moment to read Finished before the server goes away.
      // The run is over: the lease is let go, so the next run with this id need not wait it out.
      setTimeout(async () => {
        if (this.steppedDown === null) await this.leadership?.release();
        void this.http?.close();
        this.server.forceShutdown();
        void this.nc?.drain().catch(() => {});
        this.lock?.release();
        this.resolveDone();
      }, 300);
    })();
    return this.finishing;
  }
}

/** A snapshot entry goes into the log every this many phases, so the log stays bounded. */
const SNAPSHOT_EVERY = 200;

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
 * grpc-js has no such map. It also turns Nagle's algorithm off on every
 * accepted connection (grpc-js does so only on the client side).
 */
function closeSilentConnections(server: grpc.Server, ms: number): void {
  const servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
  if (!(servers instanceof Map)) return;
  for (const http2Server of servers.keys()) {
    http2Server.removeAllListeners("timeout");
    http2Server.setTimeout(ms);
    // Node emits the expired connection's session with "timeout".
    http2Server.on("timeout", (session: Http2Session) => session.destroy());
    // Nagle's algorithm off, as grpc-js does on the client side: a microtask pushed right
    // after another small message would otherwise wait for the worker's delayed ACK
    // (traced: 11-16 ms of a ring phase's ~25 ms outside compute).
    http2Server.on("connection", (socket: Socket) => socket.setNoDelay(true));
  }
}

/**
 * gRPC's bind failure ("No address added out of total 1 resolved errors: [listen
 * EADDRINUSE: …]") as one line that names the address and what to do.
 */
function bindError(listen: string, err: Error): Error {
  const code = /\b(EADDRINUSE|EACCES|EADDRNOTAVAIL)\b/.exec(err.message)?.[1];
  const why =
    code === "EADDRINUSE"
      ? "the address is already in use; choose another port or stop what listens there"
      : code === "EACCES"
        ? "permission denied (ports below 1024 need privileges); choose a port ≥ 1024"
        : code === "EADDRNOTAVAIL"
          ? "no network interface of this machine has that address; use 0.0.0.0 or one of its own"
          : err.message.split("\n")[0];
  return new ConfigError(`--listen ${listen}: cannot listen: ${why}`);
}
