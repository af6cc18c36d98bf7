// `agon worker`: joins the coordinator, keeps G and D at the versions its
// microtasks need (NATS broadcast first, gRPC FetchParams when a broadcast was
// missed, or always in a run without NATS), computes one gradient per microtask
// and streams it back in chunks.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import * as grpc from "@grpc/grpc-js";
import type { NatsConnection } from "@nats-io/transport-node";
import type { CoordinatorClient } from "../proto/gen/agon/v1/Coordinator.js";
import type { CoordinatorMessage__Output } from "../proto/gen/agon/v1/CoordinatorMessage.js";
import type { GradientChunk } from "../proto/gen/agon/v1/GradientChunk.js";
import type { JoinResponse__Output } from "../proto/gen/agon/v1/JoinResponse.js";
import type { Microtask__Output } from "../proto/gen/agon/v1/Microtask.js";
import type { ParamChunk__Output } from "../proto/gen/agon/v1/ParamChunk.js";
import type { RunInfoReply__Output } from "../proto/gen/agon/v1/RunInfoReply.js";
import type { WorkerMessage } from "../proto/gen/agon/v1/WorkerMessage.js";
import type { BackendName } from "../shared/backend.js";
import {
  configChanges,
  describeChanges,
  parseConfig,
  type RunConfig,
  WORKER_IGNORES,
} from "../shared/config.js";
import { DatasetError } from "../shared/data/index.js";
import { fileErrorCause } from "../shared/errno.js";
import { sha256 } from "../shared/hash.js";
import type { MicrotaskResult } from "../shared/microtask.js";
import { connectNats } from "../shared/nats.js";
import { type Net, type ParamSet, ParamSubscriber } from "../shared/params-bus.js";
import {
  type ClientTlsFiles,
  callMetadata,
  clientCredentials,
  type NatsAuthFiles,
} from "../shared/security.js";
import { trace, traceIds, tracing } from "../shared/trace.js";
import {
  CHANNEL_OPTIONS,
  ChunkAssembler,
  checkDtype,
  chunksOf,
  encodeArray,
  encodeFloat64,
  LEASE_LEFT_MS_KEY,
  loadAgonProto,
  STOPPING_DETAILS,
  type WireValues,
  wireDtype,
} from "../shared/wire.js";
import { type Compute, ComputeFailedError, startCompute } from "./compute.js";

export interface WorkerOptions {
  /**
   * The coordinator's gRPC address, or several (a leader and its standbys):
   * an unreachable one, or a standby that does not serve, sends the worker on
   * to the next.
   */
  coordinator: string | string[];
  /** NATS server URLs for parameter broadcasts; absent or empty: parameters come over gRPC FetchParams only. */
  nats?: string[];
  /** NATS credentials and TLS files. */
  natsAuth?: NatsAuthFiles;
  /** TLS to the coordinator (plaintext when empty). */
  tls?: ClientTlsFiles;
  /** The run's join token, sent with every call. */
  joinToken?: string;
  name: string;
  backend: BackendName;
  /** This host's copy of the run's dataset, instead of the config's dataset.path. */
  dataPath?: string;
  /**
   * This host's copy of the run's Inception-v3 weights (eval.features inception), instead
   * of the config's eval.inception; it must hash to the coordinator's file.
   */
  inception?: string;
  /** How long to wait for a NATS broadcast before fetching over gRPC. */
  natsWaitMs?: number;
  /**
   * How long (ms) to keep retrying Join while the coordinator is unreachable,
   * at start and after losing it mid-run; 0 waits forever. Default 10 minutes:
   * long enough for a rescheduled pod or a rebooted node to come back.
   */
  coordinatorTimeoutMs?: number;
  log?: (line: string) => void;
}

/**
 * Gradient submissions a worker keeps unanswered while it computes the next
 * microtask: 2 hides one upload behind one compute and bounds the memory held.
 */
const UPLOADS_IN_FLIGHT = 2;

/** Default for WorkerOptions.coordinatorTimeoutMs: 10 minutes. */
export const DEFAULT_COORDINATOR_TIMEOUT_MS = 600_000;

/** How often a waiting worker says what it waits for. */
const WAITING_LOG_MS = 10_000;
const FIRST_WAITING_LOG_MS = 2_000;

/** The coordinator stayed unreachable for the whole --coordinator-timeout. */
export class CoordinatorUnreachableError extends Error {}

