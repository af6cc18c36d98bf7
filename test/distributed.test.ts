import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import type { CoordinatorClient } from "../proto/gen/agon/v1/Coordinator.js";
import type { StatusReply__Output } from "../proto/gen/agon/v1/StatusReply.js";
import { parseConfig } from "../shared/config.js";
import type { MetricsMessage } from "../shared/metrics.js";
import { buildModel } from "../shared/models/index.js";
import { CHANNEL_OPTIONS, loadAgonProto } from "../shared/wire.js";
import { localHashes, referenceHashes, tempDir, tinyRing } from "./helpers/cli.js";
import {
  lastStep,
  startCoordinator,
  startWorker,
  waitFor,
  waitForStep,
  within,
} from "./helpers/cluster.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

const ring = (steps: number) => tinyRing({ steps, shards: 6, batch: 36, size: 600 });

const dcgan = (steps: number) => [
  "--dataset",
  "mnist",
  "--model",
  "dcgan",
  "--set",
  "model.gFilters=4",
  "model.dFilters=4",
  "model.latentDim=16",
  "dataset.limit=600",
  "samples.every=1",
  "samples.count=16",
  "--steps",
  String(steps),
  "--shards",
  "6",
  "--batch",
  "12",
];

const local = (config: string[], workers: number, runDir?: string) =>
  localHashes(config, workers, nats.url, runDir);

