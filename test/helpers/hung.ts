// A member that looks alive but never works, as a hung GPU or a deadlocked
// driver looks from the coordinator: it joins, opens its Work stream, acks
// every microtask and heartbeats, and never submits a gradient.
import * as grpc from "@grpc/grpc-js";
import type { CoordinatorClient } from "../../proto/gen/agon/v1/Coordinator.js";
import type { CoordinatorMessage__Output } from "../../proto/gen/agon/v1/CoordinatorMessage.js";
import type { Microtask__Output } from "../../proto/gen/agon/v1/Microtask.js";
import type { ParamChunk__Output } from "../../proto/gen/agon/v1/ParamChunk.js";
import type { WorkerMessage } from "../../proto/gen/agon/v1/WorkerMessage.js";
import { callMetadata } from "../../shared/security.js";
import { CHANNEL_OPTIONS, chunkCount, loadAgonProto } from "../../shared/wire.js";

export class HungMember {
  /** Microtasks received (the first assignments and the probes). */
  tasks = 0;
  workerId = "";
  private readonly client: CoordinatorClient;
  private stream: grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private readonly held: string[] = [];
  private session = "";
  /** The newest microtask it was sent. */
  last: Microtask__Output | null = null;

  constructor(address: string) {
    const proto = loadAgonProto();
    this.client = new proto.agon.v1.Coordinator(
      address,
      grpc.credentials.createInsecure(),
      CHANNEL_OPTIONS,
    ) as unknown as CoordinatorClient;
  }

  /** Joins as `name` and starts heartbeating; resolves once the Work stream is open. */
  async join(name: string): Promise<void> {
    // It claims the run's own dataset: RunInfo says which.
    const info = await new Promise<{ datasetFingerprint: string }>((resolve, reject) =>
      this.client.RunInfo({}, callMetadata(undefined), (err, r) =>
        err || !r ? reject(err ?? new Error("no reply")) : resolve(r),
      ),
    );
    const res = await new Promise<{ workerId: string; session: string }>((resolve, reject) =>
      this.client.Join(
        {
          workerName: name,
          backend: "hung",
          capabilities: { cores: 1 },
          datasetFingerprint: info.datasetFingerprint,
        },
        callMetadata(undefined),
        (err, r) => (err || !r ? reject(err ?? new Error("no reply")) : resolve(r)),
      ),
    );
    this.workerId = res.workerId;
    this.session = res.session;
    const stream = this.client.Work(callMetadata(undefined, res.session));
    this.stream = stream;
    stream.on("data", (msg: CoordinatorMessage__Output) => {
      if (msg.body === "task" && msg.task) {
        this.tasks++;
        this.last = msg.task;
        this.held.push(msg.task.taskId);
        stream.write({ workerId: this.workerId, ack: { taskId: msg.task.taskId } });
      }
    });
    stream.on("error", () => {});
    stream.write({ workerId: this.workerId, hello: {} });
    this.timer = setInterval(
      () => stream.write({ workerId: this.workerId, heartbeat: { taskIds: this.held.slice(-64) } }),
      500,
    );
  }

  /** The length of network `net` at `version`, from the first chunk of a FetchParams reply. */
  paramLength(net: "G" | "D", version: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const call = this.client.FetchParams({ net, version }, callMetadata(undefined, this.session));
      call.once("data", (chunk: ParamChunk__Output) => {
        resolve(chunk.length);
        call.cancel();
      });
      call.on("error", (err) => reject(err));
    });
  }

  /**
   * Opens `n` gradient uploads for microtask `taskId` that each send a valid
   * header (fp32, `length` values) with `firstChunk` as chunk 0 (empty: a
   * header-only upload) and then nothing, and keeps them open.
   * Resolves with how each ended once all have (status code, or "accepted"/"rejected").
   */
  headerOnlyUploads(
    n: number,
    taskId: string,
    length: number,
    firstChunk = new Uint8Array(0),
  ): Promise<string[]> {
    const md = () => callMetadata(undefined, this.session);
    return Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<string>((resolve) => {
            const call = this.client.SubmitGradients(md(), (err, res) =>
              resolve(err ? `code ${err.code}` : res?.accepted ? "accepted" : "rejected"),
            );
            call.write({
              index: 0,
              data: firstChunk,
              header: {
                workerId: this.workerId,
                taskId,
                length,
                sha256: "0".repeat(64),
                chunks: chunkCount(length),
                dtype: "DTYPE_FP32",
                count: 6,
              },
            });
          }),
      ),
    );
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.stream?.cancel();
    this.client.close();
  }
}
