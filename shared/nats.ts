// NATS plumbing shared by the coordinator, the workers, `agon local` and the
// tests: one way to connect, the run's subject names, and a local nats-server
// started on a free loopback port when nobody gave us one.
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, statSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type NatsAuthFiles, natsAuthOptions } from "./security.js";

export type { NatsConnection } from "@nats-io/transport-node";

/** NATS could not be reached or started; the message is one line meant for the user. */
export class NatsError extends Error {
  override name = "NatsError";
}

/** The run's subjects: everything about run `runId` lives under `agon.<runId>.`. */
export function subjects(runId: string) {
  return {
    /** Chunked parameter broadcasts of one network (see shared/params-bus.ts). */
    params: (net: "G" | "D") => `agon.${runId}.params.${net}`,
    /** One JSON message per optimizer phase, published by the coordinator. */
    metrics: `agon.${runId}.metrics`,
    /** Membership and lifecycle events. */
    events: `agon.${runId}.events`,
    /** Sample grids. */
    samples: `agon.${runId}.samples`,
    /** A hot standby whose state no longer matches the log asks the leader for a snapshot entry here (coordinator/ha). */
    resync: `agon.${runId}.ha.resync`,
  };
}

/**
 * Connects to NATS. Once connected the client reconnects forever (every
 * 250 ms), so a restarted server is picked up again; the first connect does not
 * wait, it fails at once with one line that names the URL.
 */
export async function connectNats(
  servers: string | string[],
  name: string,
  log?: (line: string) => void,
  auth?: NatsAuthFiles,
): Promise<NatsConnection> {
  const where = Array.isArray(servers) ? servers.join(", ") : servers;
  const security = natsAuthOptions(auth);
  let nc: NatsConnection;
  try {
    nc = await connect({
      ...security,
      servers,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      waitOnFirstConnect: false,
      timeout: 5000,
    });
  } catch (err) {
    throw new NatsError(`cannot connect to NATS at ${where}: ${reason(err)}`);
  }
  if (log) {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") log(`nats: disconnected from ${s.server}; reconnecting`);
        else if (s.type === "reconnect") log(`nats: reconnected to ${s.server}`);
        else if (s.type === "error") log(`nats: ${reason(s.error)}`);
      }
    })().catch(() => {});
  }
  return nc;
}

function reason(err: unknown): string {
  const e = err as Error & { code?: string; cause?: { code?: string } };
  const code = e.cause?.code ?? e.code;
  const msg = (e.message ?? String(err)).split("\n")[0];
  return code && !msg.includes(code) ? `${msg} (${code})` : msg;
}

// ---------------------------------------------------------------------------
// A local nats-server.

/** A nats-server child process on a loopback port. */
export interface NatsServerHandle {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** Pid of the current server process. */
  readonly pid: number;
  /** Stops the server (SIGTERM, SIGKILL after 2 s) and removes its store dir. */
  stop(): Promise<void>;
  /** Stops the process and starts a new one on the same port and store dir. */
  restart(): Promise<void>;
}

export interface SpawnNatsOptions {
  /** The alternative offered when no binary is found, e.g. "pass --nats nats://host:port". */
  missingHint?: string;
  /** Enable JetStream (`-js`, store in a temp dir). Default true. */
  jetstream?: boolean;
  /** More nats-server arguments, e.g. `["-c", "auth.conf"]` (the port flags still win). */
  extraArgs?: string[];
  /** How long to wait for the server to accept connections. Default 10 s. */
  readyTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /**
   * Have the kernel SIGKILL the server when this process dies, even by SIGKILL
   * (Linux `PR_SET_PDEATHSIG`, set by util-linux `setpriv --pdeathsig` before it
   * execs the server; same pid). Call only from the main thread: the signal
   * follows the thread that spawned. Without setpriv (not Linux, a minimal
   * image) the server is started as before. Default false.
   */
  dieWithParent?: boolean;
}

/** util-linux `setpriv`, when this is Linux and it is installed. */
function findSetpriv(env: NodeJS.ProcessEnv): string | null {
  if (process.platform !== "linux") return null;
  const dirs = (env.PATH ?? "").split(delimiter).filter(Boolean);
  for (const dir of [...dirs, "/usr/bin", "/bin"]) {
    const candidate = join(dir, "setpriv");
    if (isExecutableFile(candidate)) return candidate;
  }
  return null;
}

const DEFAULT_HINT = "set NATS_URL=nats://host:port";

/**
 * Finds a nats-server binary: $PATH, then /usr/sbin (where Debian installs
 * it, often not on a user's PATH). `AGON_NATS_SERVER=<path>` names the binary
 * and disables the search: a path that is not an executable comes back with
 * `why` (the tests use `/nonexistent` to check the "no NATS server" error on a
 * machine that has one); `AGON_NATS_SERVER=none` answers as a machine without
 * any would (the tests use it to check runs without NATS).
 */
export function findNatsServer(
  env: NodeJS.ProcessEnv = process.env,
): { path: string } | { path: null; why?: string } {
  const forced = env.AGON_NATS_SERVER;
  if (forced === "none") return { path: null };
  if (forced) {
    return isExecutableFile(forced)
      ? { path: forced }
      : { path: null, why: `AGON_NATS_SERVER=${forced} is not an executable file` };
  }
  const dirs = (env.PATH ?? "").split(delimiter).filter(Boolean);
  for (const dir of [...dirs, "/usr/sbin", "/usr/local/sbin"]) {
    const candidate = join(dir, "nats-server");
    if (isExecutableFile(candidate)) return { path: candidate };
  }
  return { path: null };
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("could not get a free port"))));
    });
  });
}