/** Another live worker process holds this worker's --name at the coordinator (Join: ALREADY_EXISTS). */
export class WorkerNameInUseError extends Error {
  override name = "WorkerNameInUseError";
  constructor(
    message: string,
    /** Until the holder's lease runs out without a heartbeat, in ms (null: not said). */
    readonly leaseLeftMs: number | null = null,
  ) {
    super(message);
  }
}

/** Past the holder's lease, how long a refused worker waits more before it asks again. */
const NAME_LEASE_MARGIN_MS = 250;
/** The longest a refused worker waits for a holder's lease, whatever the coordinator says. */
const NAME_WAIT_MAX_MS = 120_000;

export class Worker {
  /** One client per coordinator address; `current` is the one in use. */
  private clients: CoordinatorClient[] = [];
  private current = 0;
  private readonly addresses: string[];
  /** The epoch of the coordinator this worker joined (0 without a standby). */
  private epoch = 0;
  /** Where microtasks are computed (a thread of its own on wasm and cpu). */
  private compute: Compute | null = null;
  /** G's and D's parameter counts. */
  private sizes!: { G: number; D: number };
  private cfg!: RunConfig;
  private params!: ParamSubscriber;
  private nc: NatsConnection | null = null;
  private workerId = "";
  /**
   * Drawn once per process and sent with every Join: the coordinator lets this process
   * re-join in place of its own old session, and refuses another process under its name.
   */
  private readonly instanceId = randomUUID();
  /** This session's secret from Join, sent with every later call. */
  private session = "";
  private stream: grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output> | null = null;
  private readonly queue: Microtask__Output[] = [];
  private readonly cancelled = new Set<string>();
  /** The generator of the latest evaluation microtask, fetched once per evaluation. */
  private evalWeights: { step: number; checksum: string; weights: Float32Array } | null = null;
  private busy = false;
  /** The microtask whose node is being computed, if any. */
  private computing: string | null = null;
  /** Gradient submissions not yet answered by the coordinator. */
  private readonly uploads = new Set<Promise<void>>();
  private closed = false;
  private backend = "";
  private configJson = "";
  /** sha256 of the run's Inception weights (RunInfo); "" when the run has none. */
  private inceptionSha256 = "";
  /** This worker's dataset fingerprint and open error, sent with every Join. */
  private dataset: { fingerprint: string; error: string } = { fingerprint: "", error: "" };
  private heartbeat: NodeJS.Timeout | undefined;
  /** Heartbeat period: a quarter of the coordinator's lease (from Join), at most 500 ms. */
  private heartbeatMs = 500;
  /** The pending Join retry, cleared on shutdown so a stopped worker exits at once. */
  private retry: NodeJS.Timeout | undefined;
  private stopWaiting: () => void = () => {};
  private finishedStep: number | null = null;
  /** Why the worker stopped on its own (damaged data), for the CLI's error line. */
  failure: Error | null = null;
  private readonly log: (line: string) => void;
  private resolveExit!: (code: number) => void;
  /** Resolves with the exit code when the run is finished or the worker stops. */
  readonly exited = new Promise<number>((r) => {
    this.resolveExit = r;
  });

  constructor(private readonly opts: WorkerOptions) {
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.addresses = Array.isArray(opts.coordinator) ? opts.coordinator : [opts.coordinator];
  }

  private get client(): CoordinatorClient {
    return this.clients[this.current];
  }

  /** The address in use, for log lines. */
  private get address(): string {
    return this.addresses[this.current];
  }

