// A run's lifecycle around its weights: one owner per run dir, --fresh moving
// the previous run aside, a resume cutting back what was written after its
// checkpoint, and a checkpoint at or past `steps` ending at once.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LOCK_FILE, processStartTicks, RunDirLock } from "../coordinator/rundir.js";
import { AGON, runAgon, tempDir, tinyRing } from "./helpers/cli.js";
import { completeJsonLines } from "./helpers/jsonl.js";

const ring = (steps: number, extra: string[] = []) => [
  ...tinyRing({ steps }),
  "--set",
  "checkpoint.every=10",
  "checkpoint.keep=3",
  "samples.every=5",
  "samples.count=16",
  ...extra,
];

function summary(stdout: string): { step: number; hashes: { G: string; D: string } } {
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

/** (step, phase) → number of metrics lines. */
function metricsCounts(dir: string): Map<string, number> {
  const seen = new Map<string, number>();
  for (const line of readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n")) {
    const m = JSON.parse(line) as { step: number; phase: number };
    const k = `${m.step}.${m.phase}`;
    seen.set(k, (seen.get(k) ?? 0) + 1);
  }
  return seen;
}

const checkpoints = (dir: string) =>
  readdirSync(dir)
    .filter((n) => n.startsWith("ckpt-"))
    .sort();

/** Complete lines in `dir`'s metrics.jsonl (0 when absent). */
function metricsLines(dir: string): number {
  return completeJsonLines(join(dir, "metrics.jsonl")).length;
}

/** Starts `agon args`, sends `signal` once `ready()` holds, and resolves with its exit and output. */
function signalWhen(
  args: string[],
  ready: () => boolean,
  signal: NodeJS.Signals,
): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AGON, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    let stdout = "";
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    const poll = setInterval(() => {
      if (ready()) {
        clearInterval(poll);
        child.kill(signal);
      }
    }, 20);
    const guard = setTimeout(() => child.kill("SIGKILL"), 100_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearInterval(poll);
      clearTimeout(guard);
      resolve({ code, stderr, stdout });
    });
  });
}

const noStackTrace = (stderr: string) => expect(stderr).not.toMatch(/\n\s+at |Error: /);

