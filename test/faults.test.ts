import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readCheckpoint } from "../coordinator/checkpoint.js";
import { connectNats, subjects } from "../shared/nats.js";
import { referenceHashes, runAgon, tempDir, tinyRing } from "./helpers/cli.js";
import {
  type Proc,
  startCoordinator,
  startWorker,
  waitFor,
  waitForStep,
} from "./helpers/cluster.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

const ring = (steps: number, every: number) => [
  ...tinyRing({ steps, shards: 6, batch: 36, size: 600 }),
  "--set",
  `checkpoint.every=${every}`,
  "checkpoint.keep=3",
];

describe("fault tolerance", () => {
  it("chaos equals calm: worker SIGKILL, worker SIGSTOP, coordinator SIGKILL + restart and a NATS restart give the uninterrupted hashes", async () => {
    const config = ring(500, 25);
    const expected = await referenceHashes(config);
    const runDir = tempDir();
    const metrics = join(runDir, "metrics.jsonl");
    // Watch the events subject the whole time, across the coordinator restart.
    const nc = await connectNats(nats.url, "chaos-watcher");
    const events: Array<{ type: string }> = [];
    nc.subscribe(subjects("agon").events, {
      callback: (_err, msg) => {
        events.push(msg.json());
      },
    });
    let coord = await startCoordinator([...config, "--run-dir", runDir], nats.url);
    const address = coord.address;
    const workers: Proc[] = ["w0", "w1", "w2"].map((n) => startWorker(address, nats.url, n));

    await waitForStep(metrics, 40);
    workers[0].child.kill("SIGKILL");
    await waitFor(() => /w0#\d+ lost/.test(coord.stderr()), 10_000, "w0 lost");

    await waitForStep(metrics, 80);
    workers[1].child.kill("SIGSTOP");
    await waitFor(
      () => /w1#\d+ lost: (lease expired|stream)/.test(coord.stderr()),
      10_000,
      "w1 lease expiry",
    );
    workers[1].child.kill("SIGCONT"); // wakes up evicted: its late results must be ignored, then it re-joins

    await waitForStep(metrics, 130);
    coord.child.kill("SIGKILL");
    await coord.exited;
    coord = await startCoordinator([...config, "--run-dir", runDir], nats.url, {
      listen: address,
      fresh: false,
    });
    expect(coord.stderr()).toMatch(/resumed from .*ckpt-/);

    const resumedAt = (() => {
      const m = /resumed from .* \(step (\d+)/.exec(coord.stderr());
      return Number(m?.[1] ?? 0);
    })();
    await waitForStep(metrics, resumedAt + 40);
    await nats.restart();

    const done = await coord.done;
    expect(done.hashes).toEqual(expected);
    expect(coord.stderr()).toMatch(/nats: reconnected|reconnect/);
    for (const w of workers.slice(1)) expect(await w.exited).toBe(0);
    await nc.drain();
    const types = new Set(events.map((e) => e.type));
    for (const t of ["workerJoined", "workerLost", "checkpointWritten", "resumedFrom"])
      expect(types).toContain(t);
  });

  it("refuses to resume a checkpoint of another config unless --fresh or --force", async () => {
    const dir = tempDir();
    const args = (...extra: string[]) => [
      "train",
      ...tinyRing({ steps: 4 }),
      "--run-dir",
      dir,
      "--json",
      ...extra,
    ];
    expect((await runAgon(args())).code).toBe(0);
    const other = await runAgon(args("--seed", "9"));
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(
      /agon: error: .*ckpt-00000004 was written with a different config \(seed 1 → 9\); use --fresh/,
    );
    expect((await runAgon(args("--seed", "9", "--fresh"))).code).toBe(0);
  });

  it("a coordinator killed -9 while writing checkpoints never leaves one that loads as valid but is not", async () => {
    const config = [...ring(100_000, 1), "--set", "checkpoint.keep=2"];
    const runDir = tempDir();
    for (let round = 0; round < 4; round++) {
      const coord = await startCoordinator([...config, "--run-dir", runDir], nats.url, {
        fresh: round === 0,
      });
      const worker = startWorker(coord.address, nats.url, "w");
      // After a kill, the next coordinator resumes from the newest checkpoint that verifies.
      if (round > 0) expect(coord.stderr()).toMatch(/resumed from .*ckpt-\d{8} \(step \d+/);
      await waitForStep(join(runDir, "metrics.jsonl"), 10 * (round + 1));
      // Checkpoints are written every step, so a kill lands mid-write often.
      await new Promise((r) => setTimeout(r, 37 * round));
      coord.child.kill("SIGKILL");
      await coord.exited;
      worker.child.kill("SIGKILL");
      await worker.exited;
      for (const name of readdirSync(runDir).filter((n) => n.startsWith("ckpt-"))) {
        // Every directory under a final name verifies completely.
        await expect(readCheckpoint(join(runDir, name))).resolves.toBeTruthy();
      }
    }
  });

  it("a flipped byte in the newest checkpoint is detected and the previous one is used", async () => {
    const dir = tempDir();
    const args = (steps: number) => [
      "train",
      ...tinyRing({ steps }),
      "--set",
      "checkpoint.every=3",
      "--run-dir",
      dir,
      "--backend",
      "wasm",
      "--json",
    ];
    const straight = await runAgon([
      "train",
      ...tinyRing({ steps: 12 }),
      "--run-dir",
      tempDir(),
      "--backend",
      "wasm",
      "--json",
    ]);
    expect((await runAgon(args(9))).code).toBe(0);
    const blob = join(dir, "ckpt-00000009", "G.weights.f32");
    const bytes = readFileSync(blob);
    bytes[100] ^= 0x01;
    writeFileSync(blob, bytes);
    // agon sample on the run dir says which checkpoint it skipped (once, the path not repeated).
    const sampled = await runAgon(["sample", "--checkpoint", dir, "--out", join(dir, "s.png")]);
    expect(sampled.code, sampled.stderr).toBe(0);
    expect(sampled.stderr).toMatch(
      /^checkpoint rejected: \S*ckpt-00000009: blob G\.weights\.f32 fails its checksum/m,
    );
    // …and which one it used instead.
    expect(sampled.stderr).toMatch(/^sample: wrote .* from \S*ckpt-00000006 \(step 6,/m);
    const resumed = await runAgon(args(12));
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/checkpoint rejected: .*ckpt-00000009.*fails its checksum/);
    expect(resumed.stderr).not.toMatch(/ckpt-00000009: \S*ckpt-00000009/);
    expect(resumed.stderr).toMatch(/resumed from .*ckpt-00000006 \(step 6\)/);
    const hashes = (s: string) => JSON.parse(s.trim().split("\n").at(-1)!).hashes;
    expect(hashes(resumed.stdout)).toEqual(hashes(straight.stdout));
  });

  it("a diverging run (NaN) stops with one clear error; with health.rollback it restores the last checkpoint first", async () => {
    const runDir = tempDir();
    const base = [...tinyRing({ steps: 5 }), "--set", "checkpoint.every=1", "--run-dir", runDir];
    const calm = await startCoordinator(base, nats.url);
    startWorker(calm.address, nats.url, "w");
    await calm.done;
    // Same run dir, an absurd learning rate: the first update overflows float32.
    const wild = [...base, "--steps", "20", "--set", "optimizer.g.lr=1e30", "optimizer.d.lr=1e30"];
    for (const rollback of [false, true]) {
      const coord = await startCoordinator(
        [...wild, "--set", `health.rollback=${rollback}`, "--force"],
        nats.url,
        {
          fresh: false,
        },
      );
      startWorker(coord.address, nats.url, "w");
      expect(await coord.exited).toBe(1);
      const lines = coord.stderr().trim().split("\n");
      expect(lines.at(-1)).toMatch(/^agon: error: training diverged (again )?at step 5/);
      expect(coord.stderr()).toMatch(/lost: sent a non-finite gradient/);
      if (rollback) {
        expect(coord.stderr()).toMatch(/rolled back to .*ckpt-00000005 \(step 5\)/);
        expect(lines.at(-1)).toMatch(/after a rollback; lower the learning rate/);
      } else {
        expect(lines.at(-1)).toMatch(/lower the learning rate, or set health.rollback/);
      }
    }
  });
});
