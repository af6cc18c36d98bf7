// The coordinator's gRPC face: admission (join token, sessions), the Work
// streams, and validation of every inbound gradient before the scheduler sees
// it. It decides nothing about training; it turns calls into scheduler events
// and scheduler actions into messages.
import * as grpc from "@grpc/grpc-js";
import type { CoordinatorHandlers } from "../proto/gen/agon/v1/Coordinator.js";
import type { CoordinatorMessage } from "../proto/gen/agon/v1/CoordinatorMessage.js";
import type { GradientChunk__Output } from "../proto/gen/agon/v1/GradientChunk.js";
import type { GradientHeader__Output } from "../proto/gen/agon/v1/GradientHeader.js";
import type { ParamChunk } from "../proto/gen/agon/v1/ParamChunk.js";
import type { WorkerMessage__Output } from "../proto/gen/agon/v1/WorkerMessage.js";
import type { RunConfig } from "../shared/config.js";
import {
  chunkSizeOfConfig,
  featureDimOfConfig,
  nodeCount,
  sumsFromArray,
  sumsLength,
} from "../shared/evaluation.js";
import type { FeatureSums } from "../shared/fid.js";
import { sha256 } from "../shared/hash.js";
import type { MicrotaskResult } from "../shared/microtask.js";
import { phaseKind } from "../shared/schedule.js";
import { hasJoinToken, metadataValue, randomSecret, SESSION_METADATA } from "../shared/security.js";
import { trace, traceIds, tracing } from "../shared/trace.js";
import {
  ChunkAssembler,
  checkDtype,
  chunksOf,
  LEASE_LEFT_MS_KEY,
  STOPPING_DETAILS,
  WireError,
  wireDtype,
} from "../shared/wire.js";
import type { RunStatus } from "./http.js";
import type { Publisher } from "./publisher.js";
import type { Action, PhaseResult, Scheduler, TaskRef } from "./scheduler.js";

/** A peer-chosen string cut to 64 characters before it goes into a log line, event or status. */
export function clip(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
}

/** What the service needs from the coordinator around it. */
export interface ServiceCore {
  readonly cfg: RunConfig;
  /** sha256 of the run's dataset; Join refuses a worker whose copy differs. */
  readonly datasetFingerprint: string;
  /** sha256 of the run's Inception weights (eval.features inception); "" without. */
  readonly inceptionSha256: string;
  readonly scheduler: Scheduler;
  readonly publisher: Publisher;
  /** Parameter counts of G and D. */
  readonly sizes: { G: number; D: number };
  /** Logs a line and publishes the event. */
  event(type: string, message: string, fields: object): void;
  /** Carries out scheduler actions. */
  dispatch(actions: Action[]): void;
  /** The run has finished (Finished goes to every stream that says hello). */
  finished(): boolean;
  /** The coordinator is stopping: gradients are refused. */
  stopping(): boolean;
  status(): RunStatus & { versions: { G: number; D: number } };
  /** The holder of a microtask sent NaN/Inf for it. */
  nonFiniteGradient(workerId: string, taskId: string): void;
  /** A gradient was accepted; `seconds` is the compute time its worker reported. */
  accepted(workerId: string, seconds: number): void;
  /** A worker cannot compute evaluation microtask `taskId` (reason: one line, clipped). */
  evaluationFailed(workerId: string, taskId: string, reason: string): void;
  /** The leader's fencing epoch (coordinator/ha/lease.ts); 0 without --ha. */
  readonly epoch: number;
  /**
   * Whether this coordinator serves workers now. False while a hot standby
   * follows (it listens early, so workers that know its address are connected
   * the moment it takes over): every call is refused with UNAVAILABLE and
   * NOT_LEADING_DETAILS, which a worker takes as "try the next address".
   */
  serving(): boolean;
}

/** A peer's one-line reason cut to its first line and 256 characters. */
function clip256(s: string): string {
  const line = s.split("\n")[0];
  return line.length > 256 ? `${line.slice(0, 256)}…` : line;
}

