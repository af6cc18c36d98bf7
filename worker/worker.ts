// `agon worker`: joins the coordinator, keeps G and D at the versions its
// microtasks need (NATS broadcast first, gRPC FetchParams when a broadcast was
// missed), computes one gradient per microtask and streams it back in chunks.
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
import { type BackendName, initBackend } from "../shared/backend.js";
import { parseConfig, type RunConfig } from "../shared/config.js";
import { DatasetError, openDataset, type SampleSource } from "../shared/data/index.js";
import type { MicrotaskResult } from "../shared/microtask.js";
import { connectNats } from "../shared/nats.js";
import { type Net, type ParamSet, ParamSubscriber } from "../shared/params-bus.js";
import { MicrotaskRunner } from "../shared/runner.js";
import { datasetSpec, microtaskSpec } from "../shared/schedule.js";
import {
  type ClientTlsFiles,
  callMetadata,
  clientCredentials,
  type NatsAuthFiles,
} from "../shared/security.js";
import { reduceNode } from "../shared/tree.js";
import {
  CHANNEL_OPTIONS,
  ChunkAssembler,
  checkDtype,
  chunksOf,
  encodeArray,
  loadAgonProto,
  wireDtype,
} from "../shared/wire.js";

export interface WorkerOptions {
  coordinator: string;
  nats: string[];
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

/** A task was cancelled (its result came in from elsewhere) while its shards were being computed. */
class TaskCancelled extends Error {}

/** Default for WorkerOptions.coordinatorTimeoutMs: 10 minutes. */
export const DEFAULT_COORDINATOR_TIMEOUT_MS = 600_000;

/** How often a waiting worker says what it waits for. */
const WAITING_LOG_MS = 10_000;
const FIRST_WAITING_LOG_MS = 2_000;

/** The coordinator stayed unreachable for the whole --coordinator-timeout. */
export class CoordinatorUnreachableError extends Error {}

export class Worker {
  private client!: CoordinatorClient;
  private runner!: MicrotaskRunner;
  private cfg!: RunConfig;
  private params!: ParamSubscriber;
  private nc: NatsConnection | null = null;
  private workerId = "";
  /** This session's secret from Join, sent with every later call. */
  private session = "";
  private stream: grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output> | null = null;
  private readonly queue: Microtask__Output[] = [];
  private readonly cancelled = new Set<string>();
  private busy = false;
  /** Gradient submissions not yet answered by the coordinator. */
  private readonly uploads = new Set<Promise<void>>();
  private closed = false;
  private backend = "";
  private configJson = "";
  /** This worker's dataset fingerprint and open error, sent with every Join. */
  private dataset: { fingerprint: string; error: string } = { fingerprint: "", error: "" };
  private heartbeat: NodeJS.Timeout | undefined;
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
  }

  async start(): Promise<void> {
    const proto = loadAgonProto();
    const tls = clientCredentials(this.opts.tls ?? {});
    this.client = new proto.agon.v1.Coordinator(this.opts.coordinator, tls.credentials, {
      ...CHANNEL_OPTIONS,
      ...tls.options,
    }) as unknown as CoordinatorClient;
    const backend = await initBackend(this.opts.backend, this.log);
    this.backend = backend;
    // Open this host's copy of the run's data before joining, so the coordinator
    // can refuse data that is not the run's before it hands out any microtask.
    const info = await this.patiently<RunInfoReply__Output>(
      "RunInfo",
      (deadline, done) =>
        this.client.RunInfo({}, callMetadata(this.opts.joinToken), { deadline }, done),
      (err) => new Error(`run info from ${this.opts.coordinator} failed: ${whyFailed(err)}`),
    );
    if (!info) return; // stopped while waiting for the coordinator
    this.cfg = parseConfig(JSON.parse(info.configJson), "config from coordinator");
    let dataset: SampleSource | null = null;
    try {
      dataset = await openDataset(datasetSpec(this.localConfig(this.cfg)));
      this.dataset = { fingerprint: dataset.fingerprint, error: "" };
    } catch (err) {
      if (!(err instanceof DatasetError)) throw err;
      this.dataset = { fingerprint: "", error: err.message };
    }
    const joined = await this.join(backend);
    if (!joined) return; // stopped while waiting for the coordinator
    this.configJson = joined.configJson;
    if (!dataset) throw new DatasetError(this.dataset.error);
    this.runner = new MicrotaskRunner(this.cfg, dataset);
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
    const sizes = { G: this.runner.model.g.size, D: this.runner.model.d.size };
    this.params = new ParamSubscriber(
      this.nc,
      joined.runId,
      sizes,
      this.cfg.transport.params,
      this.log,
    );
    this.openWork();
    this.log(`worker ${this.workerId}: ready (backend ${backend}, ${dataset.count} samples)`);
  }