  async start(): Promise<void> {
    const proto = loadAgonProto();
    const tls = clientCredentials(this.opts.tls ?? {});
    this.clients = this.addresses.map(
      (address) =>
        new proto.agon.v1.Coordinator(address, tls.credentials, {
          ...CHANNEL_OPTIONS,
          ...tls.options,
        }) as unknown as CoordinatorClient,
    );
    const compute = await startCompute(this.opts.backend, this.log);
    this.compute = compute;
    if (this.closed) {
      void compute.close();
      return;
    }
    const backend = compute.backend;
    this.backend = backend;
    // Open this host's copy of the run's data before joining, so the coordinator
    // can refuse data that is not the run's before it hands out any microtask.
    const info = await this.patiently<RunInfoReply__Output>(
      "RunInfo",
      (deadline, done) =>
        this.client.RunInfo({}, callMetadata(this.opts.joinToken), { deadline }, done),
      (err) => new Error(`run info from ${this.address} failed: ${whyFailed(err)}`),
    );
    if (!info) return; // stopped while waiting for the coordinator
    this.cfg = parseConfig(JSON.parse(info.configJson), "config from coordinator");
    this.inceptionSha256 = info.inceptionSha256;
    this.checkInceptionFile(this.cfg);
    const dataset = await compute.openDataset(this.localConfig(this.cfg));
    this.dataset = { fingerprint: dataset.fingerprint, error: dataset.error };
    // What takes time (building the model, connecting to NATS) comes before Join: the
    // lease runs from Join, so the first heartbeat must follow it closely.
    if (dataset.error === "") this.sizes = await compute.prepare();
    if (this.opts.nats?.length) {
      try {
        this.nc = await connectNats(
          this.opts.nats,
          `agon-worker-${this.opts.name}`,
          this.log,
          this.opts.natsAuth,
        );
      } catch (err) {
        // Parameters still arrive over gRPC; NATS only makes it cheaper.
        this.log(`worker: NATS unavailable (${(err as Error).message}); using FetchParams only`);
      }
    }
    if (this.closed) return;
    const joined = await this.join(backend);
    if (!joined) return; // stopped while waiting for the coordinator
    this.configJson = joined.configJson;
    if (dataset.error !== "") throw new DatasetError(dataset.error);
    this.params = new ParamSubscriber(
      this.nc,
      joined.runId,
      this.sizes,
      this.cfg.transport.params,
      this.log,
    );
    this.openWork();
    const where = compute.threaded ? ", computing in its own thread" : "";
    this.log(
      `worker ${this.workerId}: ready (backend ${backend}${where}, ${dataset.count} samples)`,
    );
  }

  /** Leaves cleanly: tells the coordinator so its shards go back at once. */
  async stop(): Promise<void> {
    this.stream?.write({ workerId: this.workerId, leaving: {} });
    this.shutdown(0);
  }

  /**
   * Says at start, in one line, when this host cannot take part in the run's Inception
   * evaluations (its file is missing, unreadable or not the coordinator's: sha256 differs),
   * rather than at the first evaluation hours later; it still trains, and answers evaluation
   * microtasks with that error (the coordinator gives them to other workers). An
   * `--inception` given for a run that does not evaluate with Inception is said to be ignored.
   */
  private checkInceptionFile(cfg: RunConfig): void {
    if (this.inceptionSha256 === "") {
      if (this.opts.inception)
        this.log(
          `worker: --inception ${this.opts.inception} ignored: this run does not evaluate with Inception features (eval.features)`,
        );
      return;
    }
    const path = this.opts.inception ?? cfg.eval?.inception;
    let why: string | null = null;
    if (!path)
      why = "no Inception weights file (give this host the run's file with --inception FILE)";
    else {
      try {
        const actual = sha256(readFileSync(path));
        if (actual !== this.inceptionSha256)
          why = `${path} has sha256 ${actual.slice(0, 16)}…, the run's Inception weights ${this.inceptionSha256.slice(0, 16)}…: give this host the same file (--inception FILE)`;
      } catch (err) {
        why = `cannot read ${path}: ${fileErrorCause(err)} (give this host the run's file with --inception FILE)`;
      }
    }
    if (why)
      this.log(
        `worker: cannot evaluate: ${why}; it trains, and the coordinator gives its evaluation microtasks to other workers`,
      );
  }

  /** The run config with this host's dataset path (--data-path) in place of the coordinator's. */
  private localConfig(cfg: RunConfig): RunConfig {
    const path = this.opts.dataPath;
    if (path === undefined || !("path" in cfg.dataset)) return cfg;
    return { ...cfg, dataset: { ...cfg.dataset, path } };
  }

