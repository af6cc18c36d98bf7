// Killed at seeded random moments and resumed each time, `agon train`,
// `agon local` and a standalone `agon coordinator` (with its own `agon worker`
// processes) end with the calm run's weights and files: the same hashes, one
// metrics line per (step, phase), only this run's checkpoints, and never a
// good checkpoint lost to a kill.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { latestValidCheckpoint } from "../coordinator/checkpoint.js";
import { LOCK_FILE } from "../coordinator/rundir.js";
import { AGON, runAgon, tempDir, tinyRing } from "./helpers/cli.js";
import { type Proc, startCoordinator, startWorker, within } from "./helpers/cluster.js";
import { completeJsonLines } from "./helpers/jsonl.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

const STEPS = 80;
const config = [
  ...tinyRing({ steps: STEPS }),
  "--set",
  "checkpoint.every=10",
  "samples.every=25",
  "--backend",
  "cpu",
];

/** mulberry32: the kill moments are the same on every run of the test. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Complete lines in `dir`'s metrics.jsonl (0 when absent). */
function metricsLines(dir: string): number {
  return completeJsonLines(join(dir, "metrics.jsonl")).length;
}

/** Starts `agon args` and SIGKILLs it once `armed()` and metrics.jsonl has `lines` lines (or it ends first). */
function killAt(args: string[], dir: string, lines: number, armed: () => boolean): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [AGON, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const poll = setInterval(() => {
      if (armed() && metricsLines(dir) >= lines) child.kill("SIGKILL");
    }, 10);
    child.on("close", () => {
      clearInterval(poll);
      resolve(stderr);
    });
  });
}