/** The details of the UNAVAILABLE a following standby answers every call with. */
export const NOT_LEADING_DETAILS = "a hot standby, not leading; the leader is elsewhere";

export interface ServiceOptions {
  /** Every call must carry this token; none when absent. */
  joinToken?: string;
  /** Malformed gradients a worker may send before it is evicted. Default 5. */
  maxStrikes?: number;
}

type WorkStream = grpc.ServerDuplexStream<WorkerMessage__Output, CoordinatorMessage>;

/**
 * Gradient uploads one session (or all callers without a valid session,
 * together) may have open at once; more are refused with RESOURCE_EXHAUSTED.
 * A worker keeps at most 2 (worker.ts UPLOADS_IN_FLIGHT).
 */
export const MAX_UPLOADS_PER_SESSION = 4;

export class CoordinatorService {
  /** The open Work stream of each connected worker. */
  private readonly streams = new Map<string, WorkStream>();
  /** sha256 of each live session secret → the worker it belongs to. */
  private readonly sessions = new Map<string, string>();
  /** Malformed gradients per worker since it joined. */
  private readonly strikes = new Map<string, number>();
  /** Gradient bytes received so far. */
  bytesIn = 0;
  /** Open gradient uploads per sender (worker id, or "" for callers without a session). */
  private readonly uploads = new Map<string, number>();
  /** The backend each worker reported at its last Join (describeBackend's words). */
  private readonly backends = new Map<string, string>();
  /** Every backend a worker of this run joined with, in order of first appearance. */
  readonly backendsSeen = new Set<string>();
  /** The sets of backends already warned about (sorted, joined), so each is said once. */
  private readonly warnedBackends = new Set<string>();

  constructor(
    private readonly core: ServiceCore,
    private readonly opts: ServiceOptions,
  ) {}

  /**
   * Records a joined worker's backend and, when the members now compute on more than one,
   * says so once per set: different backends (or OpenBLAS kernels) round differently, so
   * the run's weights then depend on which worker computed which microtask and will not
   * equal `agon train`'s bit for bit. Training goes on.
   */
  private noteBackend(workerId: string, backend: string): void {
    this.backends.set(workerId, backend);
    this.backendsSeen.add(backend);
    for (const id of this.backends.keys()) {
      if (!this.core.scheduler.isMember(id)) this.backends.delete(id);
    }
    const distinct = [...new Set(this.backends.values())].sort();
    const key = distinct.join("\n");
    if (distinct.length < 2 || this.warnedBackends.has(key)) return;
    this.warnedBackends.add(key);
    const who = distinct.map((b) => {
      const ids = [...this.backends].filter(([, v]) => v === b).map(([id]) => id);
      return `${ids.join(", ")} on ${b}`;
    });
    this.core.event(
      "mixedBackends",
      `workers compute on different backends (${who.join("; ")}): they round differently, so this run's weights depend on which worker computes which microtask and will not match agon train's bit for bit; give every worker the same --backend (and OPENBLAS_CORETYPE for blas)`,
      { backends: Object.fromEntries(this.backends) },
    );
  }

  /** Sends a microtask to its worker. */
  assign(workerId: string, task: TaskRef): void {
    const { publisher } = this.core;
    if (tracing) trace({ event: "task.sent", who: workerId, ...traceIds(task) });
    // An evaluation microtask names the generator it evaluates; a training one its G and D versions.
    const checksums = task.evaluation
      ? { evaluation: { weightsSha256: publisher.currentEvaluation()?.encoded.checksum ?? "" } }
      : {
          gSha256: publisher.checksumOf("G", task.versions.G),
          dSha256: publisher.checksumOf("D", task.versions.D),
        };
    this.streams.get(workerId)?.write({
      task: {
        taskId: task.taskId,
        step: task.step,
        phase: task.phase,
        shard: task.shard,
        shardEnd: task.shardEnd,
        gVersion: task.versions.G,
        dVersion: task.versions.D,
        deadlineMs: 0,
        ...checksums,
        epoch: this.core.epoch,
      },
    });
  }

