// Starts a real coordinator and real workers as child processes, for tests
// that need to reach into a cluster (pause a worker, add one mid-run).
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { AGON } from "./cli.js";
import { completeJsonLines } from "./jsonl.js";

export interface Proc {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

const started = new Set<ChildProcess>();

/** Kills every process this helper started that is still running (call in afterAll). */
export function killAll(): void {
  for (const child of started) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    }
  }
  started.clear();
}

/** `wrap` is an argv prefix that runs the command elsewhere, e.g. `ip netns exec <ns>`. */
function start(args: string[], wrap: string[] = []): Proc {
  const argv = [...wrap, process.execPath, AGON, ...args];
  const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  started.add(child);
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on("close", (code) => resolve(code)),
  );
  return { child, stderr: () => stderr, exited };
}

export interface CoordinatorProc extends Proc {
  address: string;
  /** Resolves with the final hashes from the coordinator's "done" line; rejects if it exits without one. */
  done: Promise<{ step: number; hashes: { G: string; D: string } }>;
  /** The dashboard/metrics base URL, when started with `http`. */
  http: Promise<string>;
}

export async function startCoordinator(
  configArgs: string[],
  natsUrl: string,
  opts: { listen?: string; fresh?: boolean; http?: string; wrap?: string[]; extra?: string[] } = {},
): Promise<CoordinatorProc> {
  const proc = start(
    [
      "coordinator",
      ...configArgs,
      "--listen",
      opts.listen ?? "127.0.0.1:0",
      "--nats",
      natsUrl,
      ...(opts.fresh === false ? [] : ["--fresh"]),
      ...(opts.http ? ["--http", opts.http] : []),
      ...(opts.extra ?? []),
    ],
    opts.wrap,
  );
  const lines = createInterface({ input: proc.child.stdout! });
  let resolveDone!: (v: { step: number; hashes: { G: string; D: string } }) => void;
  let rejectDone!: (err: Error) => void;
  const done = new Promise<{ step: number; hashes: { G: string; D: string } }>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  // A coordinator that exits without its "done" line fails `done` at once (awaiting it would
  // otherwise hang to the test's limit); tests that kill it on purpose never await it.
  done.catch(() => {});
  void proc.exited.then((code) =>
    rejectDone(new Error(`coordinator exited (${code}) without finishing: ${proc.stderr()}`)),
  );
  let resolveHttp!: (url: string) => void;
  const http = new Promise<string>((r) => {
    resolveHttp = r;
  });
  const address = await new Promise<string>((resolve, reject) => {
    lines.on("line", (line) => {
      const event = JSON.parse(line) as { event: string; address?: string };
      // A standby (--standby) is up once it follows; it listens, refusing calls, until it takes over.
      if (event.event === "listening" || event.event === "standby") resolve(event.address!);
      if (event.event === "http") resolveHttp(event.address!);
      if (event.event === "done") resolveDone(event as never);
    });
    void proc.exited.then((code) =>
      reject(new Error(`coordinator exited (${code}): ${proc.stderr()}`)),
    );
  });
  return { ...proc, address, done, http };
}

export function startWorker(
  address: string,
  natsUrl: string,
  name: string,
  extra: string[] = [],
  wrap: string[] = [],
): Proc {
  return start(
    [
      "worker",
      "--coordinator",
      address,
      "--nats",
      natsUrl,
      "--name",
      name,
      "--backend",
      "wasm",
      ...extra,
    ],
    wrap,
  );
}

/** The step of the last phase recorded in a run's metrics.jsonl (-1 before the first). */
export function lastStep(metricsFile: string): number {
  return completeJsonLines<{ step: number }>(metricsFile).at(-1)?.step ?? -1;
}

export async function waitFor(
  condition: () => boolean,
  timeoutMs = 60_000,
  what = "condition",
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * `promise`, or an error after `timeoutMs` naming `what` and quoting the last lines each
 * process in `procs` wrote to stderr, so a wait that hangs says where it hung.
 */
export async function within<T>(
  promise: Promise<T>,
  timeoutMs: number,
  what: string,
  procs: Record<string, { stderr: () => string }> = {},
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const tails = Object.entries(procs).map(
        ([name, p]) => `--- ${name}:\n${p.stderr().trim().split("\n").slice(-12).join("\n")}`,
      );
      reject(new Error([`${what}: not within ${timeoutMs} ms`, ...tails].join("\n")));
    }, timeoutMs);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when the run's metrics show step ≥ n. */
export async function waitForStep(
  metricsFile: string,
  n: number,
  timeoutMs = 60_000,
): Promise<void> {
  await waitFor(() => lastStep(metricsFile) >= n, timeoutMs, `step ${n}`);
}
