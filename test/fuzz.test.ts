// Hostile input against a live run (issue 7): a seeded fuzzer sends well over
// a thousand malformed and unauthorised gRPC messages while a real coordinator
// and two real workers train, and a forger publishes fake and corrupted
// parameter sets on NATS. The coordinator must reject each message (with an
// event), evict repeat offenders, keep running, and end on the same weights
// as a clean run; workers must never use a forged parameter set.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { connectNats, subjects } from "../shared/nats.js";
import { referenceHashes, tempDir } from "./helpers/cli.js";
import { type CoordinatorProc, startCoordinator, startWorker } from "./helpers/cluster.js";
import { HostileClient, ParamForger } from "./helpers/hostile.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();
const TOKEN = "fuzz-join-token-0123456789abcdef";
const RUN_ID = "fuzz";

/** A ring MLP whose D gradient spans two chunks (so truncated and reordered streams mean something). */
const config = [
  "--dataset",
  "ring",
  "--model",
  "mlp",
  "--set",
  `run.id=${RUN_ID}`,
  "model.latentDim=4",
  "model.gHidden=[32,32]",
  "model.dHidden=[400,400]",
  "dataset.size=600",
  "--steps",
  "80",
  "--shards",
  "6",
  "--batch",
  "36",
];

let reference: Promise<{ G: string; D: string }> | undefined;
/** The clean single-process run's hashes, computed once for both tests. */
const expected = () => {
  reference ??= referenceHashes(config);
  return reference;
};

/** The coordinator's "done" result; fails at once (with its last words) if it exits first. */
function finished(coord: CoordinatorProc) {
  return Promise.race([
    coord.done,
    coord.exited.then((code): never => {
      throw new Error(
        `coordinator exited (${code}) before the run finished:\n${coord.stderr().slice(-3000)}`,
      );
    }),
  ]);
}

function tokenFile(): string {
  const file = join(tempDir("agon-fuzz-"), "token");
  writeFileSync(file, `${TOKEN}\n`);
  return file;
}

interface RunEvent {
  type: string;
  reason?: string;
  rpc?: string;
}

/** Which check a gradientRejected reason comes from. */
const REASONS: Array<[string, RegExp]> = [
  ["session", /does not match the session|no valid session/],
  ["length", /gradient has \d+ values/],
  ["non-finite", /is not finite/],
  ["checksum", /checksum mismatch|not a sha256 hex digest/],
  ["chunk sizes", /chunk \d+ has \d+ bytes/],
  ["chunk order", /chunk \d+ arrived, expected \d+/],
  ["chunk count", /announced \d+ chunks|more than the announced|stream ended after/],
  ["headers", /first chunk carries no header|only the first chunk may carry a header/],
  ["count", /count \d+ does not match/],
  ["stale or unknown task", /not part of the current phase/],
  ["not the holder", /is not assigned to/],
  ["empty", /empty stream/],
];

describe("hostile input", () => {
  it("a thousand malformed and hostile messages during a real run: each is refused with an event, offenders are evicted, and the run ends on the clean run's bits", async () => {
    const want = await expected();
    const token = tokenFile();
    const watcher = await connectNats(nats.url, "fuzz-events");
    const events: RunEvent[] = [];
    watcher.subscribe(subjects(RUN_ID).events, {
      callback: (_err, msg) => {
        events.push(msg.json());
      },
    });
    const coord = await startCoordinator(config, nats.url, {
      extra: ["--join-token-file", token, "--run-dir", tempDir()],
    });
    const workers = ["w0", "w1"].map((n) =>
      startWorker(coord.address, nats.url, n, ["--join-token-file", token]),
    );
    const hostile = new HostileClient(coord.address, TOKEN, 20240607);
    await hostile.start();
    const result = finished(coord);
    const attack = hostile.run(result);

    const done = await result;
    await attack;
    hostile.close();
    await watcher.flush();
    await watcher.drain();

    // The coordinator finished the run (it did not crash) on the clean run's weights.
    expect(await coord.exited).toBe(0);
    // Every event it published got out (none was too large for NATS).
    expect(coord.stderr()).not.toMatch(/could not publish/);
    expect(done.hashes).toEqual(want);
    for (const w of workers) expect(await w.exited).toBe(0);

    // Over a thousand hostile messages of every category, and not one accepted.
    const sent = Object.fromEntries(hostile.sent);
    console.log(`hostile messages: ${hostile.total}`, sent, `joins: ${hostile.joins}`);
    expect(hostile.total).toBeGreaterThanOrEqual(1000);
    expect(hostile.sent.size).toBeGreaterThanOrEqual(30);
    expect(hostile.accepted).toBe(0);

    // Every kind of rejection was reported as an event with its reason.
    const rejected = events.filter((e) => e.type === "gradientRejected");
    const seen = REASONS.filter(([, re]) => rejected.some((e) => re.test(e.reason ?? ""))).map(
      ([name]) => name,
    );
    console.log(`gradientRejected events: ${rejected.length}; reasons seen:`, seen);
    expect(seen.length).toBeGreaterThanOrEqual(10);
    expect(rejected.every((e) => typeof e.reason === "string" && e.reason.length > 0)).toBe(true);
    const callRejected = events.filter((e) => e.type === "callRejected");
    expect(callRejected.length).toBeGreaterThan(0);
    expect(callRejected.every((e) => /join token/.test(e.reason ?? ""))).toBe(true);
    const evicted = events.filter((e) => e.type === "workerEvicted");
    expect(evicted.length).toBeGreaterThan(0);
    // Late and stale results are refused without a strike: they never get anyone evicted.
    expect(hostile.staleEvictions).toBe(0);
    for (const e of evicted)
      expect(e.reason).not.toMatch(
        /not part of the current phase|not assigned to|duplicate result/,
      );
    // The squatter's NaN answers cost it its place; they never looked like divergence.
    expect(events.some((e) => e.type === "diverged")).toBe(false);
  }, 300_000);

  it("forged and corrupted parameter sets on NATS, racing the real broadcasts, are never used", async () => {
    const want = await expected();
    const token = tokenFile();
    const coord = await startCoordinator(config, nats.url, {
      extra: ["--join-token-file", token, "--run-dir", tempDir()],
    });
    const forgerConnection = await connectNats(nats.url, "fuzz-forger");
    const forger = new ParamForger(forgerConnection, RUN_ID, 77);
    const workers = ["w0", "w1"].map((n) =>
      startWorker(coord.address, nats.url, n, ["--join-token-file", token]),
    );
    const done = await finished(coord);
    forger.stop();
    await forgerConnection.drain();
    for (const w of workers) expect(await w.exited).toBe(0);

    expect(done.hashes).toEqual(want);
    console.log(
      `forged parameter messages: ${forger.total} against ${forger.realVersions} real versions`,
      Object.fromEntries(forger.sent),
    );
    expect(forger.realVersions).toBeGreaterThan(20);
    const logs = workers.map((w) => w.stderr()).join("\n");
    // Self-consistent forgeries reached the workers' caches and were refused by checksum...
    expect(logs).toMatch(/NATS [GD] v\d+ does not match the coordinator's checksum; fetching it/);
    // ...corrupted chunks were dropped on arrival...
    expect(logs).toMatch(/params: dropped a [GD] chunk from NATS/);
    // ...and what came over gRPC always matched.
    expect(logs).not.toMatch(/from the coordinator does not match its own checksum/);
  }, 300_000);
});
