// Reduced-precision transport (transport.gradients / transport.params): the
// rounding is part of the run, so `agon train` and any number of workers end
// with the same bits; a peer that sends another encoding is refused.
import * as grpc from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import type { CoordinatorClient } from "../proto/gen/agon/v1/Coordinator.js";
import type { CoordinatorMessage__Output } from "../proto/gen/agon/v1/CoordinatorMessage.js";
import type { Dtype } from "../proto/gen/agon/v1/Dtype.js";
import type { JoinResponse__Output } from "../proto/gen/agon/v1/JoinResponse.js";
import type { Microtask__Output } from "../proto/gen/agon/v1/Microtask.js";
import type { ParamChunk__Output } from "../proto/gen/agon/v1/ParamChunk.js";
import type { SubmitReply__Output } from "../proto/gen/agon/v1/SubmitReply.js";
import { parseConfig } from "../shared/config.js";
import { buildModel } from "../shared/models/index.js";
import type { Dtype as Precision } from "../shared/precision.js";
import { callMetadata } from "../shared/security.js";
import { CHANNEL_OPTIONS, encodeArray, loadAgonProto, wireDtype } from "../shared/wire.js";
import { localHashes, referenceHashes, ringK6, tempDir } from "./helpers/cli.js";
import { killAll, startCoordinator } from "./helpers/cluster.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();
afterAll(() => killAll());

const ring = ringK6;

const local = (config: string[], workers: number) => localHashes(config, workers, nats.url);

describe("reduced-precision transport keeps runs deterministic", () => {
  it("bf16 gradients and params: agon train = local --workers 1 = local --workers 3 (K=6), unlike fp32", async () => {
    const config = ring(12, ["transport.gradients=bf16", "transport.params=bf16"]);
    const expected = await referenceHashes(config);
    expect(await local(config, 1)).toEqual(expected);
    expect(await local(config, 3)).toEqual(expected);
    // The rounding really happens: the fp32 run ends elsewhere.
    const fp32 = await referenceHashes(ring(12, ["transport.gradients=fp32"]));
    expect(fp32.G).not.toBe(expected.G);
  });

  it("microbatch (pieces of 2 of each 6-sample microtask): agon train = local --workers 2", async () => {
    const config = ring(12, ["microbatch=2"]);
    const expected = await referenceHashes(config);
    expect(await local(config, 2)).toEqual(expected);
    // Summing pieces rounds differently from one pass: the run is its own trajectory.
    const whole = await referenceHashes(ring(12, ["transport.gradients=fp32"]));
    expect(whole.G).not.toBe(expected.G);
  });

  it("fp16 gradients with fp32 params: agon train = local --workers 2", async () => {
    const config = ring(8, ["transport.gradients=fp16"]);
    const expected = await referenceHashes(config);
    expect(await local(config, 2)).toEqual(expected);
  });
});

describe("the coordinator holds peers to the run's transport", () => {
  const proto = loadAgonProto();

  it("serves bf16 parameters and rejects a gradient in another dtype with a clear reason", async () => {
    const flags = ring(400, ["transport.gradients=bf16", "transport.params=bf16"]);
    const coord = await startCoordinator([...flags, "--run-dir", tempDir()], nats.url);
    const client = new proto.agon.v1.Coordinator(
      coord.address,
      grpc.credentials.createInsecure(),
      CHANNEL_OPTIONS,
    ) as unknown as CoordinatorClient;
    try {
      const joined = await new Promise<JoinResponse__Output>((resolve, reject) =>
        client.Join({ workerName: "probe", backend: "test" }, (err, res) =>
          err || !res ? reject(err) : resolve(res),
        ),
      );
      const md = callMetadata(undefined, joined.session);
      const cfg = parseConfig(JSON.parse(joined.configJson));
      const dSize = buildModel(cfg.model, [2]).d.size;

      // FetchParams: bf16 chunks, two bytes a value.
      const chunks = await new Promise<ParamChunk__Output[]>((resolve, reject) => {
        const out: ParamChunk__Output[] = [];
        const call = client.FetchParams({ net: "D", version: 0 }, md);
        call.on("data", (c: ParamChunk__Output) => out.push(c));
        call.on("end", () => resolve(out));
        call.on("error", reject);
      });
      expect(chunks[0].dtype).toBe("DTYPE_BF16");
      expect(chunks.reduce((n, c) => n + c.data.byteLength, 0)).toBe(dSize * 2);

      // The only worker gets the D phase's microtasks.
      const work = client.Work(md);
      const task = await new Promise<Microtask__Output>((resolve) => {
        work.on("data", (m: CoordinatorMessage__Output) => {
          if (m.body === "task" && m.task) resolve(m.task);
        });
        work.on("error", () => {});
        work.write({ workerId: joined.workerId, hello: {} });
      });
      const submit = (dtype: Precision, announced: Dtype) =>
        new Promise<SubmitReply__Output>((resolve, reject) => {
          const encoded = encodeArray(new Float32Array(dSize), dtype);
          const call = client.SubmitGradients(md, (err, res) =>
            err || !res ? reject(err) : resolve(res),
          );
          call.write({
            index: 0,
            data: encoded.bytes,
            header: {
              workerId: joined.workerId,
              taskId: task.taskId,
              length: dSize,
              sha256: encoded.checksum,
              chunks: 1,
              // The task is a tree node: its gradient sums (shardEnd − shard) microtasks of 6 samples.
              count: 6 * (task.shardEnd - task.shard),
              dtype: announced,
            },
          });
          call.end();
        });
      const fp32 = await submit("fp32", wireDtype("fp32"));
      expect(fp32.accepted).toBe(false);
      expect(fp32.reason).toBe("gradient arrived as fp32, but this run's transport sets bf16");
      const fp16 = await submit("fp16", wireDtype("fp16"));
      expect(fp16.reason).toMatch(/arrived as fp16/);
      // bf16 bytes announced as fp16 fail the same way; the right dtype is accepted.
      expect((await submit("bf16", wireDtype("fp16"))).accepted).toBe(false);
      expect(await submit("bf16", wireDtype("bf16"))).toEqual({ accepted: true, reason: "" });
      work.cancel();
    } finally {
      client.close();
      coord.child.kill("SIGKILL");
    }
  });
});