  /**
   * A unary call to the coordinator, retried with backoff (100 ms doubling to 2 s)
   * while the coordinator is unreachable (it may be restarting), for up to
   * coordinatorTimeoutMs; says every ~10 s what it waits for. Resolves null when
   * the worker is stopped while waiting; rejects with CoordinatorUnreachableError
   * after the timeout, or with `refused(err)` when the coordinator answers an error.
   */
  private patiently<T>(
    what: string,
    call: (deadline: number, done: (err: grpc.ServiceError | null, res?: T) => void) => void,
    refused: (err: grpc.ServiceError | null) => Error,
  ): Promise<T | null> {
    const timeoutMs = this.opts.coordinatorTimeoutMs ?? DEFAULT_COORDINATOR_TIMEOUT_MS;
    const since = Date.now();
    // The first line after 2 s (a normal start-up race stays quiet), then every ~10 s.
    let nextLog = since + FIRST_WAITING_LOG_MS;
    const limit = timeoutMs === 0 ? "no time limit" : `giving up after ${formatSeconds(timeoutMs)}`;
    return new Promise((resolve, reject) => {
      // shutdown() ends the wait at once, even between two attempts.
      this.stopWaiting = () => resolve(null);
      const attempt = (n: number) => {
        if (this.closed) {
          resolve(null);
          return;
        }
        call(Date.now() + 2000, (err, res) => {
          if (this.closed) {
            resolve(null);
            return;
          }
          if (!err && res) {
            resolve(res);
            return;
          }
          // CANCELLED: the coordinator went away mid-call (a deposed leader shutting its server down).
          const transient =
            err?.code === grpc.status.UNAVAILABLE ||
            err?.code === grpc.status.DEADLINE_EXCEEDED ||
            err?.code === grpc.status.CANCELLED;
          if (!transient) {
            reject(refused(err));
            return;
          }
          const now = Date.now();
          if (timeoutMs !== 0 && now - since >= timeoutMs) {
            reject(
              new CoordinatorUnreachableError(
                `no coordinator at ${this.addresses.join(", ")} for ${formatSeconds(now - since)} (--coordinator-timeout); last error: ${whyFailed(err)}; check --coordinator (host:port) and that the coordinator is running`,
              ),
            );
            return;
          }
          if (now >= nextLog) {
            nextLog = now + WAITING_LOG_MS;
            this.log(
              `worker ${this.opts.name}: waiting for the coordinator at ${this.addresses.join(" or ")} to answer ${what} (${whyFailed(err)}); ${formatSeconds(now - since)} so far, ${limit}`,
            );
          }
          // With several addresses the next one is tried at once (a standby may have taken
          // over; a following one answers UNAVAILABLE at once), and a round that found
          // none leading waits 100 ms, so a takeover is seen within ~100 ms of it; after
          // 10 s without a leader (no takeover takes that long), 1 s.
          const several = this.addresses.length > 1;
          if (several) this.current = (this.current + 1) % this.addresses.length;
          const roundMs = now - since < 10_000 ? 100 : 1000;
          this.retry = setTimeout(
            () => attempt(n + 1),
            several ? (this.current === 0 ? roundMs : 0) : Math.min(2000, 100 * 2 ** n),
          );
        });
      };
      attempt(0);
    });
  }

  /**
   * Joins (patiently, see above) with this host's dataset fingerprint. Resolves null
   * when stopped while waiting; a refusal of this host's data rejects with a
   * DatasetError naming both fingerprints.
   */
  private async join(
    backend: string,
  ): Promise<{ workerId: string; runId: string; configJson: string } | null> {
    // Refused for a name another process holds: when that one died without closing its
    // stream (a frozen host, a cut link), its lease still runs; wait it out once and ask
    // again. A second refusal means the holder heartbeats: it is alive, and keeps the name.
    try {
      return await this.joinOnce(backend);
    } catch (err) {
      if (!(err instanceof WorkerNameInUseError) || err.leaseLeftMs == null) throw err;
      const waitMs = Math.min(NAME_WAIT_MAX_MS, err.leaseLeftMs + NAME_LEASE_MARGIN_MS);
      this.log(
        `worker ${this.opts.name}: ${err.message.replace(/; give each worker its own --name$/, "")}; waiting ${formatSeconds(waitMs)} for its lease to run out, then asking again`,
      );
      const woke = await new Promise<boolean>((done) => {
        const timer = setTimeout(() => done(true), waitMs);
        this.stopWaiting = () => {
          clearTimeout(timer);
          done(false);
        };
      });
      if (!woke || this.closed) return null;
      return await this.joinOnce(backend);
    }
  }

  /** One patient Join (see join). */
  private async joinOnce(
    backend: string,
  ): Promise<{ workerId: string; runId: string; configJson: string } | null> {
    const res = await this.patiently<JoinResponse__Output>(
      "Join",
      (deadline, done) =>
        this.client.Join(
          {
            workerName: this.opts.name,
            backend,
            capabilities: { cores: cpus().length },
            datasetFingerprint: this.dataset.fingerprint,
            datasetError: this.dataset.error,
            instanceId: this.instanceId,
          },
          callMetadata(this.opts.joinToken),
          { deadline },
          done,
        ),
      (err) =>
        err?.code === grpc.status.FAILED_PRECONDITION
          ? new DatasetError(`the coordinator refused this worker: ${err.details}`)
          : err?.code === grpc.status.ALREADY_EXISTS
            ? new WorkerNameInUseError(err.details, leaseLeftMs(err.metadata))
            : new Error(`join ${this.address} failed: ${whyFailed(err)}`),
    );
    if (!res) return null;
    this.workerId = res.workerId;
    this.session = res.session;
    if (this.addresses.length > 1 && Number(res.epoch) !== this.epoch) {
      this.log(
        `worker ${this.opts.name}: following the coordinator at ${this.address} (epoch ${res.epoch})`,
      );
    }
    this.epoch = Number(res.epoch);
    if (res.leaseMs > 0) this.heartbeatMs = Math.max(10, Math.min(500, res.leaseMs / 4));
    return res;
  }

