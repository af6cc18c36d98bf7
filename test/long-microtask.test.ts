// A worker whose microtasks compute for longer than the coordinator's lease
// (real compute: a DCGAN at batch 512 on wasm, one shard, against a 200 ms
// lease; at batch 128 a quiet machine computed a microtask in 181 ms) stays a member: it computes in a thread of its own while its main
// thread heartbeats and answers gRPC keepalive pings. The run ends with
// `agon train`'s hashes.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig, readConfigFile } from "../shared/config.js";
import { referenceHashes, tempDir } from "./helpers/cli.js";
import { startWorker } from "./helpers/cluster.js";
import { inProcessCoordinator } from "./helpers/in-process.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

const LEASE_MS = 200;

describe("long microtasks", () => {
  it("a worker whose microtasks take longer than the lease is never lost; hashes = agon train", async () => {
    const dir = tempDir();
    const configFile = join(dir, "run.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        dataset: { name: "mnist", limit: 1024 },
        model: { name: "dcgan" },
        batch: 512,
        shards: 1,
        steps: 2,
        samples: { every: 1000 },
        checkpoint: { every: 1000 },
      }),
    );
    const expected = await referenceHashes(["-c", configFile], 300_000);

    const runDir = join(dir, "run");
    const cfg = parseConfig({ ...readConfigFile(configFile), run: { dir: runDir } });
    const coordinator = await inProcessCoordinator(cfg, nats.url, LEASE_MS);
    const { address, lines } = coordinator;
    const worker = startWorker(address, nats.url, "w0");
    await coordinator.server.done;
    await worker.exited;

    const log = lines.join("\n");
    expect(log).not.toMatch(/lease expired|lost|re-joined/);
    expect(log.match(/w0#\d+ joined/g)).toHaveLength(1);
    expect(worker.stderr()).not.toMatch(/lost the coordinator/);
    expect(worker.stderr()).toMatch(/computing in its own thread/);
    // The premise: every microtask computed for longer than the lease.
    const phases = readFileSync(join(runDir, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { computeSeconds: number });
    expect(phases).toHaveLength(4);
    for (const p of phases) expect(p.computeSeconds * 1000).toBeGreaterThan(LEASE_MS);
    console.log(
      `compute per microtask ${phases.map((p) => Math.round(p.computeSeconds * 1000)).join(", ")} ms; lease ${LEASE_MS} ms`,
    );
    expect(coordinator.hashes()).toEqual(expected);
  }, 600_000);
});
