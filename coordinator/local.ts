// `agon local --workers N`: a whole cluster on this machine in one command.
// It starts nats-server (unless --nats names one; with none installed the run
// goes without NATS), the coordinator and N workers as child processes of the
// real `agon` command, shows the run's live progress from the metrics subject
// (without NATS, from the coordinator's dashboard stream), and stops everything
// in order: on completion, on failure, and on Ctrl-C (the coordinator
// checkpoints first, so the same command resumes).
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { get as httpGet } from "node:http";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { LAUNCHER_ENV, PARENT_PIPE_ENV } from "../shared/cli/orphan.js";
import type { RunConfig } from "../shared/config.js";
import type { MetricsMessage } from "../shared/metrics.js";
import {
  connectNats,
  findNatsServer,
  freePort,
  type NatsConnection,
  NatsError,
  type NatsServerHandle,
  spawnNatsServer,
  subjects,
} from "../shared/nats.js";
import { Progress, type ProgressInfo } from "../shared/progress.js";
import { type NatsAuthFiles, randomSecret } from "../shared/security.js";
import { assertRunDirFree } from "./rundir.js";

/** The `agon` command the children run. */
export const AGON_CLI = resolve(import.meta.dirname, "../shared/cli/agon.js");

/** `agon local` failed; the message is the one line shown to the user. */
export class LocalError extends Error {
  override name = "LocalError";
}

export interface LocalOptions {
  workers: number;
  /**
   * NATS server URL(s), comma-separated; when absent a nats-server is started
   * on a free loopback port, and when none is installed the run goes without
   * NATS (see NO_NATS_LINE).
   */
  nats?: string;
  /** Run without NATS even when a nats-server is installed (`--no-nats`), quietly. */
  noNats?: boolean;
  /** Compute backend of the workers (and of the coordinator's sample grids). */
  backend: string;
  fresh?: boolean;
  force?: boolean;
  /** Coordinator gRPC address; default 127.0.0.1 on a free port. */
  listen?: string;
  /** Dashboard and /metrics address; default 127.0.0.1 on a free port. */
  http?: string;
  /** NATS credentials and TLS for our own connection. */
  natsAuth?: NatsAuthFiles;
  /** The same, as flags for the coordinator and the workers. */
  natsArgs?: string[];
  /** The config flags as given to `agon local` (--config, --set, shorthands), passed to the coordinator. */
  configArgs: string[];
  /** Where progress and log lines go (default stderr). */
  out?: NodeJS.WriteStream;
  /** The `agon` entry point the children run (default shared/cli/agon.js). */
  agonCli?: string;
  /** After the coordinator is done, how long workers get to exit on their own. */
  workerExitMs?: number;
  /** After SIGTERM, how long the coordinator gets to write its checkpoint. */
  coordinatorStopMs?: number;
  /**
   * Start a hot standby too (`agon coordinator --standby`, run dir
   * `<run.dir>.standby`): the coordinator runs with --ha, the workers know
   * both addresses, and the run goes on when the leader dies.
   */
  standby?: boolean;
  /** Lease for --standby (e.g. "1500ms"); the coordinators' default when absent. */
  lease?: string;
}

export type LocalResult =
  | { status: "done"; summary: Record<string, unknown> }
  | { status: "stopped"; signal: NodeJS.Signals };

type Outcome =
  | { kind: "done"; done: Record<string, unknown> }
  | { kind: "stopped"; signal: NodeJS.Signals }
  | { kind: "failed"; message: string };

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: string;
}

const ESC = String.fromCharCode(27);
const ANSI = new RegExp(`${ESC}\\[[0-9;?]*[A-Za-z]`, "g");
/**
 * What `agon local` says, once, when it finds no nats-server: the run goes on
 * without NATS, and this is what that changes.
 */
export const NO_NATS_LINE =
  "local: no nats-server found: running without NATS; workers fetch parameters over gRPC and progress and the dashboard come from the coordinator, but nothing is broadcast and `agon watch` has nothing to follow (install nats-server, e.g. `apt-get install nats-server`, or pass --nats nats://host:port to have them)";