  private openWork(): void {
    const stream = this.client.Work(this.metadata());
    this.stream = stream;
    stream.write({ workerId: this.workerId, hello: {} });
    stream.on("data", (msg: CoordinatorMessage__Output) => {
      if (msg.body === "task" && msg.task) {
        if (tracing) trace({ event: "task.recv", who: this.workerId, ...traceIds(msg.task) });
        stream.write({ workerId: this.workerId, ack: { taskId: msg.task.taskId } });
        this.queue.push(msg.task);
        void this.drain();
      } else if (msg.body === "cancel" && msg.cancel) {
        this.cancelled.add(msg.cancel.taskId);
        if (this.computing === msg.cancel.taskId) this.compute?.cancel();
      } else if (msg.body === "finished" && msg.finished) {
        this.finishedStep = msg.finished.step;
      }
    });
    const closed = (why: string) => {
      if (this.stream !== stream) return;
      this.stream = null;
      if (this.finishedStep !== null) {
        this.log(`worker ${this.workerId}: run finished at step ${this.finishedStep}`);
        this.shutdown(0);
      } else if (!this.closed) {
        this.log(
          why === STOPPING_DETAILS
            ? `worker ${this.workerId}: ${why}; waiting for it to come back`
            : `worker ${this.workerId}: lost the coordinator (${why}); re-joining`,
        );
        void this.rejoin();
      }
    };
    stream.on("end", () => closed("stream ended"));
    stream.on("error", (err: grpc.ServiceError) => closed(err.details || err.message));
    this.heartbeat = setInterval(() => {
      const taskIds = this.queue.map((t) => t.taskId);
      this.stream?.write({ workerId: this.workerId, heartbeat: { taskIds } });
    }, this.heartbeatMs);
  }

  /**
   * After the coordinator restarts or the link drops: join again under the same
   * name (with backoff), drop what the old session held, and carry on.
   */
  private async rejoin(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.queue.length = 0;
    this.cancelled.clear();
    try {
      const joined = await this.join(this.backend);
      if (!joined) return; // stopped while waiting
      // A restarted coordinator may run on with more steps, other checkpoint or sample
      // settings: nothing a worker reads. Anything else needs a worker started for it.
      const changes = configChanges(
        JSON.parse(this.configJson),
        JSON.parse(joined.configJson),
        WORKER_IGNORES,
      );
      if (changes.length > 0) {
        this.log(
          `agon: error: worker ${this.opts.name}: the coordinator now runs a different config (${describeChanges(changes)}); start the worker again to join that run`,
        );
        this.shutdown(1);
        return;
      }
      this.configJson = joined.configJson;
    } catch (err) {
      if (err instanceof WorkerNameInUseError) {
        // Its lease ran out and another process took the name: that one trains on.
        this.failure = err;
        this.shutdown(2);
        return;
      }
      this.log(
        `agon: error: worker ${this.opts.name} could not re-join: ${(err as Error).message}`,
      );
      this.shutdown(1);
      return;
    }
    if (this.closed) return;
    // A resumed coordinator may hand out versions this worker has seen before.
    this.params.reset();
    this.openWork();
    this.log(`worker ${this.workerId}: re-joined`);
  }

  private metadata(): grpc.Metadata {
    return callMetadata(this.opts.joinToken, this.session);
  }