describe("distributed training is bit-for-bit the single-process run", () => {
  it("MLP GAN on the ring, K=8: agon train = local --workers 2 = local --workers 5; 2 workers send 2 gradients a phase", async () => {
    const config = tinyRing({ steps: 12, shards: 8, batch: 32, size: 512 });
    const expected = await referenceHashes(config);
    const runDir = tempDir();
    expect(await local(config, 2, runDir)).toEqual(expected);
    expect(await local(config, 5)).toEqual(expected);
    // Each worker owns 4 shards, a whole subtree: it sends their sum, not 4 gradients.
    const mlp = { name: "mlp", latentDim: 4, gHidden: [16, 16], dHidden: [16, 16] };
    const model = buildModel(
      parseConfig({ model: mlp, dataset: { name: "ring" }, steps: 1 }).model,
      [2],
    );
    const bytes = { G: 4 * model.g.size, D: 4 * model.d.size };
    const metrics = readFileSync(join(runDir, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as MetricsMessage);
    for (let i = 1; i < metrics.length; i++) {
      const inbound = metrics[i].bytesIn - metrics[i - 1].bytesIn;
      expect(inbound).toBeGreaterThan(0);
      expect(inbound).toBeLessThanOrEqual(2 * bytes[metrics[i].kind]);
    }
  });

  it("small DCGAN on MNIST: agon train = local --workers 1 = local --workers 3 (K=6), with sample grids", async () => {
    const config = dcgan(3);
    const expected = await referenceHashes(config);
    expect(await local(config, 1)).toEqual(expected);
    const runDir = tempDir();
    expect(await local(config, 3, runDir)).toEqual(expected);
    const png = PNG.sync.read(readFileSync(join(runDir, "samples", "step-00000003.png")));
    expect(png.width).toBeGreaterThanOrEqual(4 * 28);
  });

  it("arrival order does not matter: a worker paused mid-phase delivers late and the hashes stay equal", async () => {
    const config = ring(30);
    const expected = await referenceHashes(config);
    const runDir = tempDir();
    const coord = await startCoordinator([...config, "--run-dir", runDir], nats.url);
    // w0 joins first (a worker that missed the whole run would wait for its coordinator:
    // the timeout bounds that), then the others.
    const patience = ["--coordinator-timeout", "30s"];
    const first = startWorker(coord.address, nats.url, "w0", patience);
    await waitFor(() => /w0#\d+ joined/.test(coord.stderr()), 60_000, "w0 joining");
    const workers = [
      first,
      ...[1, 2].map((i) => startWorker(coord.address, nats.url, `w${i}`, patience)),
    ];
    const slow = workers[0].child;
    // Freeze w0 for 400 ms every 600 ms (below the 2 s lease): its results come in last.
    const pauser = setInterval(() => {
      slow.kill("SIGSTOP");
      setTimeout(() => slow.kill("SIGCONT"), 400);
    }, 600);
    const done = await coord.done;
    clearInterval(pauser);
    slow.kill("SIGCONT");
    expect(done.hashes).toEqual(expected);
    expect(coord.stderr()).not.toMatch(/lost|reassigned/);
    await Promise.all(workers.map((w) => w.exited));
  });

  it("a worker without NATS (it misses every broadcast) recovers through FetchParams", async () => {
    const config = ring(10);
    const expected = await referenceHashes(config);
    const coord = await startCoordinator([...config, "--run-dir", tempDir()], nats.url);
    const deaf = startWorker(coord.address, "nats://127.0.0.1:1", "deaf");
    const ok = startWorker(coord.address, nats.url, "ok");
    expect((await coord.done).hashes).toEqual(expected);
    expect(deaf.stderr()).toMatch(/NATS unavailable/);
    expect(await deaf.exited).toBe(0);
    expect(await ok.exited).toBe(0);
  });

  it("a worker joining at step s and another leaving at step s' leave the hashes unchanged", async () => {
    const config = ring(600);
    const expected = await referenceHashes(config);
    const runDir = tempDir();
    const metrics = join(runDir, "metrics.jsonl");
    const coord = await startCoordinator([...config, "--run-dir", runDir], nats.url);
    const a = startWorker(coord.address, nats.url, "a");
    const b = startWorker(coord.address, nats.url, "b");
    await waitForStep(metrics, 5);
    const late = startWorker(coord.address, nats.url, "late");
    await waitFor(() => /late#\d+ joined/.test(coord.stderr()));
    const joinedAt = lastStep(metrics);
    await waitForStep(metrics, joinedAt + 20);
    b.child.kill("SIGTERM"); // a clean leave
    const done = await coord.done;
    expect(joinedAt).toBeLessThan(580); // the newcomer really took part
    expect(done.hashes).toEqual(expected);
    expect(coord.stderr()).toMatch(/b#\d+ lost: left cleanly/);
    for (const w of [a, b, late]) expect(await w.exited).toBe(0);
    expect(existsSync(join(runDir, "summary.json"))).toBe(true);
  });

  it("workers re-join a restarted coordinator, which resumes from its checkpoint with the same result, also with --steps raised", async () => {
    // The restart raises --steps (what "nothing to do … raise --steps" asks for): nothing a
    // worker reads, so the workers carry on instead of exiting on "a different config".
    const config = [...ring(300), "--set", "checkpoint.every=10"];
    const raised = [...ring(360), "--set", "checkpoint.every=10"];
    const expected = await referenceHashes(raised);
    const runDir = tempDir();
    const metrics = join(runDir, "metrics.jsonl");
    const first = await startCoordinator([...config, "--run-dir", runDir], nats.url);
    const workers = ["a", "b"].map((n) => startWorker(first.address, nats.url, n));
    await waitForStep(metrics, 40);
    first.child.kill("SIGTERM"); // checkpoints the last completed phase, then exits
    expect(await first.exited).toBe(0);
    const second = await startCoordinator([...raised, "--run-dir", runDir], nats.url, {
      listen: first.address,
      fresh: false,
    });
    expect(second.stderr()).toMatch(/resumed from/);
    expect((await second.done).hashes).toEqual(expected);
    for (const w of workers) {
      expect(await w.exited).toBe(0);
      expect(w.stderr()).toMatch(/re-joined/);
    }
  });

  it("answers Status with the run's position and its workers' shards", async () => {
    const coord = await startCoordinator([...ring(100_000), "--run-dir", tempDir()], nats.url);
    startWorker(coord.address, nats.url, "s1");
    await waitFor(() => /s1#\d+ joined/.test(coord.stderr()));
    const client = new (loadAgonProto().agon.v1.Coordinator)(
      coord.address,
      grpc.credentials.createInsecure(),
      CHANNEL_OPTIONS,
    ) as unknown as CoordinatorClient;
    const status = () =>
      new Promise<StatusReply__Output>((resolve, reject) =>
        client.Status({}, (err: grpc.ServiceError | null, r?: StatusReply__Output) =>
          err || !r ? reject(err) : resolve(r),
        ),
      );
    await new Promise((r) => setTimeout(r, 500)); // the worker's Work stream is open by then
    const r = await status();
    client.close();
    coord.child.kill("SIGTERM");
    expect(r.runId).toBe("agon");
    expect(r.steps).toBe(100_000);
    expect(r.done).toBe(false);
    expect(r.workers.map((w) => [w.workerName, w.shards])).toEqual([["s1", [0, 1, 2, 3, 4, 5]]]);
  });

  it("a second process under a live worker's name is refused with one line and exits; the first trains on to agon train's hashes", async () => {
    const config = ring(600);
    const expected = await referenceHashes(config);
    const runDir = tempDir();
    const metrics = join(runDir, "metrics.jsonl");
    const coord = await startCoordinator([...config, "--run-dir", runDir], nats.url);
    const first = startWorker(coord.address, nats.url, "twin");
    await waitForStep(metrics, 5);
    const second = startWorker(coord.address, nats.url, "twin");
    const procs = { coordinator: coord, first, second };
    expect(await within(second.exited, 30_000, "the second twin's exit", procs)).toBe(2);
    const said = second
      .stderr()
      .split("\n")
      .filter((l) => l.startsWith("agon: error:"));
    expect(said).toEqual([
      expect.stringMatching(
        /^agon: error: worker name 'twin' is in use by another live process \(twin#0, instance [0-9a-f]{8}\); give each worker its own --name$/,
      ),
    ]);
    // It waited out the holder's lease once (the holder might have been a frozen process), and
    // was refused again: the holder heartbeats, it is alive (test/worker-name-lease.test.ts).
    expect(second.stderr()).toMatch(
      /waiting [\d.]+ ?m?s for its lease to run out, then asking again/,
    );
    expect(coord.stderr().match(/worker twin refused at Join/g)).toHaveLength(2);
    expect(lastStep(metrics)).toBeLessThan(590); // refused mid-run, not after it
    // The first never noticed: no loss, no re-join, and the run ends as agon train's.
    const done = await within(coord.done, 100_000, "the run's end", procs);
    expect(done.hashes).toEqual(expected);
    expect(coord.stderr().match(/twin#\d+ joined/g)).toEqual(["twin#0 joined"]);
    expect(coord.stderr()).toMatch(/worker twin refused at Join: worker name 'twin' is in use/);
    expect(coord.stderr()).not.toMatch(/lost|reassigned/);
    expect(first.stderr()).not.toMatch(/re-join/);
    expect(await first.exited).toBe(0);
  });
});