/** Status lines the children draw themselves; `agon local` draws its own from the metrics. */
const PROGRESS_NOISE = /^step \d+\/\d+ \[/;

/** A coordinator's own dashboard line: `agon local` prints the address itself, once. */
const DASHBOARD_LINE = /^coordinator: dashboard and \/metrics at /;

/** A child `agon` process with its output turned into prefixed lines. */
class Child {
  readonly exited: Promise<Exit>;
  private readonly tail: string[] = [];
  private exitInfo: Exit | null = null;

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
    onStdout: (line: string) => void,
    onStderr: (line: string) => void,
  ) {
    this.exited = new Promise<Exit>((done) => {
      let pending = 3; // exit + both streams closed, so no line arrives after `exited`
      const finish = () => {
        if (--pending === 0) done(this.exitInfo!);
      };
      proc.once("exit", (code, signal) => {
        this.exitInfo ??= { code, signal };
        finish();
      });
      proc.once("error", (err) => {
        this.exitInfo ??= { code: null, signal: null, error: err.message };
        pending = 1;
        finish();
      });
      lines(proc.stdout!, finish, onStdout);
      lines(proc.stderr!, finish, (line) => {
        this.tail.push(line);
        this.tail.splice(0, Math.max(0, this.tail.length - 30));
        onStderr(line);
      });
    });
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null && !this.exitInfo?.error;
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.alive) this.proc.kill(signal);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves true when it had to be killed. */
  async terminate(graceMs: number): Promise<boolean> {
    if (!this.alive) {
      await this.exited;
      return false;
    }
    this.kill("SIGTERM");
    return this.killAfter(graceMs);
  }

  /** Waits up to `ms` for the process to exit, then SIGKILLs it; true when killed. */
  async killAfter(ms: number): Promise<boolean> {
    let killed = false;
    const timer = setTimeout(() => {
      if (this.alive) {
        killed = true;
        this.kill("SIGKILL");
      }
    }, ms);
    await this.exited;
    clearTimeout(timer);
    return killed;
  }

  /** The line that best explains a failure: its last `agon: error:` line, else its last line. */
  reason(): string | undefined {
    const err = [...this.tail].reverse().find((l) => l.startsWith("agon: error: "));
    return (err ?? this.tail.at(-1))?.replace(/^agon: error: /, "");
  }
}

/** Longer lines (Node prints the source line of a crash, minified bundles included) are cut. */
const MAX_LINE = 400;

function lines(stream: Readable, onClose: () => void, onLine: (line: string) => void): void {
  const rl = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  rl.on("line", (raw) => {
    const line = raw.replace(ANSI, "").trimEnd();
    // The caret under such a source line is just as wide and says nothing once it is cut.
    if (!line || (line.length > MAX_LINE && /^\s*\^$/.test(line))) return;
    onLine(
      line.length > MAX_LINE
        ? `${line.slice(0, MAX_LINE)}… (${line.length - MAX_LINE} more characters)`
        : line,
    );
  });
  rl.once("close", onClose);
}

function describeExit(e: Exit): string {
  if (e.error) return `failed to start (${e.error})`;
  if (e.signal) return `was killed by ${e.signal}`;
  return `exited with code ${e.code}`;
}

