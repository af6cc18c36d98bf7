// A worker restarted while its predecessor's lease still runs (the old process froze, or its
// host was cut off, so its Work stream never closed): the coordinator refuses the newcomer
// once, saying how long the holder's lease has left; the newcomer waits that out, asks
// again, joins, and the run ends with `agon train`'s hashes. The predecessor is a real gRPC
// client that joins under the name and heartbeats until the newcomer has been refused, then
// stops heartbeating (frozen) with its stream left open.
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import type { CoordinatorClient } from "../proto/gen/agon/v1/Coordinator.js";
import type { JoinResponse__Output } from "../proto/gen/agon/v1/JoinResponse.js";
import { parseConfig, readConfigFile } from "../shared/config.js";
import { callMetadata } from "../shared/security.js";
import { CHANNEL_OPTIONS, loadAgonProto } from "../shared/wire.js";
import { referenceHashes, tempDir } from "./helpers/cli.js";
import { startWorker } from "./helpers/cluster.js";
import { inProcessCoordinator } from "./helpers/in-process.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

const LEASE_MS = 3000;

describe("a worker name held by a frozen process", () => {
  it("the newcomer waits out the holder's lease, joins, and the run ends as agon train's", async () => {
    const dir = tempDir();
    const configFile = join(dir, "run.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        dataset: { name: "ring", size: 600 },
        model: { name: "mlp", latentDim: 4, gHidden: [16, 16], dHidden: [16, 16] },
        batch: 36,
        shards: 6,
        steps: 200,
        samples: { every: 1000 },
        checkpoint: { every: 1000 },
      }),
    );
    const expected = await referenceHashes(["-c", configFile]);
    const cfg = parseConfig({ ...readConfigFile(configFile), run: { dir: join(dir, "run") } });
    const coordinator = await inProcessCoordinator(cfg, nats.url, LEASE_MS);
    const { address, lines } = coordinator;

    // The predecessor: joins as "phoenix", opens its Work stream, heartbeats every 200 ms.
    const client = new (loadAgonProto().agon.v1.Coordinator)(
      address,
      grpc.credentials.createInsecure(),
      CHANNEL_OPTIONS,
    ) as unknown as CoordinatorClient;
    const joined = await new Promise<JoinResponse__Output>((resolve, reject) =>
      client.Join(
        { workerName: "phoenix", backend: "wasm", instanceId: randomUUID() },
        callMetadata(undefined),
        (err: grpc.ServiceError | null, r?: JoinResponse__Output) =>
          err || !r ? reject(err) : resolve(r),
      ),
    );
    const stream = client.Work(callMetadata(undefined, joined.session));
    stream.on("data", () => {}); // tasks it will never compute
    stream.on("error", () => {});
    stream.write({ workerId: joined.workerId, hello: {} });
    const refused = () => lines.some((l) => /worker phoenix refused at Join/.test(l));
    const heartbeat = setInterval(() => {
      // Frozen from the newcomer's first refusal on: the stream stays open, silent.
      if (!refused()) stream.write({ workerId: joined.workerId, heartbeat: { taskIds: [] } });
    }, 200);

    const worker = startWorker(address, nats.url, "phoenix");
    try {
      await coordinator.server.done;
      expect(await worker.exited, worker.stderr()).toBe(0);
    } finally {
      clearInterval(heartbeat);
      stream.cancel();
      client.close();
    }
    const log = lines.join("\n");
    expect(
      log.match(/worker phoenix refused at Join: worker name 'phoenix' is in use/g),
    ).toHaveLength(1);
    expect(log.match(/phoenix#\d+ joined/g)).toHaveLength(2);
    expect(worker.stderr()).toMatch(
      /worker phoenix: worker name 'phoenix' is in use by another live process \(phoenix#0, instance [0-9a-f]{8}\); waiting [\d.]+ ?m?s for its lease to run out, then asking again/,
    );
    expect(worker.stderr()).not.toMatch(/agon: error/);
    expect(coordinator.hashes()).toEqual(expected);
  }, 180_000);
});