/** The pid of a process that has just exited (free, until the kernel reuses it). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""]);
  await new Promise((r) => child.once("exit", r));
  return child.pid!;
}

describe("run dir ownership", () => {
  it("refuses a second train, coordinator or local with one line naming the owner's pid and host", async () => {
    const dir = tempDir();
    const lock = RunDirLock.acquire(dir, "train", () => {});
    try {
      const runs = await Promise.all([
        runAgon(["train", ...ring(5), "--run-dir", dir]),
        runAgon([
          "coordinator",
          ...ring(5),
          "--run-dir",
          dir,
          "--nats",
          "nats://127.0.0.1:1",
          "--backend",
          "cpu",
        ]),
        runAgon(["local", ...ring(5), "--run-dir", dir, "--workers", "1", "--backend", "cpu"]),
      ]);
      for (const r of runs) {
        expect(r.code, r.stderr).toBe(2);
        const errors = r.stderr.split("\n").filter((l) => l.startsWith("agon: error:"));
        expect(errors).toHaveLength(1);
        expect(errors[0]).toContain(`in use by pid ${process.pid} on ${hostname()}`);
        // Refused before anything is loaded: no dataset or model line first.
        expect(r.stderr).not.toMatch(/^(dataset|model):/m);
        expect(r.stderr).not.toMatch(/\n\s+at /);
      }
      expect(existsSync(join(dir, "metrics.jsonl"))).toBe(false);
    } finally {
      lock.release();
    }
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  }, 120_000);

  it("takes over the lock of a crashed owner (a free pid, or a reused pid with another start time)", async () => {
    const free = tempDir();
    const reused = tempDir();
    const owner = (pid: number, startTicks: number | null) =>
      `${JSON.stringify({ pid, host: hostname(), startTicks, bootId: null, command: "train", since: "then" })}\n`;
    writeFileSync(join(free, LOCK_FILE), owner(await deadPid(), null));
    // This test process is alive, but not the process that started at tick 1.
    const ticks = processStartTicks(process.pid);
    writeFileSync(join(reused, LOCK_FILE), owner(process.pid, ticks === null ? null : ticks + 1));
    const [a, b] = await Promise.all([
      runAgon(["train", ...ring(5), "--run-dir", free, "--backend", "cpu"]),
      runAgon(["train", ...ring(5), "--run-dir", reused, "--backend", "cpu"]),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stderr).toMatch(/taking over the lock of pid \d+ .* no longer running/);
    expect(existsSync(join(free, LOCK_FILE))).toBe(false);
    if (ticks !== null) {
      expect(b.code, b.stderr).toBe(0);
      expect(b.stderr).toContain(`taking over the lock of pid ${process.pid}`);
    }
  }, 120_000);

  it("--fresh moves the previous run into archive/<date>/; pruning and resume see only the new run", async () => {
    const dir = tempDir();
    const a = await runAgon(["train", ...ring(30), "--seed", "1", "--run-dir", dir, "--json"]);
    expect(a.code, a.stderr).toBe(0);
    const b = await runAgon([
      "train",
      ...ring(15),
      "--seed",
      "2",
      "--run-dir",
      dir,
      "--fresh",
      "--json",
    ]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toMatch(/previous run's files are now in .*archive/);
    expect(checkpoints(dir)).toEqual(["ckpt-00000010", "ckpt-00000015"]);
    for (const c of checkpoints(dir)) {
      expect(JSON.parse(readFileSync(join(dir, c, "manifest.json"), "utf8")).seed).toBe(2);
    }
    expect(metricsCounts(dir).size).toBe(30);
    const [archived] = readdirSync(join(dir, "archive"));
    expect(archived).toMatch(/^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ/);
    const old = join(dir, "archive", archived);
    expect(checkpoints(old)).toEqual(["ckpt-00000010", "ckpt-00000020", "ckpt-00000030"]);
    expect(metricsCounts(old).size).toBe(60);
    expect(existsSync(join(old, "summary.json"))).toBe(true);
    // TensorBoard event files go with their run: only B's file stays.
    const events = (d: string) =>
      readdirSync(d).filter((n) => n.startsWith("events.out.tfevents."));
    expect(events(dir)).toHaveLength(1);
    expect(events(old).length).toBeGreaterThanOrEqual(1);
    // Continuing B resumes B's own newest checkpoint and equals an uninterrupted B.
    const [c, calm] = await Promise.all([
      runAgon(["train", ...ring(25), "--seed", "2", "--run-dir", dir, "--json"]),
      runAgon(["train", ...ring(25), "--seed", "2", "--run-dir", tempDir(), "--json"]),
    ]);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stderr).toContain("ckpt-00000015");
    expect(summary(c.stdout).hashes).toEqual(summary(calm.stdout).hashes);
  }, 120_000);
});

describe("resume", () => {
  it("cuts back metrics lines and sample grids written after the checkpoint it resumes from", async () => {
    const dir = tempDir();
    const calmDir = tempDir();
    const first = await runAgon(["train", ...ring(27), "--run-dir", dir]);
    expect(first.code, first.stderr).toBe(0);
    // As if killed at step 27 with only ckpt-10 on disk (20 and 27 lost), and a torn last line.
    rmSync(join(dir, "ckpt-00000020"), { recursive: true });
    rmSync(join(dir, "ckpt-00000027"), { recursive: true });
    writeFileSync(join(dir, "metrics.jsonl"), '{"step":27,"pha', { flag: "a" });
    const [resumed, calm] = await Promise.all([
      runAgon(["train", ...ring(30), "--run-dir", dir, "--json"]),
      runAgon(["train", ...ring(30), "--run-dir", calmDir, "--json"]),
    ]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain("removed 35 metrics line(s) and 4 sample grid(s)");
    expect(summary(resumed.stdout).hashes).toEqual(summary(calm.stdout).hashes);
    const counts = metricsCounts(dir);
    expect(counts.size).toBe(60);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    // The same lines as the calm run, apart from timestamps.
    const strip = (d: string) =>
      readFileSync(join(d, "metrics.jsonl"), "utf8").replace(/"time":"[^"]*"/g, "");
    expect(strip(dir)).toBe(strip(calmDir));
    expect(readdirSync(join(dir, "samples")).sort()).toEqual(
      readdirSync(join(calmDir, "samples")).sort(),
    );
  }, 120_000);

  it("with no checkpoint yet (killed before the first), starts over without the earlier attempt's lines", async () => {
    const dir = tempDir();
    const first = await runAgon(["train", ...ring(27), "--run-dir", dir]);
    expect(first.code, first.stderr).toBe(0);
    // As if killed at step 27 before any checkpoint reached the disk.
    for (const c of checkpoints(dir)) rmSync(join(dir, c), { recursive: true });
    const [again, calm] = await Promise.all([
      runAgon(["train", ...ring(30), "--run-dir", dir, "--json"]),
      runAgon(["train", ...ring(30), "--run-dir", tempDir(), "--json"]),
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain("no checkpoint to resume from; removed 54 metrics line(s)");
    expect(summary(again.stdout).hashes).toEqual(summary(calm.stdout).hashes);
    const counts = metricsCounts(dir);
    expect(counts.size).toBe(60);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
  }, 120_000);

  it("from a checkpoint at or past steps ends at once with exit 0 in train and local, writing nothing", async () => {
    const dir = tempDir();
    const first = await runAgon(["train", ...ring(30), "--run-dir", dir, "--backend", "cpu"]);
    expect(first.code, first.stderr).toBe(0);
    const before = readFileSync(join(dir, "metrics.jsonl"), "utf8");
    const t = await runAgon(["train", ...ring(10), "--run-dir", dir, "--backend", "cpu"]);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stderr).toContain(
      "nothing to do: the checkpoint is at step 30 and the run has steps: 10",
    );
    const l = await runAgon([
      "local",
      ...ring(10),
      "--run-dir",
      dir,
      "--workers",
      "1",
      "--backend",
      "cpu",
    ]);
    expect(l.code, l.stderr).toBe(0);
    expect(l.stderr).toContain("nothing to do");
    expect(l.stderr).not.toMatch(/Error|\n\s+at /);
    expect(readFileSync(join(dir, "metrics.jsonl"), "utf8")).toBe(before);
  }, 150_000);
});

describe("agon train's health and stops", () => {
  const blowUp = ["optimizer.g.lr=1e30", "optimizer.d.lr=1e30"];

  it("stops on NaN like the coordinator, exit 1 with one line, and never checkpoints NaN weights", async () => {
    const dir = tempDir();
    const calm = await runAgon(["train", ...ring(20), "--run-dir", dir, "--backend", "cpu"]);
    expect(calm.code, calm.stderr).toBe(0);
    const before = checkpoints(dir);
    const r = await runAgon([
      "train",
      ...ring(60, blowUp),
      "--run-dir",
      dir,
      "--backend",
      "cpu",
      "--force",
    ]);
    expect(r.code, r.stderr).toBe(1);
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("agon: error:"));
    expect(errors).toEqual([
      expect.stringMatching(/^agon: error: training diverged at step 20 .*lower the learning rate/),
    ]);
    noStackTrace(r.stderr);
    expect(checkpoints(dir)).toEqual(before);
    expect(JSON.parse(readFileSync(join(dir, "summary.json"), "utf8")).error).toMatch(/diverged/);
  }, 120_000);

  it("with health.rollback rolls back once, then stops; the lines of the rolled-back phases are cut", async () => {
    const dir = tempDir();
    const calm = await runAgon(["train", ...ring(20), "--run-dir", dir, "--backend", "cpu"]);
    expect(calm.code, calm.stderr).toBe(0);
    const r = await runAgon([
      "train",
      ...ring(60, [...blowUp, "health.rollback=true"]),
      "--run-dir",
      dir,
      "--backend",
      "cpu",
      "--force",
    ]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain("rolled back to");
    expect(r.stderr).toMatch(/agon: error: training diverged again at step 20/);
    expect([...metricsCounts(dir).values()].every((n) => n === 1)).toBe(true);
  }, 120_000);

  it("SIGTERM (exit 0) and SIGINT (exit 130) checkpoint the last completed phase without a stack trace; the resumes equal a calm run", async () => {
    const args = [
      ...tinyRing({ steps: 120 }),
      "--set",
      "checkpoint.every=1000",
      "--backend",
      "cpu",
    ];
    const stops = [
      ["SIGTERM", 0],
      ["SIGINT", 130],
    ] as const;
    const dirs = stops.map(() => tempDir());
    const stopped = await Promise.all(
      stops.map(([signal], i) =>
        signalWhen(
          ["train", ...args, "--run-dir", dirs[i]],
          () => metricsLines(dirs[i]) >= 40,
          signal,
        ),
      ),
    );
    for (const [i, [, code]] of stops.entries()) {
      const r = stopped[i];
      expect(r.code, r.stderr).toBe(code);
      noStackTrace(r.stderr);
      expect(r.stderr).toMatch(/stopped at step \d+ phase \d; checkpoint written/);
      const [ckpt] = checkpoints(dirs[i]);
      expect(Number(ckpt.slice(5))).toBeGreaterThanOrEqual(20);
      expect(Number(ckpt.slice(5))).toBeLessThan(120);
    }
    const [calm, ...resumed] = await Promise.all([
      runAgon(["train", ...args, "--run-dir", tempDir(), "--json"]),
      ...dirs.map((dir) => runAgon(["train", ...args, "--run-dir", dir, "--json"])),
    ]);
    for (const [i, r] of resumed.entries()) {
      expect(r.code, r.stderr).toBe(0);
      expect(summary(r.stdout).hashes).toEqual(summary(calm.stdout).hashes);
      const counts = metricsCounts(dirs[i]);
      expect(counts.size).toBe(240);
      expect([...counts.values()].every((n) => n === 1)).toBe(true);
    }
  }, 150_000);
});
