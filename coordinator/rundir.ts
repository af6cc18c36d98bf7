// The run dir's lifecycle around the checkpoints: one live owner at a time (a
// lock file a crashed owner cannot leave stuck), `--fresh` moving the previous
// run aside, and a resume cutting back what the run wrote after the checkpoint
// it resumes from, so the files read as if the run had never stopped.
import {
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { fileErrorCause } from "../shared/errno.js";
import { cutEventFiles } from "./tensorboard.js";

/** The lock file's name inside a run dir. */
export const LOCK_FILE = "agon.lock";

/** A run dir is in use by another live process, or cannot be locked; the message is the one line shown. */
export class RunDirError extends Error {
  override name = "RunDirError";
}

/** What the lock file holds: enough to tell a live owner from a crashed one. */
export interface LockOwner {
  pid: number;
  host: string;
  /** The process's start time as the kernel counts it (clock ticks since boot), null where unknown. */
  startTicks: number | null;
  /** The kernel's boot id (a reboot makes every pid new), null where unknown. */
  bootId: string | null;
  /** The command that holds it: train, coordinator. */
  command: string;
  /** ISO time the lock was taken. */
  since: string;
}

/** Clock ticks since boot at which process `pid` started (field 22 of /proc/<pid>/stat); null off Linux. */
export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count from the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

function bootId(): string | null {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return null;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Whether the owner recorded in a lock file is certainly gone: on this host,
 * the machine rebooted since, or its pid is free, or the pid now belongs to a
 * process that started at another time (pid reuse); on another host (a
 * container, a cluster node sharing the volume), the lock, `lockAgeMs` old,
 * has not been refreshed for a minute.
 */
/** How often a lock's owner refreshes the lock file's mtime. */
const HEARTBEAT_MS = 10_000;
/** A lock of another host untouched this long is stale. */
const STALE_MS = 60_000;

export function ownerIsGone(owner: LockOwner, lockAgeMs = 0): boolean {
  // Another host (or container) cannot be asked: its owner refreshes the
  // lock's mtime every HEARTBEAT_MS, so a lock left alone for long is stale.
  if (owner.host !== hostname()) return lockAgeMs > STALE_MS;
  // Our own pid in a lock we do not hold: an earlier incarnation (a restarted container).
  if (owner.pid === process.pid) return true;
  const boot = bootId();
  if (owner.bootId !== null && boot !== null && owner.bootId !== boot) return true;
  if (!pidAlive(owner.pid)) return true;
  const ticks = processStartTicks(owner.pid);
  return owner.startTicks !== null && ticks !== null && ticks !== owner.startTicks;
}

function lockAge(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function readOwner(path: string): LockOwner | null {
  try {
    const o = JSON.parse(readFileSync(path, "utf8")) as LockOwner;
    return typeof o?.pid === "number" && typeof o.host === "string" ? o : null;
  } catch {
    return null;
  }
}

/** One process's hold on a run dir; release() (or the process's exit) lets it go. */
export class RunDirLock {
  private released = false;
  private readonly onExit = () => this.release();
  private readonly heartbeat: NodeJS.Timeout;

  private constructor(
    readonly path: string,
    readonly owner: LockOwner,
  ) {
    process.once("exit", this.onExit);
    this.heartbeat = setInterval(() => {
      const now = new Date();
      try {
        utimesSync(path, now, now);
      } catch {
        // A vanished or read-only run dir shows up where the run writes.
      }
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /**
   * Takes the run dir `dir` (created if missing) for this process. A lock left
   * by a crashed owner is taken over with a line to `log`. Throws RunDirError
   * naming the owner's pid and host when a live process holds it, or the
   * cause when the lock cannot be written.
   */
  static acquire(dir: string, command: string, log: (line: string) => void): RunDirLock {
    const path = join(dir, LOCK_FILE);
    const owner: LockOwner = {
      pid: process.pid,
      host: hostname(),
      startTicks: processStartTicks(process.pid),
      bootId: bootId(),
      command,
      since: new Date().toISOString(),
    };
    try {
      mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new RunDirError(`cannot create run dir ${dir}: ${fsCause(err)}`);
    }
    // Written whole under a private name, then linked into place: the lock
    // appears complete or not at all, and link() fails when it exists.
    const tmp = join(dir, `.${LOCK_FILE}.${process.pid}`);
    try {
      writeFileSync(tmp, `${JSON.stringify(owner)}\n`);
    } catch (err) {
      throw new RunDirError(`cannot write the run dir lock ${tmp}: ${fsCause(err)}`);
    }
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          linkSync(tmp, path);
          return new RunDirLock(path, owner);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
            throw new RunDirError(`cannot take the run dir lock ${path}: ${fsCause(err)}`);
          }
        }
        const held = readOwner(path);
        if (held && !ownerIsGone(held, lockAge(path))) {
          throw new RunDirError(
            `run dir ${dir} is in use by pid ${held.pid} on ${held.host} (agon ${held.command}, since ${held.since}); ` +
              `stop that process, or use another --run-dir` +
              (held.host === owner.host ? "" : ` (remove ${path} if that process is gone)`),
          );
        }
        if (attempt >= 3)
          throw new RunDirError(`cannot take the run dir lock ${path}: it keeps changing`);
        log(
          held
            ? `run dir: taking over the lock of pid ${held.pid} on ${held.host}, which is no longer running`
            : `run dir: replacing the unreadable lock ${path}`,
        );
        rmSync(path, { force: true });
      }
    } finally {
      rmSync(tmp, { force: true });
    }
  }

  /** Gives the run dir up (only if the lock is still ours). Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    clearInterval(this.heartbeat);
    process.off("exit", this.onExit);
    const held = readOwner(this.path);
    if (held?.pid === this.owner.pid && held.host === this.owner.host) {
      try {
        unlinkSync(this.path);
      } catch {
        // Gone already, or the dir vanished: nothing to give up.
      }
    }
  }
}

/**
 * An fs error's cause as a person reads it (shared/errno.ts's fileErrorCause),
 * with a vanished file or dir asked about: "no such file or directory (was it
 * removed?)", since in a run dir that is what it means.
 */
export function fsCause(err: unknown): string {
  const cause = fileErrorCause(err);
  return (err as NodeJS.ErrnoException)?.code === "ENOENT" ? `${cause} (was it removed?)` : cause;
}

/**
 * A write into the run dir failed for a reason no retry fixes (full disk,
 * read-only or vanished dir, permissions); the message names the path and
 * the cause. The run stops; its last good checkpoint is left as it was.
 */
export class RunDirWriteError extends Error {
  override name = "RunDirWriteError";
}

/** Runs `write` (a write of `path`), turning an fs error into RunDirWriteError naming `path`. */
export function guardWrite<T>(path: string, write: () => T): T {
  try {
    return write();
  } catch (err) {
    throw asWriteError(path, err);
  }
}

/** `err` from writing `path` as a RunDirWriteError (other errors are returned unchanged). */
export function asWriteError(path: string, err: unknown): unknown {
  if (err instanceof RunDirWriteError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === "string" && /^E[A-Z]+$/.test(code)
    ? new RunDirWriteError(`cannot write ${path}: ${fsCause(err)}`)
    : err;
}

/** What `--fresh` moves aside: everything a run writes except the lock and older archives. */
const RUN_FILES =
  /^(ckpt-\d+|metrics\.jsonl|eval\.jsonl|events\.out\.tfevents\..*|samples|best-checkpoints|best|summary\.json|config\.json|\.tmp-ckpt-.*|\.trash-ckpt-.*)$/;

/**
 * `--fresh` on a used run dir: moves the previous run's files (checkpoints,
 * best checkpoints, metrics, evaluations, TensorBoard event files, samples, summary, config) into archive/<UTC time>/ so two runs
 * never mix. Returns that folder, or null when there was nothing to move.
 */
export function archivePreviousRun(dir: string, now = new Date()): string | null {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => RUN_FILES.test(n));
  } catch {
    return null;
  }
  if (names.length === 0) return null;
  const stamp = now
    .toISOString()
    .replace(/:/g, "-")
    .replace(/\.\d+Z$/, "Z");
  let target = join(dir, "archive", stamp);
  for (let n = 2; existsSync(target); n++) target = join(dir, "archive", `${stamp}-${n}`);
  mkdirSync(target, { recursive: true });
  for (const name of names) {
    if (name.startsWith(".")) rmSync(join(dir, name), { recursive: true, force: true });
    else renameSync(join(dir, name), join(target, name));
  }
  return target;
}

/** A position in the run: phase `phase` of step `step` is the next to apply. */
export interface RunPosition {
  step: number;
  phase: number;
}

/**
 * After a resume from a checkpoint at `at`: cuts metrics.jsonl back to the
 * phases applied before `at` (and drops a line torn by a kill), eval.jsonl back
 * to the evaluations of steps up to `at`, and removes sample grids of later
 * steps, and the same from the TensorBoard event files
 * (coordinator/tensorboard.ts), so the lost tail is not repeated. Returns how
 * many metrics and evaluation lines and grids were removed. Throws
 * RunDirWriteError naming `dir` when the files cannot be rewritten.
 */
export function trimAfterCheckpoint(
  dir: string,
  at: RunPosition,
): { metricsLines: number; grids: number } {
  return guardWrite(dir, () => trimFiles(dir, at));
}

function trimFiles(dir: string, at: RunPosition): { metricsLines: number; grids: number } {
  let metricsLines = 0;
  const metricsPath = join(dir, "metrics.jsonl");
  if (existsSync(metricsPath)) {
    const lines = readFileSync(metricsPath, "utf8").split("\n");
    const kept: string[] = [];
    for (const line of lines) {
      if (line.trim() === "") continue;
      let m: { step?: unknown; phase?: unknown };
      try {
        m = JSON.parse(line);
      } catch {
        metricsLines += 1; // torn by a kill
        continue;
      }
      const step = Number(m.step);
      const phase = Number(m.phase);
      if (step < at.step || (step === at.step && phase < at.phase)) kept.push(line);
      else metricsLines += 1;
    }
    if (metricsLines > 0) {
      const tmp = `${metricsPath}.tmp-${process.pid}`;
      writeFileSync(tmp, kept.map((l) => `${l}\n`).join(""));
      renameSync(tmp, metricsPath);
    }
  }
  // An evaluation of step s (eval.jsonl, eval.every) is made at position (s, 0), as a grid.
  metricsLines += trimJsonLines(join(dir, "eval.jsonl"), (m) => Number(m.step) <= at.step);
  let grids = 0;
  const samples = join(dir, "samples");
  for (const name of existsSync(samples) ? readdirSync(samples) : []) {
    const m = /^step-(\d+)\.png$/.exec(name);
    // A grid of step s is drawn once step s is complete, i.e. at position (s, 0).
    if (m && Number(m[1]) > at.step) {
      rmSync(join(samples, name), { force: true });
      grids += 1;
    }
  }
  if (grids > 0) {
    // latest.png shows the newest grid that is left.
    const newest = readdirSync(samples)
      .filter((n) => /^step-\d+\.png$/.test(n))
      .sort((a, b) => Number(a.slice(5, -4)) - Number(b.slice(5, -4)))
      .at(-1);
    const latest = join(samples, "latest.png");
    if (newest) copyFileSync(join(samples, newest), latest);
    else rmSync(latest, { force: true });
  }
  cutEventFiles(dir, at);
  return { metricsLines, grids };
}

/** Keeps the lines of a JSON-lines file that `keep` accepts (torn lines go); returns how many went. */
function trimJsonLines(path: string, keep: (m: Record<string, unknown>) => boolean): number {
  if (!existsSync(path)) return 0;
  const kept: string[] = [];
  let removed = 0;
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line);
    } catch {
      removed += 1;
      continue;
    }
    if (keep(m)) kept.push(line);
    else removed += 1;
  }
  if (removed > 0) {
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, kept.map((l) => `${l}\n`).join(""));
    renameSync(tmp, path);
  }
  return removed;
}