  /** Tells a worker to drop a microtask. */
  cancel(workerId: string, taskId: string, reason: string): void {
    this.streams.get(workerId)?.write({ cancel: { taskId, reason } });
  }

  /** A worker is gone: its stream ends, and its session and strikes go with it. */
  drop(workerId: string): void {
    const s = this.streams.get(workerId);
    this.streams.delete(workerId);
    s?.end();
    // A lost worker joins again for a new session, so these do not pile up over many joins.
    this.endSessions(workerId);
    this.strikes.delete(workerId);
  }

  /** Tells every connected worker the run is finished at `step` and ends their streams. */
  finishAll(step: number): void {
    for (const s of this.streams.values()) {
      s.write({ finished: { step } });
      s.end();
    }
  }

  /**
   * Ends every Work stream (the coordinator is stopping) with UNAVAILABLE and
   * STOPPING_DETAILS, so a worker can tell a requested stop from a crash.
   */
  endAll(): void {
    for (const s of this.streams.values()) {
      s.emit("error", { code: grpc.status.UNAVAILABLE, details: STOPPING_DETAILS });
    }
  }

  /**
   * Refuses a call without the run's join token (UNAUTHENTICATED, and an
   * event naming the peer), and every call while this coordinator does not
   * serve (a standby following: UNAVAILABLE). Returns whether the call may go on.
   */
  private admit(
    call: { metadata: grpc.Metadata; getPeer(): string },
    rpc: string,
    refuse: (err: Partial<grpc.StatusObject>) => void,
  ): boolean {
    if (hasJoinToken(call.metadata, this.opts.joinToken)) {
      if (this.core.serving()) return true;
      refuse({ code: grpc.status.UNAVAILABLE, details: NOT_LEADING_DETAILS });
      return false;
    }
    const reason = "missing or wrong join token";
    this.core.event("callRejected", `${rpc} from ${call.getPeer()} rejected: ${reason}`, {
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
    return workerId !== undefined && this.core.scheduler.isMember(workerId) ? workerId : undefined;
  }

  private endSessions(workerId: string): void {
    for (const [key, id] of this.sessions) if (id === workerId) this.sessions.delete(key);
  }

  /**
   * A worker sent a malformed gradient. After `maxStrikes` of them it is
   * evicted: its microtasks move on and its session ends (it may join again).
   */
  private strike(workerId: string, reason: string): void {
    const { scheduler } = this.core;
    if (!scheduler.isMember(workerId)) return;
    const n = (this.strikes.get(workerId) ?? 0) + 1;
    this.strikes.set(workerId, n);
    if (n < (this.opts.maxStrikes ?? 5)) return;
    this.strikes.delete(workerId);
    this.endSessions(workerId);
    const stream = this.streams.get(workerId);
    this.streams.delete(workerId);
    this.core.event(
      "workerEvicted",
      `${workerId} evicted after ${n} malformed gradients (${reason})`,
      {
        workerId,
        reason,
      },
    );
    this.core.dispatch(scheduler.lose(workerId, `evicted: ${reason}`, Date.now()));
    stream?.emit("error", { code: grpc.status.PERMISSION_DENIED, details: "evicted" });
    stream?.end();
  }

  /**
   * Checks a gradient's header against the sender's session and the current
   * phase; returns the assembler for its chunks. Throws GradientRejection.
   */
  private openUpload(
    header: GradientHeader__Output | null,
    sender: string | undefined,
  ): ChunkAssembler {
    if (!header) throw new GradientRejection("first chunk carries no header", true);
    if (sender === undefined) throw new GradientRejection("no valid session; join first", true);
    if (header.workerId !== sender) {
      throw new GradientRejection(
        `worker id ${JSON.stringify(clip(header.workerId))} does not match the session (${sender})`,
        true,
      );
    }
    // A result for another leader's microtask (the worker followed a takeover) is stale, not malformed.
    if (Number(header.epoch) !== this.core.epoch) {
      throw new GradientRejection(
        `gradient of epoch ${header.epoch}; this coordinator leads epoch ${this.core.epoch}`,
        false,
      );
    }
    const task = this.core.scheduler.task(header.taskId);
    // A task outside the current phase (a late or stale result) is refused without a strike.
    if (!task) {
      throw new GradientRejection(
        `task ${clip(header.taskId)} is not part of the current phase`,
        false,
      );
    }
    if (task.evaluation) {
      const length = sumsLength(featureDimOfConfig(this.core.cfg));
      if (header.length !== length) {
        throw new GradientRejection(
          `evaluation statistics have ${header.length} values, expected ${length}`,
          true,
        );
      }
      try {
        checkDtype(header.dtype, "fp64", "evaluation statistics");
        return new ChunkAssembler(header.length, header.chunks, header.sha256, "fp64");
      } catch (err) {
        throw new GradientRejection((err as Error).message, true);
      }
    }
    const kind = phaseKind(this.core.cfg, task.phase);
    const expected = this.core.sizes[kind];
    if (header.length !== expected) {
      throw new GradientRejection(
        `gradient has ${header.length} values, ${kind} has ${expected}`,
        true,
      );
    }
    const dtype = this.core.cfg.transport.gradients;
    try {
      checkDtype(header.dtype, dtype, "gradient");
      return new ChunkAssembler(header.length, header.chunks, header.sha256, dtype);
    } catch (err) {
      throw new GradientRejection((err as Error).message, true);
    }
  }

  /**
   * The feature statistics a complete evaluation upload stands for, after checking the
   * sample count against the task's chunks. Throws GradientRejection.
   */
  private sumsOf(header: GradientHeader__Output, upload: ChunkAssembler): FeatureSums {
    const { cfg, scheduler } = this.core;
    const task = scheduler.task(header.taskId);
    if (!task?.evaluation) {
      throw new GradientRejection(
        `task ${clip(header.taskId)} is not part of the current evaluation`,
        false,
      );
    }
    const expected = nodeCount(
      cfg.eval?.n ?? 0,
      { lo: task.shard, hi: task.shardEnd },
      chunkSizeOfConfig(cfg),
    );
    if (header.count !== expected) {
      throw new GradientRejection(
        `count ${header.count} does not match the task's ${expected} evaluation samples`,
        true,
      );
    }
    try {
      // Non-finite statistics are kept: a generator that emits NaN scores NaN, as in agon train.
      return sumsFromArray(upload.finishFloat64(), header.count, featureDimOfConfig(cfg));
    } catch (err) {
      throw new GradientRejection((err as Error).message, true);
    }
  }

  /**
   * The microtask result a complete upload stands for, after checking the
   * values the header reports. Throws GradientRejection.
   */
  private resultOf(header: GradientHeader__Output, grad: Float32Array): MicrotaskResult {
    const { cfg, scheduler } = this.core;
    const task = scheduler.task(header.taskId);
    const isD = task !== undefined && phaseKind(cfg, task.phase) === "D";
    const shards = task ? task.shardEnd - task.shard : 1;
    if (!Number.isInteger(header.count) || header.count !== (shards * cfg.batch) / cfg.shards) {
      throw new GradientRejection(
        `count ${header.count} does not match the task's ${shards} microtask batch(es)`,
        true,
      );
    }
    for (const [field, value] of [
      ["d_loss", header.dLoss],
      ["g_loss", header.gLoss],
      ["d_real", header.dReal],
      ["d_fake", header.dFake],
    ] as const) {
      if (!Number.isFinite(value)) throw new GradientRejection(`${field} is not finite`, true);
    }
    return {
      grad,
      count: header.count,
      dLoss: isD ? header.dLoss : null,
      gLoss: header.gLoss,
      dReal: isD ? header.dReal : null,
      dFake: header.dFake,
    };
  }

  handlers(): CoordinatorHandlers {
    const core = this.core;
    return {
      Join: (call, callback) => {
        if (!this.admit(call, "Join", (e) => callback(e))) return;
        const name = call.request.workerName;
        const instance = call.request.instanceId;
        const invalid = !/^[A-Za-z0-9_.-]{1,64}$/.test(name)
          ? "worker_name must be 1-64 of [A-Za-z0-9_.-]"
          : !/^[A-Za-z0-9-]{0,64}$/.test(instance)
            ? "instance_id must be 0-64 of [A-Za-z0-9-]"
            : null;
        if (invalid) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: invalid });
          return;
        }
        /** Turns this Join away with `reason` (an event and the worker's one line). */
        const refuse = (code: grpc.status, reason: string, metadata?: grpc.Metadata) => {
          core.event("workerRefused", `worker ${name} refused at Join: ${reason}`, {
            workerName: name,
            reason,
          });
          callback({ code, details: reason, metadata });
        };
        const refusal = datasetRefusal(
          core.datasetFingerprint,
          call.request.datasetFingerprint,
          call.request.datasetError,
        );
        if (refusal) {
          refuse(grpc.status.FAILED_PRECONDITION, refusal);
          return;
        }
        const now = Date.now();
        // Two processes under one name would evict each other for ever (each re-joins when
        // replaced); the newcomer is refused, so the running one trains on and nothing loops.
        const holder = core.scheduler.nameHolder(name, instance, now);
        if (holder) {
          // The holder's lease left, so that a restarted worker whose predecessor died without
          // closing its stream (a frozen host, a cut link) can wait it out and join.
          const metadata = new grpc.Metadata();
          metadata.set(LEASE_LEFT_MS_KEY, String(holder.leaseLeftMs));
          refuse(
            grpc.status.ALREADY_EXISTS,
            nameInUse(name, holder.workerId, holder.instance),
            metadata,
          );
          return;
        }
        const { workerId, actions } = core.scheduler.join(name, now, instance);
        // A re-join under the same name starts a new session; the old secret stops
        // working (its worker id is no longer a member), and is forgotten here.
        for (const [key, id] of this.sessions) {
          if (id === workerId || !core.scheduler.isMember(id)) this.sessions.delete(key);
        }
        this.strikes.delete(workerId);
        const session = randomSecret();
        this.sessions.set(sha256(Buffer.from(session)), workerId);
        core.dispatch(actions);
        const backend = clip(call.request.backend);
        core.event("workerJoined", `${workerId} joined (backend ${backend || "?"})`, {
          workerId,
          backend,
        });
        this.noteBackend(workerId, backend || "?");
        callback(null, {
          workerId,
          leaseMs: core.scheduler.leaseMs,
          runId: core.cfg.run.id,
          configJson: JSON.stringify(core.cfg),
          session,
          datasetFingerprint: core.datasetFingerprint,
          epoch: core.epoch,
          inceptionSha256: core.inceptionSha256,
        });
      },

      RunInfo: (call, callback) => {
        if (!this.admit(call, "RunInfo", (e) => callback(e))) return;
        callback(null, {
          runId: core.cfg.run.id,
          configJson: JSON.stringify(core.cfg),
          datasetFingerprint: core.datasetFingerprint,
          inceptionSha256: core.inceptionSha256,
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
            core.dispatch(core.scheduler.lose(workerId, reason, Date.now()));
          }
        };
        call.on("data", (msg: WorkerMessage__Output) => {
          const now = Date.now();
          if (workerId === null) {
            if (
              msg.body !== "hello" ||
              !core.scheduler.isMember(msg.workerId) ||
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
            if (core.finished()) {
              call.write({ finished: { step: core.status().step } });
              call.end();
              return;
            }
            core.dispatch(core.scheduler.connect(workerId, now));
            return;
          }
          if (msg.workerId !== workerId) return; // a stream speaks for its own worker only
          if (msg.body === "heartbeat" || msg.body === "ack")
            core.scheduler.heartbeat(workerId, now);
          else if (msg.body === "leaving") lost("left cleanly");
          else if (msg.body === "evaluationFailed" && msg.evaluationFailed) {
            core.scheduler.heartbeat(workerId, now);
            const { taskId, reason } = msg.evaluationFailed;
            // Only the holder of an evaluation microtask can fail it.
            if (core.scheduler.holds(workerId, taskId) && core.scheduler.task(taskId)?.evaluation)
              core.evaluationFailed(workerId, taskId, clip256(reason));
          }
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
        const slot = sender ?? "";
        const open = this.uploads.get(slot) ?? 0;
        if (open >= MAX_UPLOADS_PER_SESSION) {
          callback({
            code: grpc.status.RESOURCE_EXHAUSTED,
            details: `at most ${MAX_UPLOADS_PER_SESSION} gradient uploads in flight per session`,
          });
          return;
        }
        this.uploads.set(slot, open + 1);
        let assembler: ChunkAssembler | null = null;
        let header: GradientHeader__Output | null = null;
        let chunksSeen = 0;
        // The call is answered once: on the first fault (at once, so a bad upload holds
        // nothing while its sender dawdles), when idle past the lease, or at its end.
        let answered = false;
        const answer = (): boolean => {
          if (answered) return false;
          answered = true;
          clearTimeout(idle);
          const left = (this.uploads.get(slot) ?? 1) - 1;
          if (left > 0) this.uploads.set(slot, left);
          else this.uploads.delete(slot);
          assembler = null;
          return true;
        };
        const reject = (reason: string, isMalformed: boolean, quiet = false) => {
          const taskId = header ? clip(header.taskId) : null;
          if (!answer()) return;
          // A gradient that arrives while the coordinator stops is expected, not an event.
          if (quiet) return callback(null, { accepted: false, reason });
          core.event("gradientRejected", `rejected a gradient: ${reason}`, {
            workerId: sender ?? null,
            taskId,
            reason,
          });
          callback(null, { accepted: false, reason });
          if (isMalformed && sender !== undefined) this.strike(sender, reason);
        };
        const idleMs = core.scheduler.leaseMs;
        const idle = setTimeout(
          () => reject(`upload idle for ${idleMs} ms (no chunk, no end)`, false),
          idleMs,
        );
        call.on("cancelled", () => answer());
        call.on("error", () => answer());
        call.on("data", (chunk: GradientChunk__Output) => {
          if (answered) return;
          idle.refresh();
          try {
            chunksSeen += 1;
            if (!assembler) {
              header = chunk.header;
              assembler = this.openUpload(header, sender);
              const task = tracing && header ? core.scheduler.task(header.taskId) : undefined;
              if (task) trace({ event: "upload.recv", who: header!.workerId, ...traceIds(task) });
            } else if (chunk.header) {
              throw new WireError("only the first chunk may carry a header");
            }
            if (chunksSeen > assembler.chunks) {
              throw new WireError(`more than the announced ${assembler.chunks} chunks`);
            }
            assembler.add(chunk.index, chunk.data);
            this.bytesIn += chunk.data.byteLength;
          } catch (err) {
            // Everything but a late result is the sender's fault.
            const r =
              err instanceof GradientRejection
                ? err
                : new GradientRejection((err as Error).message, true);
            reject(r.message, r.malformed);
          }
        });
        call.on("end", () => {
          if (answered) return;
          if (core.stopping()) return reject("coordinator is stopping", false, true);
          const upload = assembler as ChunkAssembler | null;
          if (!upload || !header || sender === undefined) return reject("empty stream", true);
          const h: GradientHeader__Output = header;
          let result: PhaseResult;
          if (upload.dtype === "fp64") {
            try {
              result = this.sumsOf(h, upload);
            } catch (err) {
              const r = err as GradientRejection;
              return reject(r.message, r.malformed);
            }
          } else {
            let grad: Float32Array;
            try {
              grad = upload.finish(true);
            } catch (err) {
              const message = (err as Error).message;
              // Only the task's own holder can make NaN count towards divergence.
              if (/not finite/.test(message) && core.scheduler.holds(sender, h.taskId)) {
                core.nonFiniteGradient(sender, h.taskId);
                return reject(message, false);
              }
              return reject(message, true);
            }
            try {
              result = this.resultOf(h, grad);
            } catch (err) {
              const r = err as GradientRejection;
              return reject(r.message, r.malformed);
            }
          }
          const traced = tracing ? core.scheduler.task(h.taskId) : undefined;
          const { verdict, actions } = core.scheduler.submit(
            h.workerId,
            h.taskId,
            result,
            Date.now(),
          );
          if (!verdict.ok) return reject(verdict.reason, false);
          answer();
          const seconds =
            Number.isFinite(h.computeSeconds) && h.computeSeconds > 0 ? h.computeSeconds : 0;
          core.accepted(h.workerId, seconds);
          if (traced) trace({ event: "upload.end", who: h.workerId, ...traceIds(traced) });
          callback(null, { accepted: true, reason: "" });
          core.dispatch(actions);
        });
      },

      FetchParams: (call) => {
        if (!this.admit(call, "FetchParams", (e) => call.emit("error", e))) return;
        const net = call.request.net;
        if (net !== "G" && net !== "D" && net !== "EVAL") {
          call.emit("error", {
            code: grpc.status.INVALID_ARGUMENT,
            details: `net must be G, D or EVAL, got ${clip(net)}`,
          });
          return;
        }
        const p = net === "EVAL" ? core.publisher.currentEvaluation() : core.publisher.current(net);
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
            epoch: core.epoch,
          };
          call.write(msg);
          core.publisher.bytesOut += data.byteLength;
        });
        call.end();
      },

      Status: (call, callback) => {
        if (!this.admit(call, "Status", (e) => callback(e))) return;
        const { step, phase, steps, workers, done, versions } = core.status();
        callback(null, {
          runId: core.cfg.run.id,
          step,
          phase,
          steps,
          gVersion: versions.G,
          dVersion: versions.D,
          workers,
          done,
        });
      },
    };
  }
}