function waitMs(ms: number): { promise: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((r) => {
    timer = setTimeout(r, ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/** Workers must connect to an address they can reach: a wildcard bind means loopback. */
function dialable(address: string): string {
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m) return address;
  const host = m[1].replace(/^\[|\]$/g, "");
  return ["0.0.0.0", "::", ""].includes(host) ? `127.0.0.1:${m[2]}` : address;
}

/**
 * Runs the cluster until the run completes (resolves "done" with the run's
 * summary), or a SIGINT/SIGTERM/SIGHUP stops it (resolves "stopped" after the
 * coordinator has checkpointed and every child has exited). Anything else
 * throws LocalError with one line, after stopping every child.
 */
export async function runLocal(cfg: RunConfig, opts: LocalOptions): Promise<LocalResult> {
  const out = opts.out ?? process.stderr;
  const cli = opts.agonCli ?? AGON_CLI;
  const tty = Boolean(out.isTTY);
  const started = performance.now();
  // Refused before anything starts when a live process owns the run dir (the coordinator takes the lock).
  try {
    assertRunDirFree(cfg.run.dir);
  } catch (err) {
    throw new LocalError((err as Error).message);
  }

  // --- Output: own lines, child lines and the live status line share stderr.
  let progress: Progress | null = null;
  let lastInfo: ProgressInfo | null = null;
  const say = (line: string) => {
    if (tty && lastInfo) out.write("\r\x1b[2K");
    out.write(`${line}\n`);
    if (tty && progress && lastInfo) progress.update(lastInfo, true);
  };
  /**
   * A child's stderr line, prefixed with its name. The coordinator's and the workers' fatal
   * `agon: error:` line is not repeated here while the run goes on: local's own line about
   * that child's exit carries it (Child.reason), so a failure is said once.
   */
  const childLine = (name: string) => (line: string) => {
    if (PROGRESS_NOISE.test(line) || DASHBOARD_LINE.test(line)) return;
    if (name !== "standby" && !stopSignal && line.startsWith("agon: error: ")) return;
    say(`[${name}] ${line}`);
  };

  // --- Children, and the guarantee that none outlives us.
  const children: Child[] = [];
  const killAll = () => {
    for (const c of children) c.kill("SIGKILL");
  };
  process.on("exit", killAll);
  // The children share a join token: $AGON_JOIN_TOKEN when set, else a fresh random one,
  // so nothing else on this machine can join the run.
  const childEnv = {
    ...process.env,
    AGON_JOIN_TOKEN: process.env.AGON_JOIN_TOKEN || randomSecret(),
    [PARENT_PIPE_ENV]: "1",
    // Named in the run dir's lock, so a second run on it is told which command to stop.
    [LAUNCHER_ENV]: `agon local pid ${process.pid}`,
  };
  const startChild = (name: string, args: string[], onStdout?: (line: string) => void): Child => {
    // Each child gets its own process group: Ctrl-C reaches only `agon local`,
    // which then stops them in order (coordinator first, so it checkpoints).
    // Its stdin is a pipe we never write to: it ends when we die, even by SIGKILL,
    // and the child then stops itself (shared/cli/orphan.ts).
    const proc = spawn(process.execPath, [cli, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
      env: childEnv,
    });
    const child = new Child(name, proc, onStdout ?? childLine(name), childLine(name));
    children.push(child);
    return child;
  };

  // --- Signals: the first stops in order, a second one kills.
  let stopSignal: NodeJS.Signals | null = null;
  let onStop: (signal: NodeJS.Signals) => void = () => {};
  const stopRequested = new Promise<NodeJS.Signals>((r) => {
    onStop = r;
  });
  /** Set once the coordinator listens (it has its run state, so a stop checkpoints it). */
  let coordinatorListening = false;
  /** Whether the stop came before the coordinator listened: no checkpoint to resume from. */
  let stoppedBeforeStart = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopSignal) {
      say(`local: ${signal} again: killing every process (the last complete checkpoint stays)`);
      killAll();
      return;
    }
    stopSignal = signal;
    stoppedBeforeStart = !coordinatorListening;
    say(
      coordinatorListening
        ? `local: ${signal}: stopping; the coordinator writes a checkpoint first`
        : `local: ${signal}: stopping (before training started: nothing to checkpoint)`,
    );
    onStop(signal);
  };
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) process.on(s, onSignal);

  let natsServer: NatsServerHandle | null = null;
  let nc: NatsConnection | null = null;
  /** Without NATS: the coordinator's /events stream that progress is read from. */
  let events: { close(): void } | null = null;
  let coordinator: Child | null = null;
  let standby: Child | null = null;
  const workers: Child[] = [];
  let doneEvent: Record<string, unknown> | null = null;
  /** The coordinator found the run already at its last step: no workers are needed. */
  let finishedAlready = false;
  let workersTimer: ReturnType<typeof waitMs> | null = null;

  // --- Live progress from the metrics subject.
  let lastD: MetricsMessage | null = null;
  let last: MetricsMessage | null = null;
  const infoFrom = (step: number, m: MetricsMessage | null): ProgressInfo => ({
    step,
    total: cfg.steps,
    dLoss: lastD?.dLoss ?? null,
    gLoss: last?.gLoss ?? null,
    dReal: lastD?.dReal ?? null,
    dFake: last?.dFake ?? null,
    workers: m?.workers,
  });
  const onMetrics = (m: MetricsMessage) => {
    if (m?.schema !== 1 || typeof m.step !== "number") return;
    if (m.kind === "D") lastD = m;
    last = m;
    // `step` is the step the phase belongs to (as in metrics.jsonl); a phase
    // that completes a step brings the count of completed steps to step + 1.
    const completed = Math.min(cfg.steps, m.step + (m.stepDone ? 1 : 0));
    const info = infoFrom(completed, m);
    if (!progress) {
      progress = new Progress(out, undefined, completed);
      lastInfo = info;
      progress.update(info, true);
    } else {
      lastInfo = info;
      if (m.stepDone) progress.update(info);
    }
  };

  const run = async (): Promise<Outcome> => {
    const stopped = (): Outcome => ({ kind: "stopped", signal: stopSignal! });

    // NATS: --nats, else a nats-server of our own, else (none installed) no NATS at all.
    // An AGON_NATS_SERVER that names no executable is an error, not a reason to go without.
    let natsUrl = opts.noNats ? undefined : opts.nats;
    const found = natsUrl || opts.noNats ? null : findNatsServer();
    if (opts.noNats || (found && found.path === null && !found.why)) {
      if (opts.standby) {
        return {
          kind: "failed",
          message: opts.noNats
            ? "--standby needs NATS with JetStream (the replicated log and the leader's lease live there): drop --no-nats"
            : "--standby needs NATS with JetStream (the replicated log and the leader's lease live there), and no nats-server was found: install nats-server (e.g. `apt-get install nats-server`) or pass --nats nats://host:port of one started with -js",
        };
      }
      natsUrl = undefined;
      if (!opts.noNats) say(NO_NATS_LINE);
    } else if (!natsUrl) {
      natsServer = await spawnNatsServer({
        missingHint: "pass --nats nats://host:port",
        dieWithParent: true,
      });
      natsUrl = natsServer.url;
      say(`local: started nats-server on ${natsUrl}`);
    }
    if (stopSignal) return stopped();
    if (natsUrl) {
      const natsServers = natsUrl
        .split(",")
        .map((u) => u.trim())
        .filter(Boolean);
      nc = await connectNats(natsServers, "agon-local", (l) => say(`local: ${l}`), opts.natsAuth);
      nc.subscribe(subjects(cfg.run.id).metrics, {
        callback: (err, msg) => {
          if (err) return;
          try {
            onMetrics(msg.json<MetricsMessage>());
          } catch {
            // Not JSON: not ours to show.
          }
        },
      });
      await nc.flush(); // subscribed before the coordinator publishes anything
    }
    // The children's NATS flags: the URL and credentials, or a quiet --no-nats (NO_NATS_LINE said it).
    const natsFlags = natsUrl ? ["--nats", natsUrl, ...(opts.natsArgs ?? [])] : ["--no-nats"];

    // The coordinator.
    const listen = opts.listen ?? `127.0.0.1:${await freePort()}`;
    if (stopSignal) return stopped();
    let onListening: (address: string) => void = () => {};
    const listening = new Promise<string>((r) => {
      onListening = r;
    });
    const coordArgs = [
      "coordinator",
      ...opts.configArgs,
      "--listen",
      listen,
      ...natsFlags,
      "--backend",
      opts.backend,
      "--http",
      opts.http ?? "127.0.0.1:0",
      ...(opts.fresh ? ["--fresh"] : []),
      ...(opts.force ? ["--force"] : []),
      ...(opts.standby ? ["--ha", ...(opts.lease ? ["--lease", opts.lease] : [])] : []),
    ];
    /** A coordinator's stdout: its JSON events (listening, http, done), else a line to show. */
    const coordinatorLines =
      (name: string, leader: boolean) =>
      (line: string): void => {
        let ev: Record<string, unknown> | null = null;
        try {
          const parsed: unknown = JSON.parse(line);
          if (parsed && typeof parsed === "object" && "event" in parsed) {
            ev = parsed as Record<string, unknown>;
          }
        } catch {}
        if (!ev) {
          childLine(name)(line);
          return;
        }
        if (ev.event === "listening" && typeof ev.address === "string") {
          coordinatorListening = true;
          if (leader && ev.finished === true) finishedAlready = true;
          if (leader) onListening(ev.address);
          else say(`local: the standby took over on ${ev.address}`);
        } else if (leader && ev.event === "http" && typeof ev.address === "string") {
          say(`dashboard: ${ev.address}/  (Prometheus: ${ev.address}/metrics)`);
          if (!nc) events ??= followMetrics(`${dialableUrl(ev.address)}/events`, onMetrics);
        } else if (ev.event === "done") doneEvent = ev;
      };
    const coord = startChild("coordinator", coordArgs, coordinatorLines("coordinator", true));
    coordinator = coord;
    let standbyAddress: string | null = null;
    if (opts.standby) {
      standbyAddress = `127.0.0.1:${await freePort()}`;
      const standbyArgs = coordArgs.filter((a) => a !== "--ha" && a !== "--fresh");
      standbyArgs[standbyArgs.indexOf("--listen") + 1] = standbyAddress;
      standbyArgs[standbyArgs.indexOf("--http") + 1] = "127.0.0.1:0";
      standby = startChild(
        "standby",
        [...standbyArgs, "--standby", "--fresh", "--run-dir", `${cfg.run.dir}.standby`],
        coordinatorLines("standby", false),
      );
    }
    const coordFailed = (e: Exit): Outcome => {
      const why = coord.reason();
      return {
        kind: "failed",
        message: `coordinator ${describeExit(e)} before the run finished${why ? `: ${why}` : ""}`,
      };
    };

    const ready = await Promise.race([
      listening.then((address) => ({ address })),
      coord.exited.then((exit) => ({ exit })),
      stopRequested.then(() => null),
    ]);
    if (ready === null) return stopped();
    if ("exit" in ready) return coordFailed(ready.exit);
    const address = standbyAddress
      ? `${dialable(ready.address)},${standbyAddress}`
      : dialable(ready.address);

    // The workers.
    let onWorkersGone: (message: string) => void = () => {};
    const workersGone = new Promise<string>((r) => {
      onWorkersGone = r;
    });
    const failures: string[] = [];
    const workerCount = finishedAlready ? 0 : opts.workers;
    for (let i = 1; i <= workerCount; i++) {
      const name = `worker-${i}`;
      const w = startChild(name, [
        "worker",
        "--coordinator",
        address,
        ...natsFlags,
        "--name",
        name,
        "--backend",
        opts.backend,
      ]);
      workers.push(w);
      void w.exited.then((e) => {
        if (stopSignal || doneEvent || (!coord.alive && !standby?.alive)) return;
        const failed = e.code !== 0;
        if (failed) {
          const why = w.reason();
          failures.push(`${name} ${describeExit(e)}${why ? `: ${why}` : ""}`);
          say(`local: ${failures.at(-1)}`);
        }
        if (workers.some((x) => x.alive)) return;
        if (failures.length > 0) {
          onWorkersGone(
            `all ${opts.workers} workers exited before the run finished (${failures[0]})`,
          );
        } else {
          // Workers exit 0 when the run is finished; the done line should follow shortly.
          workersTimer = waitMs(30_000);
          void workersTimer.promise.then(() =>
            onWorkersGone("the workers finished but the coordinator did not within 30 s"),
          );
        }
      });
    }
    if (!finishedAlready) {
      say(
        `local: coordinator (pid ${coord.pid}) on ${address}, ${opts.workers} worker(s) (pids ${workers
          .map((w) => w.pid)
          .join(", ")}), ${natsUrl ? `NATS ${natsUrl}` : "no NATS"}`,
      );
    }

    // With a standby the run ends when both coordinators have exited (one took over or both died).
    const coordinatorsExited = standby
      ? Promise.all([coord.exited, standby.exited]).then(([a, b]) => (doneEvent ? b : a))
      : coord.exited;
    const end = await Promise.race([
      coordinatorsExited.then((exit) => ({ exit })),
      workersGone.then((message) => ({ message })),
      stopRequested.then(() => null),
    ]);
    if (end === null) return stopped();
    if ("message" in end) return { kind: "failed", message: end.message };
    if (end.exit.code === 0 && doneEvent) return { kind: "done", done: doneEvent };
    if (stopSignal) return stopped();
    if (end.exit.code === 0) {
      return {
        kind: "failed",
        message: "coordinator stopped before the run finished (exit code 0, no done line)",
      };
    }
    return coordFailed(end.exit);
  };

  /**
   * Stops what is still running, in order: the standby (so it does not take
   * over from a leader that is stopping on purpose), the coordinator
   * (checkpoints, releases its lease), workers, NATS.
   */
  const shutdown = async (outcome: Outcome): Promise<void> => {
    workersTimer?.cancel();
    events?.close();
    if (standby?.alive && (await standby.terminate(opts.coordinatorStopMs ?? 30_000))) {
      say("local: the standby did not stop in time and was killed");
    }
    if (coordinator?.alive) {
      if (await coordinator.terminate(opts.coordinatorStopMs ?? 30_000)) {
        say("local: the coordinator did not stop in time and was killed");
      }
    }
    if (outcome.kind === "done") {
      // Workers exit by themselves when the run is finished.
      const grace = waitMs(opts.workerExitMs ?? 10_000);
      await Promise.race([Promise.all(workers.map((w) => w.exited)), grace.promise]);
      grace.cancel();
    }
    const stubborn = await Promise.all(workers.map((w) => w.terminate(5000)));
    if (stubborn.some(Boolean)) say("local: some workers ignored SIGTERM and were killed");
    if (nc) await (nc as NatsConnection).close().catch(() => {});
    if (natsServer) await (natsServer as NatsServerHandle).stop();
  };

  let outcome: Outcome;
  try {
    try {
      outcome = await run();
    } catch (err) {
      if (!(err instanceof NatsError) && process.env.AGON_DEBUG) say(String((err as Error).stack));
      outcome = { kind: "failed", message: (err as Error).message };
    }
    await shutdown(outcome);
  } finally {
    killAll();
    process.off("exit", killAll);
    for (const s of signals) process.off(s, onSignal);
  }

  const elapsed = ((performance.now() - started) / 1000).toFixed(1);
  switch (outcome.kind) {
    case "done": {
      // The coordinator that finished names its run dir: after a takeover, the standby's.
      const runDir = typeof outcome.done.runDir === "string" ? outcome.done.runDir : cfg.run.dir;
      const tookOver = runDir !== cfg.run.dir;
      const summary = readSummary(runDir) ?? outcome.done;
      const step = Number(summary.step);
      lastInfo = infoFrom(step, last);
      // No progress line when this invocation trained nothing (the run was already done).
      if (progress) (progress as Progress).finish(lastInfo);
      lastInfo = null;
      const hashes = (summary.hashes ?? {}) as { G?: string; D?: string };
      say(
        `local: done: step ${step} ${finishedAlready ? "(the run was already there; no workers started)" : `in ${elapsed} s with ${opts.workers} worker(s)`}; G sha256 ${hashes.G}, D sha256 ${hashes.D}; run dir ${runDir}${tookOver ? ` (the standby's: it took over from the leader, whose run dir ${cfg.run.dir} stops where the leader did)` : ""}`,
      );
      return { status: "done", summary: { ...summary, runDir } };
    }
    case "stopped":
      if (progress && lastInfo) (progress as Progress).finish(lastInfo);
      lastInfo = null;
      say(
        stoppedBeforeStart
          ? "stopped before training started; run the same command to start it"
          : opts.fresh
            ? "stopped; resume with the same command without --fresh"
            : "stopped; resume with the same command",
      );
      return { status: "stopped", signal: outcome.signal };
    case "failed":
      if (tty && lastInfo) out.write("\n");
      throw new LocalError(outcome.message);
  }
}

/** An `http://host:port` the dashboard printed, with a wildcard host made dialable. */
function dialableUrl(url: string): string {
  const m = /^http:\/\/(.*)$/.exec(url);
  return m ? `http://${dialable(m[1])}` : url;
}

/**
 * Follows the coordinator's Server-Sent Events at `url` (coordinator/http.ts
 * /events) and hands each metrics message to `onMetrics`, in order: the
 * replayed history first, then live ones. Reconnects every second while the
 * stream is down (a replayed message already seen is skipped by its time)
 * until close().
 */
export function followMetrics(
  url: string,
  onMetrics: (m: MetricsMessage) => void,
): { close(): void } {
  let closed = false;
  let lastTime = "";
  let retry: NodeJS.Timeout | undefined;
  let current: ReturnType<typeof httpGet> | null = null;
  const frame = (text: string) => {
    let event = "message";
    let data = "";
    for (const line of text.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trimStart();
    }
    if (event !== "metrics") return;
    try {
      const m = JSON.parse(data) as MetricsMessage;
      // Strictly older: two phases can share a millisecond, and showing one twice is harmless.
      if (typeof m.time === "string") {
        if (m.time < lastTime) return;
        lastTime = m.time;
      }
      onMetrics(m);
    } catch {
      // Not JSON: not ours to show.
    }
  };
  const open = () => {
    if (closed) return;
    const req = httpGet(url, { headers: { accept: "text/event-stream" } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return;
      }
      res.setEncoding("utf8");
      let buffered = "";
      res.on("data", (chunk: string) => {
        buffered += chunk;
        for (let end = buffered.indexOf("\n\n"); end >= 0; end = buffered.indexOf("\n\n")) {
          frame(buffered.slice(0, end));
          buffered = buffered.slice(end + 2);
        }
      });
    });
    current = req;
    // Whatever ends this request (refused, dropped, a non-200 answer), try again in a second.
    req.once("close", () => {
      if (current !== req) return;
      current = null;
      if (!closed) retry = setTimeout(open, 1000);
    });
    req.on("error", () => {});
  };
  open();
  return {
    close() {
      closed = true;
      clearTimeout(retry);
      current?.destroy();
    },
  };
}

/** The run's summary.json (the same format `agon train` writes), or null. */
function readSummary(runDir: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8"));
  } catch {
    return null;
  }
}
