// A member that looks alive but never works, as a hung GPU or a deadlocked
// driver looks from the coordinator: it joins, opens its Work stream, acks
// every microtask and heartbeats, and never submits a gradient.
import * as grpc from "@grpc/grpc-js";
import type { CoordinatorClient } from "../../proto/gen/agon/v1/Coordinator.js";
import type { CoordinatorMessage__Output } from "../../proto/gen/agon/v1/CoordinatorMessage.js";
import type { WorkerMessage } from "../../proto/gen/agon/v1/WorkerMessage.js";
import { callMetadata } from "../../shared/security.js";
import { CHANNEL_OPTIONS, loadAgonProto } from "../../shared/wire.js";

export class HungMember {
  /** Microtasks received (the first assignments and the probes). */
  tasks = 0;
  workerId = "";
  private readonly client: CoordinatorClient;
  private stream: grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private readonly held: string[] = [];

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
    const res = await new Promise<{ workerId: string; session: string }>((resolve, reject) =>
      this.client.Join(
        { workerName: name, backend: "hung", capabilities: { cores: 1 } },
        callMetadata(undefined),
        (err, r) => (err || !r ? reject(err ?? new Error("no reply")) : resolve(r)),
      ),
    );
    this.workerId = res.workerId;
    const stream = this.client.Work(callMetadata(undefined, res.session));
    this.stream = stream;
    stream.on("data", (msg: CoordinatorMessage__Output) => {
      if (msg.body === "task" && msg.task) {
        this.tasks++;
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

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.stream?.cancel();
    this.client.close();
  }
}