  private shutdown(code: number): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.retry) clearTimeout(this.retry);
    this.stopWaiting();
    this.stream?.end();
    this.stream = null;
    this.params?.close();
    this.compute?.cancel();
    void this.compute?.close();
    void (this.nc?.drain().catch(() => {}) ?? Promise.resolve()).then(() => {
      for (const c of this.clients) c.close();
      this.resolveExit(code);
    });
  }

  /**
   * Runs queued microtasks one at a time, in arrival order. A gradient's upload
   * overlaps the next microtask's compute; at most UPLOADS_IN_FLIGHT are
   * unanswered at once. Bits cannot change: the coordinator orders by shard.
   */
  private async drain(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (let task = this.queue.shift(); task && !this.closed; task = this.queue.shift()) {
        if (this.cancelled.delete(task.taskId)) continue;
        try {
          const computed = await this.runTask(task);
          if (computed) {
            const id = task.taskId;
            const tracked = computed.upload
              .catch((err: Error) => {
                if (this.stream !== null && !this.closed)
                  this.log(`worker ${this.workerId}: ${id} upload failed: ${err.message}`);
              })
              .finally(() => this.uploads.delete(tracked));
            this.uploads.add(tracked);
          }
          while (this.uploads.size >= UPLOADS_IN_FLIGHT) await Promise.race(this.uploads);
        } catch (err) {
          if (err instanceof ComputeFailedError && !this.closed) {
            this.failure = err;
            this.stream?.write({ workerId: this.workerId, leaving: {} });
            this.shutdown(1);
            return;
          }
          if (err instanceof DatasetError) {
            // Damaged data never trains: stop, and the coordinator hands the shard to others.
            this.log(`worker ${this.workerId}: stopping: ${err.message}`);
            this.failure = err;
            this.stream?.write({ workerId: this.workerId, leaving: {} });
            this.shutdown(2);
            return;
          }
          if (!this.closed)
            this.log(`worker ${this.workerId}: ${task.taskId} failed: ${(err as Error).message}`);
        }
      }
    } finally {
      this.busy = false;
    }
  }

  /** Computes a microtask's gradient; resolves once computed, with its upload still under way. */
  private async runTask(task: Microtask__Output): Promise<{ upload: Promise<void> } | null> {
    if (task.evaluation) return this.runEvaluation(task, task.evaluation.weightsSha256);
    const g = await this.paramsAt("G", task.gVersion, task.gSha256);
    const d = await this.paramsAt("D", task.dVersion, task.dSha256);
    if (!g || !d) {
      if (this.stream !== null && !this.closed)
        this.log(
          `worker ${this.workerId}: parameters for ${task.taskId} unavailable; skipping (coordinator moved on)`,
        );
      return null;
    }
    if (this.cancelled.delete(task.taskId) || this.closed) return null;
    if (tracing) trace({ event: "compute.start", who: this.workerId, ...traceIds(task) });
    const started = performance.now();
    // The task is a tree node: its shards one by one, summed along the tree as they come
    // (in the compute, one request per node). Only a node assigned whole is summed there,
    // so no shard of another worker is ever in it.
    const node = {
      step: task.step,
      phase: task.phase,
      lo: task.shard,
      hi: Math.max(task.shardEnd, task.shard + 1),
    };
    this.computing = task.taskId;
    let result: MicrotaskResult | null;
    try {
      result = await this.compute!.runNode(node, g, d);
    } finally {
      this.computing = null;
    }
    // A cancellation that came in while a shard computed stopped the node before the next one.
    if (result === null) {
      this.cancelled.delete(task.taskId);
      return null;
    }
    const seconds = (performance.now() - started) / 1000;
    if (tracing) trace({ event: "compute.end", who: this.workerId, ...traceIds(task) });
    return { upload: this.submit(task, result, seconds) };
  }

  /**
   * An evaluation microtask: the feature statistics of the evaluation chunks
   * [shard, shard_end) of the generator the coordinator evaluates (FetchParams "EVAL",
   * fp32, checked against the task's sha256), summed along the chunks' tree, sent as
   * float64 values on the gradient stream.
   */
  private async runEvaluation(
    task: Microtask__Output,
    weightsSha256: string,
  ): Promise<{ upload: Promise<void> } | null> {
    const g = await this.evaluationWeights(task.step, weightsSha256);
    if (!g) {
      this.log(
        `worker ${this.workerId}: generator for ${task.taskId} unavailable; skipping (coordinator moved on)`,
      );
      return null;
    }
    const node = { lo: task.shard, hi: Math.max(task.shardEnd, task.shard + 1) };
    const started = performance.now();
    // Computed where microtasks are (the compute thread on wasm and cpu), so heartbeats go on.
    const result = await this.compute!.evaluate(g, node, {
      dataPath: this.opts.dataPath,
      inception: {
        path: this.opts.inception,
        sha256: this.inceptionSha256 === "" ? undefined : this.inceptionSha256,
      },
    });
    if (result.error !== undefined) {
      // Answered, so the coordinator skips this evaluation at once instead of waiting on it.
      this.log(`worker ${this.workerId}: cannot evaluate ${task.taskId}: ${result.error}`);
      if (!this.closed)
        this.stream?.write({
          workerId: this.workerId,
          evaluationFailed: { taskId: task.taskId, reason: result.error },
        });
      return null;
    }
    if (this.cancelled.delete(task.taskId) || this.closed) return null;
    const sums = result;
    const seconds = (performance.now() - started) / 1000;
    const encoded = encodeFloat64(sums.values);
    return {
      upload: this.upload(task, { ...encoded, dtype: "fp64" }, seconds, {
        count: sums.n,
        dLoss: 0,
        gLoss: 0,
        dReal: 0,
        dFake: 0,
        hasD: false,
      }),
    };
  }

  /** The generator of the evaluation at `step` (kept while the same step is evaluated). */
  private async evaluationWeights(step: number, checksum: string): Promise<Float32Array | null> {
    if (this.evalWeights?.step === step && this.evalWeights.checksum === checksum)
      return this.evalWeights.weights;
    for (let attempt = 0; attempt < 5 && !this.closed; attempt++) {
      try {
        const fetched = await this.fetchParams("EVAL", step);
        if (fetched.checksum !== checksum) {
          this.log(
            `worker ${this.workerId}: the evaluation generator of step ${step} does not match the task's checksum; skipping`,
          );
          return null;
        }
        this.evalWeights = { step, checksum, weights: fetched.weights };
        return fetched.weights;
      } catch (err) {
        this.log(
          `worker ${this.workerId}: FetchParams EVAL v${step} failed: ${(err as Error).message}`,
        );
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
    return null;
  }

  /** Streams a gradient to the coordinator in chunks; resolves when it answers. */
  private submit(task: Microtask__Output, result: MicrotaskResult, seconds: number): Promise<void> {
    // The runner rounded the gradient to transport.gradients, so encoding it is exact.
    const encoded = encodeArray(result.grad, this.cfg.transport.gradients);
    return this.upload(task, encoded, seconds, {
      count: result.count,
      dLoss: result.dLoss ?? 0,
      gLoss: result.gLoss,
      dReal: result.dReal ?? 0,
      dFake: result.dFake,
      hasD: result.dLoss !== null,
    });
  }

  /** Streams a task's encoded values with their header in chunks; resolves when the coordinator answers. */
  private async upload(
    task: Microtask__Output,
    encoded: { dtype: WireValues; length: number; bytes: Uint8Array; checksum: string },
    seconds: number,
    stats: {
      count: number;
      dLoss: number;
      gLoss: number;
      dReal: number;
      dFake: number;
      hasD: boolean;
    },
  ): Promise<void> {
    const chunks = chunksOf(encoded.bytes);
    const reply = await new Promise<{ accepted: boolean; reason: string }>((resolve) => {
      const call = this.client.SubmitGradients(this.metadata(), (err, res) => {
        resolve(err || !res ? { accepted: false, reason: whyFailed(err) } : res);
      });
      chunks.forEach((data, index) => {
        const msg: GradientChunk = { index, data };
        if (index === 0) {
          msg.header = {
            workerId: this.workerId,
            taskId: task.taskId,
            length: encoded.length,
            sha256: encoded.checksum,
            chunks: chunks.length,
            dtype: wireDtype(encoded.dtype),
            ...stats,
            computeSeconds: seconds,
            epoch: task.epoch,
          };
        }
        call.write(msg);
      });
      call.end();
      if (tracing) trace({ event: "upload.sent", who: this.workerId, ...traceIds(task) });
    });
    if (tracing) trace({ event: "upload.acked", who: this.workerId, ...traceIds(task) });
    // A coordinator that is gone or stopping is reported once, by the Work stream.
    if (
      !reply.accepted &&
      !this.closed &&
      this.stream !== null &&
      reply.reason !== "coordinator is stopping"
    )
      this.log(`worker ${this.workerId}: ${task.taskId} not accepted: ${reply.reason}`);
  }

  /**
   * The network at exactly `version`: from the NATS cache (after a short wait
   * for the broadcast) when it hashes to the `checksum` the coordinator sent
   * with the microtask over the authenticated gRPC stream, else over gRPC.
   * A forged or corrupted broadcast is therefore never used.
   */
  private async paramsAt(net: Net, version: number, checksum: string): Promise<ParamSet | null> {
    const cached = await this.params.waitFor(
      net,
      version,
      this.nc ? (this.opts.natsWaitMs ?? 200) : 0,
    );
    if (cached && checksum !== "" && cached.checksum === checksum) return cached;
    if (cached && checksum !== "") {
      this.log(
        `worker ${this.workerId}: NATS ${net} v${version} does not match the coordinator's checksum; fetching it`,
      );
      this.params.discard(net, version);
    }
    const fetched = await this.fetchWithRetry(net, version);
    if (fetched && checksum !== "" && fetched.checksum !== checksum) {
      this.log(
        `worker ${this.workerId}: ${net} v${version} from the coordinator does not match its own checksum; skipping`,
      );
      return null;
    }
    return fetched;
  }

  /** FetchParams with retries and backoff; null when the coordinator does not have that version. */
  private async fetchWithRetry(net: Net, version: number): Promise<ParamSet | null> {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const fetched = await this.fetchParams(net, version);
        this.params.offer(fetched);
        return fetched;
      } catch (err) {
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
        // A coordinator that stopped or went away is reported once, by the Work stream.
        if (this.stream === null || this.closed) return null;
        this.log(
          `worker ${this.workerId}: FetchParams ${net} v${version} failed: ${(err as Error).message}`,
        );
      }
    }
    return null;
  }

  /** One FetchParams call; net "EVAL" is the evaluation generator (fp32, G's size; not a ParamSet to keep). */
  private fetchParams<N extends Net | "EVAL">(
    net: N,
    version: number,
  ): Promise<{ net: N; version: number; weights: Float32Array; checksum: string }> {
    return new Promise((resolve, reject) => {
      const call = this.client.FetchParams({ net, version }, this.metadata());
      let assembler: ChunkAssembler | null = null;
      let failure: Error | null = null;
      call.on("data", (chunk: ParamChunk__Output) => {
        if (failure) return;
        try {
          if (chunk.net !== net || chunk.version !== version)
            throw new Error("chunk for another net or version");
          if (!assembler) {
            const dtype = net === "EVAL" ? "fp32" : this.cfg.transport.params;
            checkDtype(chunk.dtype, dtype, `${net} v${version}`);
            assembler = new ChunkAssembler(chunk.length, chunk.chunks, chunk.sha256, dtype);
          }
          assembler.add(chunk.index, chunk.data);
        } catch (err) {
          failure = err as Error;
          call.cancel();
        }
      });
      call.on("error", (err: grpc.ServiceError) => {
        if (!failure) reject(new Error(whyFailed(err)));
        else reject(failure);
      });
      call.on("end", () => {
        try {
          if (failure) throw failure;
          if (!assembler) throw new Error("no chunks");
          const expected = this.sizes[net === "D" ? "D" : "G"];
          if (assembler.length !== expected)
            throw new Error(`${net} has ${assembler.length} values, expected ${expected}`);
          resolve({ net, version, weights: assembler.finish(true), checksum: assembler.checksum });
        } catch (err) {
          reject(err);
        }
      });
    });
  }
}