/** Why a gradient upload is refused; `malformed` when it is the sender's fault (a strike). */
class GradientRejection extends Error {
  constructor(
    message: string,
    readonly malformed: boolean,
  ) {
    super(message);
  }
}

/**
 * Why a worker's dataset is not the run's (one line naming both fingerprints),
 * or null when it is. Agon workers always send their fingerprint (or why they
 * could not open the data); a client that sends neither has not checked and is
 * let in: the fingerprint guards against honest mistakes, it is not a credential
 * (the join token is).
 */
export function datasetRefusal(run: string, worker: string, error: string): string | null {
  if (run === "" || (worker === "" && error === "")) return null;
  const short = (f: string) => (f === "" ? "none" : `${clip(f).slice(0, 16)}…`);
  if (error !== "")
    return `its dataset could not be opened (${clip(error)}); the run's fingerprint is ${short(run)}`;
  if (worker === run) return null;
  return `its dataset fingerprint ${short(worker)} differs from the run's ${short(run)}; give the worker the run's data (--data-path)`;
}

/**
 * Why a Join is refused (ALREADY_EXISTS) when `holder`, another live worker process, has
 * its name: the newcomer's one line, ending with the fix.
 */
export function nameInUse(name: string, holder: string, instance: string): string {
  return `worker name '${name}' is in use by another live process (${holder}, instance ${instance.slice(0, 8)}); give each worker its own --name`;
}
