// Resource errors in the run dir's write paths (full disk, read-only file
// system, a vanished dir): one line naming the path and the cause, exit
// non-zero, the last good checkpoint intact, no stack trace. The full-disk and
// read-only cases mount a small tmpfs, which needs root; without it they are
// skipped with one line.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readCheckpoint } from "../coordinator/checkpoint.js";
import { AGON, runAgon, tempDir, tinyRing } from "./helpers/cli.js";

const mounts: string[] = [];

/** A fresh tmpfs of `size` (e.g. "48k"), or null when this process may not mount one. */
function tmpfs(size: string): string | null {
  const dir = tempDir("agon-tmpfs-");
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir]);
  if (r.status !== 0) return null;
  mounts.push(dir);
  return dir;
}

const canMount = (() => {
  const probe = tmpfs("16k");
  return probe !== null;
})();
if (!canMount) {
  console.log(
    "resources.test: cannot mount a tmpfs here (needs root); full-disk and read-only cases skipped",
  );
}

afterAll(() => {
  for (const dir of mounts) spawnSync("umount", ["-l", dir]);
});

const args = (steps: number) => [
  ...tinyRing({ steps }),
  "--set",
  "checkpoint.every=10",
  "samples.every=1000",
  "--backend",
  "cpu",
];

/** One `agon: error:` line, naming `path` and `cause`, and no stack trace. */
function expectOneLine(stderr: string, path: string, cause: string): void {
  const errors = stderr.split("\n").filter((l) => l.startsWith("agon: error:"));
  expect(errors, stderr).toHaveLength(1);
  expect(errors[0]).toContain(path);
  expect(errors[0]).toContain(cause);
  expect(stderr).not.toMatch(/\n\s+at |Error: /);
}

/** Every checkpoint left in `dir` verifies, and there is at least one. */
async function expectGoodCheckpoints(dir: string): Promise<void> {
  const names = readdirSync(dir).filter((n) => n.startsWith("ckpt-"));
  expect(names.length).toBeGreaterThan(0);
  for (const n of names) await readCheckpoint(join(dir, n));
}

/** Runs `agon args`; calls `during` once `when()` holds; resolves with its exit and stderr. */
function runWhile(
  argv: string[],
  when: () => boolean,
  during: () => void,
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [AGON, ...argv], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const poll = setInterval(() => {
      if (when()) {
        clearInterval(poll);
        during();
      }
    }, 20);
    const guard = setTimeout(() => child.kill("SIGKILL"), 100_000);
    child.on("close", (code) => {
      clearInterval(poll);
      clearTimeout(guard);
      resolve({ code, stderr });
    });
  });
}

describe("resource errors in the run dir", () => {
  it.skipIf(!canMount)(
    "a full disk stops train and local with one line naming the path and 'no space left on device'",
    async () => {
      // Room for a checkpoint or two (each blob a 4 KiB page), not for 300 steps of logs.
      const [a, b] = [tmpfs("128k")!, tmpfs("128k")!];
      const [t, l] = await Promise.all([
        runAgon(["train", ...args(300), "--run-dir", join(a, "run")]),
        runAgon(["local", ...args(300), "--workers", "1", "--run-dir", join(b, "run")]),
      ]);
      expect(t.code, t.stderr).toBe(1);
      expectOneLine(t.stderr, join(a, "run"), "no space left on device");
      expect(t.stderr).toMatch(/last good checkpoint .*ckpt-\d+ \(step \d+\) is intact/);
      await expectGoodCheckpoints(join(a, "run"));
      expect(existsSync(join(a, "run", "agon.lock"))).toBe(false);
      expect(l.code, l.stderr).not.toBe(0);
      const localErrors = l.stderr.split("\n").filter((x) => x.startsWith("agon: error:"));
      expect(localErrors).toHaveLength(1);
      expect(localErrors[0]).toMatch(/coordinator .*no space left on device/);
      await expectGoodCheckpoints(join(b, "run"));
    },
    150_000,
  );

  it.skipIf(!canMount)(
    "a run dir that turns read-only mid-run stops train with 'read-only file system'",
    async () => {
      const fs = tmpfs("8m")!;
      const dir = join(fs, "run");
      const r = await runWhile(
        ["train", ...args(3000), "--run-dir", dir],
        () => existsSync(join(dir, "ckpt-00000010")),
        () => spawnSync("mount", ["-o", "remount,ro", fs]),
      );
      expect(r.code, r.stderr).toBe(1);
      expectOneLine(r.stderr, dir, "read-only file system");
      await expectGoodCheckpoints(dir);
      // A second start on the read-only dir is refused at the lock, with the same cause.
      const again = await runAgon(["train", ...args(3000), "--run-dir", dir]);
      expect(again.code).toBe(2);
      expectOneLine(again.stderr, dir, "read-only file system");
    },
    120_000,
  );

  it("a run dir removed mid-run stops train with one line saying so", async () => {
    const dir = join(tempDir(), "run");
    mkdirSync(dir);
    const r = await runWhile(
      ["train", ...args(3000), "--run-dir", dir],
      () => existsSync(join(dir, "ckpt-00000010")),
      // Gone from its path at once (a recursive rm races the run's writes: ENOTEMPTY); the
      // moved tree is deleted once the run has stopped.
      () => renameSync(dir, `${dir}-removed`),
    );
    rmSync(`${dir}-removed`, { recursive: true, force: true });
    expect(r.code, r.stderr).toBe(1);
    expectOneLine(r.stderr, dir, "no such file or directory (was it removed?)");
  }, 120_000);
});