  /** Leaves cleanly: tells the coordinator so its shards go back at once. */
  async stop(): Promise<void> {
    this.stream?.write({ workerId: this.workerId, leaving: {} });
    this.shutdown(0);
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
          const transient =
            err?.code === grpc.status.UNAVAILABLE || err?.code === grpc.status.DEADLINE_EXCEEDED;
          if (!transient) {
            reject(refused(err));
            return;
          }
          const now = Date.now();
          if (timeoutMs !== 0 && now - since >= timeoutMs) {
            reject(
              new CoordinatorUnreachableError(
                `no coordinator at ${this.opts.coordinator} for ${formatSeconds(now - since)} (--coordinator-timeout); last error: ${whyFailed(err)}`,
              ),
            );
            return;
          }
          if (now >= nextLog) {
            nextLog = now + WAITING_LOG_MS;
            this.log(
              `worker ${this.opts.name}: waiting for the coordinator at ${this.opts.coordinator} to answer ${what} (${whyFailed(err)}); ${formatSeconds(now - since)} so far, ${limit}`,
            );
          }
          this.retry = setTimeout(() => attempt(n + 1), Math.min(2000, 100 * 2 ** n));
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
          },
          callMetadata(this.opts.joinToken),
          { deadline },
          done,
        ),
      (err) =>
        err?.code === grpc.status.FAILED_PRECONDITION
          ? new DatasetError(`the coordinator refused this worker: ${err.details}`)
          : new Error(`join ${this.opts.coordinator} failed: ${whyFailed(err)}`),
    );
    if (!res) return null;
    this.workerId = res.workerId;
    this.session = res.session;
    return res;
  }

  private openWork(): void {
    const stream = this.client.Work(this.metadata());
    this.stream = stream;
    stream.write({ workerId: this.workerId, hello: {} });
    stream.on("data", (msg: CoordinatorMessage__Output) => {
      if (msg.body === "task" && msg.task) {
        stream.write({ workerId: this.workerId, ack: { taskId: msg.task.taskId } });
        this.queue.push(msg.task);
        void this.drain();
      } else if (msg.body === "cancel" && msg.cancel) {
        this.cancelled.add(msg.cancel.taskId);
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
        this.log(`worker ${this.workerId}: lost the coordinator (${why}); re-joining`);
        void this.rejoin();
      }
    };
    stream.on("end", () => closed("stream ended"));
    stream.on("error", (err: grpc.ServiceError) => closed(err.details || err.message));
    this.heartbeat = setInterval(() => {
      const taskIds = this.queue.map((t) => t.taskId);
      this.stream?.write({ workerId: this.workerId, heartbeat: { taskIds } });
    }, 500);
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
      if (joined.configJson !== this.configJson) {
        this.log(`worker ${this.workerId}: the coordinator now runs a different config; exiting`);
        this.shutdown(1);
        return;
      }
    } catch (err) {
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
    void (this.nc?.drain().catch(() => {}) ?? Promise.resolve()).then(() => {
      this.client?.close();
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
              .catch((err: Error) =>
                this.log(`worker ${this.workerId}: ${id} upload failed: ${err.message}`),
              )
              .finally(() => this.uploads.delete(tracked));
            this.uploads.add(tracked);
          }
          while (this.uploads.size >= UPLOADS_IN_FLIGHT) await Promise.race(this.uploads);
        } catch (err) {
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
    const g = await this.paramsAt("G", task.gVersion, task.gSha256);
    const d = await this.paramsAt("D", task.dVersion, task.dSha256);
    if (!g || !d) {
      this.log(
        `worker ${this.workerId}: parameters for ${task.taskId} unavailable; skipping (coordinator moved on)`,
      );
      return null;
    }
    if (this.cancelled.delete(task.taskId) || this.closed) return null;
    const started = performance.now();
    // The task is a tree node: its shards one by one, summed along the tree as they come.
    // Only a node assigned whole is summed here, so no shard of another worker is ever in it.
    const node = { lo: task.shard, hi: Math.max(task.shardEnd, task.shard + 1) };
    let result: MicrotaskResult;
    try {
      result = await reduceNode(node, this.cfg.transport.gradients, async (shard) => {
        // A microtask on wasm blocks the event loop while it computes: let heartbeats, gRPC
        // keepalive pings and cancellations through between the shards of a node.
        await new Promise((resume) => setImmediate(resume));
        if (this.cancelled.has(task.taskId) || this.closed) throw new TaskCancelled();
        const spec = microtaskSpec(this.cfg, task.step, task.phase, shard);
        // Keyed by sha256: a version's weights go to the device once, for all its microtasks.
        return this.runner.runAsync(spec, g.weights, d.weights, { G: g.checksum, D: d.checksum });
      });
    } catch (err) {
      if (!(err instanceof TaskCancelled)) throw err;
      this.cancelled.delete(task.taskId);
      return null;
    }
    const seconds = (performance.now() - started) / 1000;
    return { upload: this.submit(task, result, seconds) };
  }

  /** Streams a gradient to the coordinator in chunks; resolves when it answers. */
  private async submit(
    task: Microtask__Output,
    result: MicrotaskResult,
    seconds: number,
  ): Promise<void> {
    // The runner rounded the gradient to transport.gradients, so encoding it is exact.
    const encoded = encodeArray(result.grad, this.cfg.transport.gradients);
    const chunks = chunksOf(encoded.bytes);
    const reply = await new Promise<{ accepted: boolean; reason: string }>((resolve) => {
      const call = this.client.SubmitGradients(this.metadata(), (err, res) => {
        resolve(err || !res ? { accepted: false, reason: err?.details ?? "no reply" } : res);
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
            count: result.count,
            dLoss: result.dLoss ?? 0,
            gLoss: result.gLoss,
            dReal: result.dReal ?? 0,
            dFake: result.dFake,
            hasD: result.dLoss !== null,
            computeSeconds: seconds,
          };
        }
        call.write(msg);
      });
      call.end();
    });
    if (!reply.accepted && !this.closed)
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
        this.log(
          `worker ${this.workerId}: FetchParams ${net} v${version} failed: ${(err as Error).message}`,
        );
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
    return null;
  }

  private fetchParams(net: Net, version: number): Promise<ParamSet> {
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
            const dtype = this.cfg.transport.params;
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
        if (!failure) reject(new Error(err.details || err.message));
        else reject(failure);
      });
      call.on("end", () => {
        try {
          if (failure) throw failure;
          if (!assembler) throw new Error("no chunks");
          const expected = net === "G" ? this.runner.model.g.size : this.runner.model.d.size;
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

/** "45 s", "10 min", "1.5 min": a duration as a log line says it. */
function formatSeconds(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.round((s / 60) * 10) / 10} min`;
}

/** A failed call's reason in a few words: grpc-js wraps a refused connection in two sentences of prose. */
function whyFailed(err: grpc.ServiceError | null): string {
  const details = err?.details ?? "no reply";
  return (
    details
      .replace(/\s*Resolution note:.*$/s, "")
      .replace(/^No connection established\. Last error: (Error: )?/, "")
      .replace(/\.$/, "") || "no reply"
  );
}
