// `agon local`: the one-command cluster (nats-server + coordinator + N workers)
// run as a real child process, the way the README's quick start runs it.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { latestValidCheckpoint } from "../coordinator/checkpoint.js";
import { LOCK_FILE } from "../coordinator/rundir.js";
import { AGON, runAgon, tempDir, tinyRing } from "./helpers/cli.js";

// The distributed tests need the coordinator and worker subcommands.

const ringFlags = (dir: string, steps: number) => [...tinyRing({ steps }), "--run-dir", dir];

/**
 * Flags that only `agon local` gets: a run id of its own (it names the NATS
 * subjects, not the trajectory) and, when NATS_URL names a shared server, that
 * server instead of a nats-server of its own.
 */
const localFlags = () => [
  "--set",
  `run.id=local-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
  ...(process.env.NATS_URL ? ["--nats", process.env.NATS_URL] : []),
];

function lastJson(stdout: string): { step: number; hashes: { G: string; D: string } } {
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

/** Every process below `root` in the process tree (Linux /proc). */
function descendants(root: number): number[] {
  const parentOf = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      parentOf.set(Number(name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // Gone while we looked.
    }
  }
  const found: number[] = [];
  let frontier = new Set([root]);
  while (frontier.size > 0) {
    const next = new Set<number>();
    for (const [pid, ppid] of parentOf) if (frontier.has(ppid)) next.add(pid);
    found.push(...next);
    frontier = next;
  }
  return found;
}

/** Running (not a zombie) per /proc. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !["Z", "X"].includes(stat[stat.lastIndexOf(")") + 2]);
  } catch {
    return false;
  }
}

/** Processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      if (argv.some((a) => a.includes(text)) && running(Number(name))) pids.push(Number(name));
    } catch {}
  }
  return pids;
}

async function eventually(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: "127.0.0.1", port });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
}

describe("agon local", () => {
  it("with 2 workers ends with the weight hashes of agon train", async () => {
    const localDir = tempDir();
    const trainDir = tempDir();
    const [local, train] = await Promise.all([
      runAgon(["local", "--workers", "2", ...ringFlags(localDir, 20), ...localFlags(), "--json"], {
        timeoutMs: 170_000,
      }),
      runAgon(["train", ...ringFlags(trainDir, 20), "--json"]),
    ]);
    expect(train.code, train.stderr).toBe(0);
    expect(local.code, local.stderr).toBe(0);
    const l = lastJson(local.stdout);
    expect(l.step).toBe(20);
    expect(l.hashes).toEqual(lastJson(train.stdout).hashes);
    expect(JSON.parse(readFileSync(join(localDir, "summary.json"), "utf8")).hashes).toEqual(
      l.hashes,
    );
    // The dashboard's address is said once (local's own line, not the coordinator's as well).
    expect(local.stderr.match(/http:\/\/127\.0\.0\.1:\d+/g), local.stderr).toHaveLength(2);
    expect(local.stderr).toMatch(/^dashboard: http:\/\/127\.0\.0\.1:\d+\/ {2}\(Prometheus: /m);

    // The same command again: the run is done, so no worker starts, no progress line shows a
    // rate over no steps, and the summary is the same.
    const again = await runAgon(
      ["local", "--workers", "2", ...ringFlags(localDir, 20), ...localFlags(), "--json"],
      { timeoutMs: 170_000 },
    );
    expect(again.code, again.stderr).toBe(0);
    expect(lastJson(again.stdout).hashes).toEqual(l.hashes);
    expect(again.stderr).toMatch(/nothing to do: the checkpoint is at step 20/);
    expect(again.stderr).toMatch(
      /^local: done: step 20 \(the run was already there; no workers started\)/m,
    );
    expect(again.stderr).not.toMatch(/\[worker-|steps\/s|waiting for the coordinator/);
  }, 240_000);

  it.skipIf(process.platform !== "linux")(
    "on SIGINT checkpoints, stops every child process and says how to resume",
    async () => {
      const dir = tempDir();
      const child = spawn(
        process.execPath,
        [
          AGON,
          "local",
          "--workers",
          "2",
          ...ringFlags(dir, 100_000),
          "--set",
          "checkpoint.every=1000000", // so the checkpoint can only come from the stop
          ...localFlags(),
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
      const killer = setTimeout(() => child.kill("SIGKILL"), 150_000);
      try {
        // The first status line means metrics flow: NATS, coordinator and workers all run.
        const training = await new Promise<boolean>((resolve) => {
          child.stderr.on("data", (b: Buffer) => {
            stderr += b.toString();
            if (/^step \d+\/100000 /m.test(stderr)) resolve(true);
          });
          void closed.then(() => resolve(false));
        });
        expect(training, stderr).toBe(true);

        // The run dir's lock names the launcher, so a second run on it is told what to stop.
        const lock = JSON.parse(readFileSync(join(dir, LOCK_FILE), "utf8"));
        expect(lock.command).toBe(`coordinator under agon local pid ${child.pid}`);

        const tree = descendants(child.pid!);
        const ownNats = !process.env.NATS_URL;
        expect(tree.length, `children of agon local: ${tree.join(", ")}`).toBeGreaterThanOrEqual(
          ownNats ? 4 : 3,
        );
        const natsPort = Number(
          /started nats-server on nats:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)?.[1],
        );

        child.kill("SIGINT");
        const code = await closed;
        expect(code, stderr).toBe(130);
        expect(stderr).toContain("stopped; resume with the same command");
        // A requested stop is not reported as a failure: no lost workers or coordinator, no refused results.
        expect(stderr).not.toMatch(
          / lost|reassigned|not accepted|rejected a gradient|Call cancelled|Resolution note/,
        );
        expect(stderr).toMatch(/the coordinator is stopping \(its checkpoint is written\)/);

        const leftover = () => [...tree.filter(running), ...processesMentioning(dir)];
        expect(
          await eventually(() => leftover().length === 0, 5000),
          `left running: ${leftover()}`,
        ).toBe(true);
        if (ownNats) expect(await portOpen(natsPort)).toBe(false);

        const ckpt = await latestValidCheckpoint(dir);
        expect(ckpt, `no valid checkpoint in ${readdirSync(dir).join(", ")}`).not.toBeNull();
        expect(existsSync(join(dir, "summary.json"))).toBe(false);
      } finally {
        clearTimeout(killer);
        child.kill("SIGKILL");
      }
    },
    180_000,
  );

  it.skipIf(process.platform !== "linux")(
    "SIGKILLed, leaves no coordinator, worker or nats-server running 5 s later",
    async () => {
      const dir = tempDir();
      const child = spawn(
        process.execPath,
        [AGON, "local", "--workers", "2", ...ringFlags(dir, 100_000), ...localFlags()],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
      let tree: number[] = [];
      try {
        const training = await new Promise<boolean>((resolve) => {
          child.stderr.on("data", (b: Buffer) => {
            stderr += b.toString();
            if (/^step \d+\/100000 /m.test(stderr)) resolve(true);
          });
          void closed.then(() => resolve(false));
        });
        expect(training, stderr).toBe(true);
        tree = descendants(child.pid!);
        const ownNats = !process.env.NATS_URL;
        expect(tree.length).toBeGreaterThanOrEqual(ownNats ? 4 : 3);
        const natsPort = Number(
          /started nats-server on nats:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)?.[1],
        );

        child.kill("SIGKILL");
        await closed;
        const leftover = () => [...tree.filter(running), ...processesMentioning(dir)];
        expect(
          await eventually(() => leftover().length === 0, 5000),
          `left running: ${leftover()}`,
        ).toBe(true);
        if (ownNats) expect(await portOpen(natsPort)).toBe(false);
      } finally {
        child.kill("SIGKILL");
        for (const pid of tree.filter(running)) process.kill(pid, "SIGKILL");
      }
    },
    180_000,
  );

  it("with an AGON_NATS_SERVER that is not there says so in one line, and what to set instead", async () => {
    // Named but missing is an error, not a reason to run without NATS (test/nonats.test.ts).
    const r = await runAgon(["local", "--workers", "1", ...ringFlags(tempDir(), 5)], {
      env: { PATH: tempDir("agon-empty-path-"), AGON_NATS_SERVER: "/nonexistent" },
    });
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trim().split("\n");
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^agon: error: no NATS server: AGON_NATS_SERVER=\/nonexistent is not an executable file; point it at a nats-server binary, or set it to none to run without NATS$/,
    );
    expect(r.stdout).toBe("");
  });

  it("with an unreachable --nats fails in one line that names the URL", async () => {
    const r = await runAgon(["local", ...ringFlags(tempDir(), 5), "--nats", "nats://127.0.0.1:1"]);
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trim().split("\n");
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^agon: error: cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: /);
  });

  it("rejects a bad config before starting anything", async () => {
    const r = await runAgon(["local", ...ringFlags(tempDir(), 5), "--batch", "30"]);
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trim().split("\n");
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^agon: error: config: batch \(from --batch\): must be a multiple of shards/,
    );
  });
});