/**
 * Checks that no live process holds run dir `dir` (for a launcher such as
 * `agon local`, whose coordinator takes the lock itself). Throws RunDirError.
 */
export function assertRunDirFree(dir: string): void {
  const path = join(dir, LOCK_FILE);
  const held = readOwner(path);
  if (held && !ownerIsGone(held, lockAge(path))) {
    throw new RunDirError(
      `run dir ${dir} is in use by pid ${held.pid} on ${held.host} (agon ${held.command}, since ${held.since}); ` +
        "stop that process, or use another --run-dir",
    );
  }
}

/**
 * Opens a run dir for a trainer (`agon train`, the coordinator): takes its
 * lock, and with `fresh` moves the previous run's files into archive/.
 * Throws RunDirError.
 */
export function openRunDir(
  dir: string,
  opts: { command: string; fresh: boolean; log: (line: string) => void },
): RunDirLock {
  const lock = RunDirLock.acquire(dir, opts.command, opts.log);
  if (opts.fresh) {
    let archived: string | null;
    try {
      archived = archivePreviousRun(dir);
    } catch (err) {
      lock.release();
      throw new RunDirError(`cannot move the previous run in ${dir} aside: ${fsCause(err)}`);
    }
    if (archived) opts.log(`run dir: --fresh: the previous run's files are now in ${archived}`);
  }
  return lock;
}