/** Resolves true once something accepts TCP connections on host:port. */
function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

/** Server processes still running, killed if this process exits without stopping them. */
const running = new Set<{ proc: ChildProcess; storeDir: string }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const s of running) {
      try {
        s.proc.kill("SIGKILL");
      } catch {}
      rmSync(s.storeDir, { recursive: true, force: true });
    }
  });
}

/**
 * Starts nats-server on a free port of 127.0.0.1 (`-a 127.0.0.1 -p <port> -js
 * -sd <tempdir>`) and resolves once it accepts connections. Throws NatsError
 * with one line when there is no binary or the server does not come up.
 */
export async function spawnNatsServer(opts: SpawnNatsOptions = {}): Promise<NatsServerHandle> {
  const found = findNatsServer(opts.env);
  if (found.path === null) {
    // A binary named on purpose comes first: the fix is the variable, not an install.
    throw new NatsError(
      found.why
        ? `no NATS server: ${found.why}; point it at a nats-server binary, or set it to none to run without NATS`
        : `no NATS server: install it with \`apt-get install nats-server\` (Debian) or ${opts.missingHint ?? DEFAULT_HINT}`,
    );
  }
  const bin = found.path;
  const jetstream = opts.jetstream ?? true;
  const readyMs = opts.readyTimeoutMs ?? 10_000;
  const storeDir = mkdtempSync(join(tmpdir(), "agon-nats-"));
  installExitHook();

  interface Proc {
    proc: ChildProcess;
    storeDir: string;
    exited: Promise<void>;
    tail: string[];
  }

  const launch = (port: number): Proc => {
    const args = [...(opts.extraArgs ?? []), "-a", "127.0.0.1", "-p", String(port)];
    if (jetstream) args.push("-js", "-sd", storeDir);
    // Its own process group: a Ctrl-C on the terminal goes to `agon local`,
    // which stops the server last, after the coordinator has checkpointed.
    const setpriv = opts.dieWithParent ? findSetpriv(opts.env ?? process.env) : null;
    const argv = setpriv ? [setpriv, "--pdeathsig", "KILL", bin, ...args] : [bin, ...args];
    const proc = spawn(argv[0], argv.slice(1), {
      stdio: ["ignore", "ignore", "pipe"],
      detached: true,
      env: opts.env ?? process.env,
    });
    const tail: string[] = [];
    proc.stderr?.setEncoding("utf8");
    proc.stderr?.on("data", (chunk: string) => {
      for (const line of chunk.split("\n")) if (line.trim()) tail.push(line.trim());
      tail.splice(0, Math.max(0, tail.length - 20));
    });
    const entry = {
      proc,
      storeDir,
      tail,
      exited: new Promise<void>((resolve) => {
        proc.once("exit", () => resolve());
        proc.once("error", (err) => {
          tail.push(`cannot run ${bin}: ${reason(err)}`);
          resolve();
        });
      }),
    };
    running.add(entry);
    void entry.exited.then(() => running.delete(entry));
    return entry;
  };

  const alive = (p: Proc) => p.proc.exitCode === null && p.proc.signalCode === null;

  /** Starts on `port`; resolves when it accepts connections, rejects when it exits first. */
  const startOn = async (port: number): Promise<Proc> => {
    const p = launch(port);
    let exited = false;
    void p.exited.then(() => {
      exited = true;
    });
    const deadline = Date.now() + readyMs;
    while (Date.now() < deadline) {
      if (exited) break;
      if (await canConnect("127.0.0.1", port)) {
        if (!exited && alive(p)) return p;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await terminate(p);
    const last = p.tail.at(-1) ?? "no output";
    throw new NatsError(
      exited
        ? `nats-server (${bin}) exited before accepting connections on 127.0.0.1:${port}: ${last}`
        : `nats-server (${bin}) did not accept connections on 127.0.0.1:${port} within ${readyMs / 1000} s: ${last}`,
    );
  };

  const terminate = async (p: Proc): Promise<void> => {
    if (alive(p)) {
      p.proc.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (alive(p)) p.proc.kill("SIGKILL");
      }, 2000);
      await p.exited;
      clearTimeout(timer);
    }
    await p.exited;
  };

  // The free port can be taken between our probe and the server's bind: retry on a new one.
  let port = 0;
  let current: Proc | null = null;
  let lastErr: unknown;
  for (let attempt = 0; attempt < 3 && !current; attempt++) {
    port = await freePort();
    try {
      current = await startOn(port);
    } catch (err) {
      lastErr = err;
      if (!/address already in use/i.test(String((err as Error).message))) break;
    }
  }
  if (!current) {
    rmSync(storeDir, { recursive: true, force: true });
    throw lastErr;
  }

  let stopped = false;
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    get pid() {
      return current?.proc.pid ?? -1;
    },
    async stop() {
      stopped = true;
      if (current) await terminate(current);
      rmSync(storeDir, { recursive: true, force: true });
    },
    async restart() {
      if (stopped) throw new Error("nats-server: restart after stop");
      if (current) await terminate(current);
      current = await startOn(port);
    },
  };
}