/** Resolves once no process holds `dir` (agon local's orphaned coordinator checkpoints, then exits). */
async function lockFreed(dir: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    let text: string;
    try {
      text = readFileSync(join(dir, LOCK_FILE), "utf8");
    } catch (err) {
      // Gone (also between a check and this read: its owner just released it).
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    let pid: number;
    try {
      ({ pid } = JSON.parse(text) as { pid: number });
    } catch {
      await new Promise((r) => setTimeout(r, 100)); // being written: read it again
      continue;
    }
    try {
      process.kill(pid, 0);
    } catch {
      return; // a dead owner's lock: the next start takes it over
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The newest valid checkpoint's step after a kill: never below the one before it. */
async function newestAfterKill(dir: string, before: number): Promise<number> {
  const step = (await latestValidCheckpoint(dir))?.data.step ?? -1;
  expect(step, "a kill lost the newest good checkpoint").toBeGreaterThanOrEqual(before);
  expect(seeds(dir).every((s) => s === 1)).toBe(true);
  return step;
}

/** The checks every command's final run dir must pass against the calm run's hashes. */
function expectCalmRunFiles(dir: string): void {
  const seen = new Map<string, number>();
  for (const line of readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n")) {
    const m = JSON.parse(line) as { step: number; phase: number };
    seen.set(`${m.step}.${m.phase}`, (seen.get(`${m.step}.${m.phase}`) ?? 0) + 1);
  }
  expect(seen.size).toBe(2 * STEPS);
  expect([...seen.values()].every((n) => n === 1)).toBe(true);
  expect(seeds(dir).every((s) => s === 1)).toBe(true);
  expect(readdirSync(join(dir, "archive"))).toHaveLength(1);
}

function seeds(dir: string): number[] {
  return readdirSync(dir)
    .filter((n) => n.startsWith("ckpt-"))
    .map((n) => JSON.parse(readFileSync(join(dir, n, "manifest.json"), "utf8")).seed as number);
}

describe("killed at random moments and resumed", () => {
  for (const command of ["train", "local"] as const) {
    it(`agon ${command}: final hashes = calm run, one metrics line per (step, phase), no checkpoint of another run, no good checkpoint lost`, async () => {
      const extra = command === "local" ? ["--workers", "1"] : [];
      const dir = tempDir();
      // Another run (another seed) used this dir before; --fresh moves it aside.
      const [old, calm] = await Promise.all([
        runAgon(["train", ...config, "--seed", "9", "--steps", "30", "--run-dir", dir]),
        runAgon(["train", ...config, "--run-dir", tempDir(), "--json"]),
      ]);
      expect(old.code, old.stderr).toBe(0);
      expect(calm.code, calm.stderr).toBe(0);
      const random = rng(command === "train" ? 12 : 13);
      let newest = -1;
      for (let kill = 0; kill < 3; kill++) {
        // Somewhere in the next 10 to 60 of the run's 2·STEPS metrics lines.
        const at = metricsLines(dir) * (kill === 0 ? 0 : 1) + 10 + Math.floor(random() * 50);
        const args = [
          command,
          ...config,
          ...extra,
          "--run-dir",
          dir,
          ...(kill === 0 ? ["--fresh"] : []),
        ];
        // The first start must have moved the old run aside before its lines count.
        const armed = () => kill > 0 || existsSync(join(dir, "archive"));
        const stderr = await killAt(args, dir, at, armed);
        expect(stderr).not.toMatch(/resumed from [^\n]*archive/);
        await lockFreed(dir);
        newest = await newestAfterKill(dir, newest);
      }
      const last = await runAgon([command, ...config, ...extra, "--run-dir", dir, "--json"]);
      expect(last.code, last.stderr).toBe(0);
      const hashes = (r: { stdout: string }) =>
        JSON.parse(r.stdout.trim().split("\n").at(-1)!).hashes as { G: string; D: string };
      expect(hashes(last)).toEqual(hashes(calm));
      expectCalmRunFiles(dir);
    }, 240_000);
  }

  it("agon coordinator with two agon worker processes: the same, the workers re-joining each restarted coordinator", async () => {
    // Workers compute with wasm; the calm run and the coordinator use it too.
    const ring = [...config.slice(0, -2), "--backend", "wasm"];
    const dir = tempDir();
    const [old, calm] = await Promise.all([
      runAgon(["train", ...ring, "--seed", "9", "--steps", "30", "--run-dir", dir]),
      runAgon(["train", ...ring, "--run-dir", tempDir(), "--json"]),
    ]);
    expect(old.code, old.stderr).toBe(0);
    expect(calm.code, calm.stderr).toBe(0);
    const random = rng(14);
    let newest = -1;
    let address = "127.0.0.1:0";
    let workers: Proc[] = [];
    for (let kill = 0; kill < 3; kill++) {
      // Always before the last 10 steps: a coordinator that finished would leave nothing to resume.
      const at = Math.min(
        metricsLines(dir) * (kill === 0 ? 0 : 1) + 10 + Math.floor(random() * 50),
        2 * STEPS - 20,
      );
      const coord = await startCoordinator([...ring, "--run-dir", dir], nats.url, {
        listen: address,
        fresh: kill === 0,
      });
      address = coord.address;
      // The same two worker processes for the whole run: they wait for each restart.
      if (kill === 0) workers = ["w0", "w1"].map((n) => startWorker(address, nats.url, n));
      const armed = () => kill > 0 || existsSync(join(dir, "archive"));
      const poll = setInterval(() => {
        if (armed() && metricsLines(dir) >= at) coord.child.kill("SIGKILL");
      }, 10);
      // A hang says where it is and what the processes said last (a bare test timeout does not).
      const procs = { coordinator: coord, w0: workers[0], w1: workers[1] };
      await within(coord.exited, 100_000, `coordinator ${kill} reaching step ${at}`, procs);
      clearInterval(poll);
      expect(coord.stderr()).not.toMatch(/resumed from [^\n]*archive/);
      newest = await newestAfterKill(dir, newest);
    }
    const last = await startCoordinator([...ring, "--run-dir", dir], nats.url, {
      listen: address,
      fresh: false,
    });
    const done = await within(last.done, 100_000, "the last coordinator's end", {
      coordinator: last,
      w0: workers[0],
      w1: workers[1],
    });
    expect(await last.exited, last.stderr()).toBe(0);
    expect(last.stderr()).toMatch(/resumed from /);
    expect(done.hashes).toEqual(JSON.parse(calm.stdout.trim().split("\n").at(-1)!).hashes);
    for (const w of workers) {
      expect(await w.exited, w.stderr()).toBe(0);
      expect(w.stderr()).toMatch(/re-joined/);
    }
    expectCalmRunFiles(dir);
  }, 480_000);
});
