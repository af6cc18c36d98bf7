import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LeaseBucket, type LeaseValue } from "../coordinator/ha/lease.js";
import { connectNats, freePort, subjects } from "../shared/nats.js";
import { referenceHashes, spawnAgon, tempDir, tinyRing } from "./helpers/cli.js";
import { startCoordinator, startWorker, waitFor, waitForStep } from "./helpers/cluster.js";
import { completeJsonLines } from "./helpers/jsonl.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

/** A tiny ring run under a run id of its own (the log stream and lease bucket are per run). */
function ringRun(steps: number): { id: string; config: string[] } {
  const id = `sb-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  return {
    id,
    config: [
      ...tinyRing({ steps, shards: 4, batch: 32, size: 512 }),
      "--set",
      `run.id=${id}`,
      "--set",
      "checkpoint.every=25",
    ],
  };
}

type Event = { type: string; [k: string]: unknown };

/** Collects the run's events from NATS for the whole test. */
async function watchEvents(runId: string) {
  const nc = await connectNats(nats.url, "standby-test-watcher");
  const events: Event[] = [];
  nc.subscribe(subjects(runId).events, {
    callback: (_err, msg) => {
      events.push(msg.json());
    },
  });
  return { events, close: () => nc.drain() };
}

/** The run's lease as the bucket holds it now. */
async function leaseOf(runId: string): Promise<LeaseValue | undefined> {
  const nc = await connectNats(nats.url, "standby-test-lease");
  try {
    return (await (await LeaseBucket.open(nc, runId)).read())?.value;
  } finally {
    await nc.drain();
  }
}

/** `agon local` as a user runs it, its output collected as it comes. */
function startLocal(args: string[]) {
  return spawnAgon(["local", ...args, "--backend", "wasm", "--json"]);
}

function metricsLines(runDir: string): Array<{ step: number; phase: number }> {
  return completeJsonLines(join(runDir, "metrics.jsonl"));
}

/** Leases long enough that a loaded test machine does not fail over by itself. */
const LEASE = ["--lease", "2s"];

/** A leader (--ha), a standby on a known port and two workers that know both addresses. */
async function cluster(config: string[]) {
  const leaderDir = tempDir();
  const standbyDir = tempDir();
  const leader = await startCoordinator([...config, "--run-dir", leaderDir], nats.url, {
    extra: ["--ha", ...LEASE],
  });
  const standbyAddress = `127.0.0.1:${await freePort()}`;
  const standby = await startCoordinator([...config, "--run-dir", standbyDir], nats.url, {
    listen: standbyAddress,
    extra: ["--standby", ...LEASE],
  });
  const both = `${leader.address},${standbyAddress}`;
  const workers = ["w0", "w1"].map((n) => startWorker(both, nats.url, n));
  return { leader, standby, workers, leaderDir, standbyDir, both };
}

/** The phase index (step·2 + phase) of a metrics line or event. */
const at = (x: object) =>
  Number((x as { step: unknown }).step) * 2 + Number((x as { phase: unknown }).phase);

describe("hot standby", () => {
  it("a standby in sync takes over from memory when the leader is SIGKILLed, and the run ends with the calm hashes", async () => {
    const { id, config } = ringRun(120);
    const expected = await referenceHashes(config, 300_000);
    const watch = await watchEvents(id);
    const { leader, standby, workers, leaderDir, standbyDir } = await cluster(config);
    await waitFor(
      () => watch.events.some((e) => e.type === "standbyInSync"),
      180_000,
      "standby in sync",
    );
    await waitForStep(join(leaderDir, "metrics.jsonl"), 40, 180_000);
    leader.child.kill("SIGKILL");
    await leader.exited;
    const killedAt = metricsLines(leaderDir).at(-1)!;
    await waitFor(
      () => watch.events.some((e) => e.type === "leaderElected" && Number(e.epoch) > 1),
      180_000,
      "the standby leading",
    );
    // The former leader restarted on its own run dir while the standby leads: it follows it.
    const again = await startCoordinator([...config, "--run-dir", leaderDir], nats.url, {
      fresh: false,
      extra: ["--ha", ...LEASE],
    });
    const done = await standby.done;
    expect(done.hashes).toEqual(expected);
    for (const w of workers) expect(await w.exited, w.stderr()).toBe(0);
    expect((await again.done).hashes, again.stderr()).toEqual(expected);
    expect(await again.exited).toBe(0);
    expect(again.stderr()).toMatch(/is led by .*; following it as a standby/);
    expect(again.stderr()).not.toMatch(/leading epoch/);
    await watch.close();
    expect(await standby.exited).toBe(0);
    // The finished run let go of its lease: the next run with this id need not wait it out.
    expect(await leaseOf(id)).toMatchObject({ epoch: 2, released: true });

    const elected = watch.events.filter((e) => e.type === "leaderElected");
    expect(elected[0].epoch).toBe(1);
    const took = elected.at(-1)!;
    expect(took.epoch).toBeGreaterThan(1);
    // The standby led from what it replayed: no checkpoint read, no completed phase recomputed.
    expect(took.from).toBe("memory");
    expect(standby.stderr()).not.toMatch(/resumed from/);
    expect(watch.events.some((e) => e.type === "leaderLost")).toBe(true);
    expect(at(took)).toBeGreaterThan(at(killedAt));
    // Every phase exactly once in the standby's record, in order.
    const lines = metricsLines(standbyDir);
    expect(lines.map(at)).toEqual(lines.map((_, i) => i));
    expect(lines.length).toBe(240);
  }, 600_000);

  it("a leader SIGSTOPped past its lease is replaced; woken with SIGCONT it steps down without applying or publishing anything, and the hashes are the calm ones", async () => {
    const { id, config } = ringRun(120);
    const expected = await referenceHashes(config, 300_000);
    const watch = await watchEvents(id);
    const { leader, standby, workers, leaderDir } = await cluster(config);
    await waitFor(
      () => watch.events.some((e) => e.type === "standbyInSync"),
      180_000,
      "standby in sync",
    );
    await waitForStep(join(leaderDir, "metrics.jsonl"), 40, 180_000);
    leader.child.kill("SIGSTOP");
    await waitFor(
      () => watch.events.some((e) => e.type === "leaderElected" && Number(e.epoch) > 1),
      180_000,
      "the standby leading",
    );
    const elected = watch.events.find((e) => e.type === "leaderElected" && Number(e.epoch) > 1)!;
    leader.child.kill("SIGCONT");
    expect(await leader.exited, leader.stderr()).toBe(0);
    expect(leader.stderr()).toMatch(/stepped down as leader of epoch 1/);
    // Woken, it recorded (so applied) no phase the new leader serves: every line it wrote
    // (one may still have been on its way to the file when it was stopped) is of a phase
    // before the one the standby took over at.
    const at = Number(elected.step) * 1000 + Number(elected.phase);
    for (const l of metricsLines(leaderDir)) expect(l.step * 1000 + l.phase).toBeLessThan(at);
    const done = await standby.done;
    expect(done.hashes).toEqual(expected);
    for (const w of workers) expect(await w.exited, w.stderr()).toBe(0);
    await watch.close();
    expect(watch.events.some((e) => e.type === "steppedDown" && e.epoch === 1)).toBe(true);
  }, 600_000);

  it("a SIGTERMed leader releases its lease and the standby takes over at once; both then killed, the former leader restarted replays the standby's phases from the log and ends with the calm hashes", async () => {
    const { id, config } = ringRun(120);
    const expected = await referenceHashes(config, 300_000);
    const watch = await watchEvents(id);
    const { leader, standby, workers, leaderDir, standbyDir, both } = await cluster(config);
    await waitFor(
      () => watch.events.some((e) => e.type === "standbyInSync"),
      180_000,
      "standby in sync",
    );
    await waitForStep(join(leaderDir, "metrics.jsonl"), 30, 180_000);
    leader.child.kill("SIGTERM");
    expect(await leader.exited, leader.stderr()).toBe(0);
    expect(leader.stderr()).toMatch(/released the lease of epoch 1/);
    await waitFor(
      () => watch.events.some((e) => e.type === "leaderElected" && Number(e.epoch) === 2),
      180_000,
      "the standby leading",
    );
    // Taken over because the lease was released, not because it lapsed.
    expect(watch.events.find((e) => e.type === "leaderLost")).toMatchObject({
      epoch: 1,
      released: true,
    });
    // The standby trains on past what the leader's run dir holds, then it dies too.
    const leaderLast = at(metricsLines(leaderDir).at(-1)!);
    await waitFor(
      () => (metricsLines(standbyDir).map(at).at(-1) ?? 0) >= leaderLast + 30,
      180_000,
      "the standby training on",
    );
    standby.child.kill("SIGKILL");
    await standby.exited;
    const standbyLast = at(metricsLines(standbyDir).at(-1)!);
    const restarted = await startCoordinator([...config, "--run-dir", leaderDir], nats.url, {
      listen: both.split(",")[0],
      fresh: false,
      extra: ["--ha", ...LEASE],
    });
    const done = await restarted.done;
    expect(restarted.stderr()).toMatch(/replayed the run's log from step \d+ phase \d to step/);
    expect(restarted.stderr()).toMatch(/leading epoch 3 .*state from the replicated log/);
    expect(done.hashes).toEqual(expected);
    for (const w of workers) expect(await w.exited, w.stderr()).toBe(0);
    await watch.close();
    // No phase the standby completed was computed again: the new leader's first phase is past them.
    const elected = watch.events.find((e) => e.type === "leaderElected" && e.epoch === 3)!;
    expect(at(elected)).toBeGreaterThan(standbyLast);
    // The former leader's record: every phase at most once, in order, to the end.
    const lines = metricsLines(leaderDir).map(at);
    expect(lines).toEqual([...lines].sort((a, b) => a - b));
    expect(new Set(lines).size).toBe(lines.length);
    expect(lines.at(-1)).toBe(239);
  }, 600_000);

  it("agon local --standby: the leader SIGKILLed, the standby finishes with the calm hashes and the summary names its run dir", async () => {
    const { config } = ringRun(80);
    const runDir = tempDir();
    const expected = await referenceHashes(config, 300_000);
    const local = startLocal([
      ...config,
      "--workers",
      "2",
      "--standby",
      "--nats",
      nats.url,
      "--run-dir",
      runDir,
      "--lease",
      "2s",
    ]);
    await waitFor(() => /coordinator \(pid \d+\)/.test(local.stderr()), 180_000, "the cluster up");
    const pid = Number(/coordinator \(pid (\d+)\)/.exec(local.stderr())![1]);
    await waitFor(() => /standby in sync/.test(local.stderr()), 180_000, "standby in sync");
    await waitForStep(join(runDir, "metrics.jsonl"), 20, 180_000);
    process.kill(pid, "SIGKILL");
    expect(await local.exited, local.stderr()).toBe(0);
    const summary = JSON.parse(local.stdout().trim().split("\n").at(-1)!);
    expect(summary.hashes).toEqual(expected);
    expect(summary.runDir).toBe(`${runDir}.standby`);
    expect(local.stderr()).toMatch(/the standby took over on/);
    expect(local.stderr()).toContain(`run dir ${runDir}.standby (the standby's`);
    const standby = JSON.parse(readFileSync(`${runDir}.standby/summary.json`, "utf8"));
    expect(standby.hashes).toEqual(expected);
    expect(metricsLines(`${runDir}.standby`).length).toBe(160);
  }, 600_000);

  it("agon local --standby stopped with Ctrl-C stops both coordinators quietly: no takeover, the lease released", async () => {
    const { id, config } = ringRun(100_000);
    const runDir = tempDir();
    const local = startLocal([
      ...config,
      "--workers",
      "1",
      "--standby",
      "--nats",
      nats.url,
      "--run-dir",
      runDir,
    ]);
    await waitFor(() => /standby in sync/.test(local.stderr()), 180_000, "standby in sync");
    await waitForStep(join(runDir, "metrics.jsonl"), 5, 180_000);
    local.child.kill("SIGINT");
    expect(await local.exited, local.stderr()).toBe(130);
    expect(local.stderr()).not.toMatch(/took over|leaderLost|taking over/);
    expect(await leaseOf(id)).toMatchObject({ epoch: 1, released: true });
  }, 600_000);
});