/**
 * Whether two coordinators' configs (Join's config_json) describe the same
 * run: a standby has a run dir of its own, everything else must be equal.
 */
/** "45 s", "10 min", "1.5 min": a duration as a log line says it. */
function formatSeconds(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.round((s / 60) * 10) / 10} min`;
}

/** A failed call's reason in a few words: grpc-js wraps a refused connection in two sentences of prose. */
function whyFailed(err: grpc.ServiceError | null): string {
  const details = (err?.details ?? "no reply")
    .replace(/\s*Resolution note:.*$/s, "")
    .replace(/^No connection established\. Last error: (Error: )?/, "")
    .replace(/\.$/, "");
  // gRPC's and Node's wording of the usual causes, in words.
  if (/ECONNREFUSED/.test(details)) return "connection refused";
  if (/Name resolution failed|ENOTFOUND|EAI_AGAIN/.test(details)) return "host name not found";
  if (/EHOSTUNREACH|ENETUNREACH/.test(details)) return "host unreachable";
  if (/ETIMEDOUT|Deadline exceeded/i.test(details)) return "timed out";
  if (/ECONNRESET/.test(details)) return "connection reset";
  return details || "no reply";
}

/** The LEASE_LEFT_MS_KEY trailer of a refused Join, or null when absent or not a count of ms. */
function leaseLeftMs(metadata: grpc.Metadata | undefined): number | null {
  const raw = metadata?.get(LEASE_LEFT_MS_KEY)[0];
  const ms = typeof raw === "string" && /^\d{1,9}$/.test(raw) ? Number(raw) : Number.NaN;
  return Number.isFinite(ms) ? ms : null;
}
