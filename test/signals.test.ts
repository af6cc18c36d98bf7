// SIGTERM and SIGINT reach every long-running command in its waiting states
// (starting, waiting for workers, waiting for a run, computing): each exits
// cleanly, 0 or the shell's 128 + signal, without a stack trace, and leaves no
// lock behind. (A worker waiting for its coordinator: test/patience.test.ts.) And a
// reader that goes away (`agon train 2>&1 | head`) stops a run the same way.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LOCK_FILE } from "../coordinator/rundir.js";
import { AGON, tempDir, tinyRing } from "./helpers/cli.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

/** Starts `agon args`, sends `signal` once `ready(stderr)` holds, and resolves with its exit. */
function stopWhen(
  args: string[],
  ready: (stderr: string, stdout: string) => boolean,
  signal: NodeJS.Signals,
): Promise<{ code: number | null; stderr: string; signalled: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [AGON, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    let signalled = false;
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const poll = setInterval(() => {
      if (!signalled && ready(stderr, stdout)) {
        signalled = true;
        child.kill(signal);
      }
    }, 20);
    const guard = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.on("close", (code) => {
      clearInterval(poll);
      clearTimeout(guard);
      resolve({ code, stderr, signalled });
    });
  });
}

const config = (steps: number) => [...tinyRing({ steps }), "--backend", "cpu"];

function expectClean(
  r: { code: number | null; stderr: string; signalled: boolean },
  codes: number[],
): void {
  expect(r.signalled, r.stderr).toBe(true);
  expect(codes, r.stderr).toContain(r.code);
  expect(r.stderr).not.toMatch(/\n\s+at |Error: |agon: error/);
}

const started = (dir: string) => () => existsSync(join(dir, LOCK_FILE));
const metricsFrom = (dir: string) => () => {
  try {
    return readFileSync(join(dir, "metrics.jsonl"), "utf8").length > 0;
  } catch {
    return false;
  }
};

describe("SIGTERM and SIGINT in every waiting state", () => {
  for (const [signal, shellCode] of [
    ["SIGTERM", 143],
    ["SIGINT", 130],
  ] as const) {
    it(`${signal}: train starting and computing, coordinator starting and waiting for workers, local starting, watch waiting for a run`, async () => {
      const dirs = Array.from({ length: 5 }, () => tempDir());
      const coordinator = (dir: string) => [
        "coordinator",
        ...config(50),
        "--run-dir",
        dir,
        "--nats",
        nats.url,
        "--listen",
        "127.0.0.1:0",
      ];
      const runs = await Promise.all([
        // train: while starting (before its first phase), and while computing.
        stopWhen(["train", ...config(100000), "--run-dir", dirs[0]], started(dirs[0]), signal),
        stopWhen(["train", ...config(100000), "--run-dir", dirs[1]], metricsFrom(dirs[1]), signal),
        // coordinator: while starting, and listening with no worker.
        stopWhen(coordinator(dirs[2]), started(dirs[2]), signal),
        stopWhen(coordinator(dirs[3]), (e) => e.includes("listening on"), signal),
        // local: while its children start.
        stopWhen(
          ["local", ...config(100000), "--run-dir", dirs[4], "--workers", "1", "--nats", nats.url],
          (e) => e.includes("local: coordinator (pid"),
          signal,
        ),
        // watch: no run of that name is active.
        stopWhen(
          ["watch", "--run", "nobody-runs-this", "--nats", nats.url],
          (_, out) => out.includes("watching run"),
          signal,
        ),
      ]);
      const [trainStarting, trainComputing, coordStarting, coordWaiting, local, watch] = runs;
      expectClean(trainStarting, [0, 130]);
      expectClean(trainComputing, [0, 130]);
      expect(trainComputing.stderr).toMatch(/stopped at step \d+ phase \d; checkpoint written/);
      expectClean(coordStarting, [0]);
      expectClean(coordWaiting, [0]);
      expectClean(local, [0, shellCode]);
      expectClean(watch, [0, shellCode]);
      for (const dir of dirs) expect(existsSync(join(dir, LOCK_FILE)), dir).toBe(false);
    }, 150_000);
  }
});

describe("a reader that goes away", () => {
  it("train piped into `head`: the write that fails with EPIPE stops the run as SIGTERM does (checkpoint, no lock), not exit 7", async () => {
    const dir = tempDir();
    // `agon train 2>&1 | …` in a shell: one pipe for both streams, closed by its reader at
    // the first progress line (training has begun). The run's next progress line fails.
    const script = `"${process.execPath}" "${AGON}" train ${[...config(100000), "--run-dir", dir]
      .map((a) => `'${a}'`)
      .join(" ")} 2>&1 | awk '/^step /{print; exit}'; echo "rc=\${PIPESTATUS[0]}"`;
    const child = spawn("bash", ["-c", script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
    });
    const guard = setTimeout(() => child.kill("SIGKILL"), 90_000);
    await new Promise((done) => child.on("close", done));
    clearTimeout(guard);
    const lines = out.trim().split("\n");
    expect(lines, out).toHaveLength(2);
    expect(lines[0]).toMatch(/^step \d+\/100000 /);
    expect(lines[1]).toBe("rc=0");
    expect(existsSync(join(dir, LOCK_FILE)), out).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith("ckpt-")).length, out).toBeGreaterThan(0);
  }, 120_000);
});
