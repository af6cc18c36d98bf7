// Several "hosts" on one machine: a network namespace per host, each with its
// own address on a private bridge that this helper creates and removes. The
// bridge has no address in the root namespace, so nothing outside the lab can
// reach it and nothing in it can reach out. Needs root (or CAP_NET_ADMIN) and
// iproute2; `netnsSkipReason()` says why not when they are missing.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { findNatsServer } from "../../shared/nats.js";

/** One host of the lab: its namespace, its address, and the bridge port its link hangs off. */
export interface Host {
  name: string;
  ns: string;
  ip: string;
  /** The root-namespace end of the host's veth pair (a bridge port): setting it down cuts the link. */
  port: string;
}

export interface Lab {
  bridge: string;
  subnet: string;
  host(name: string): Host;
  /** The argv prefix that runs a command inside the host's namespace. */
  exec(name: string): string[];
  /** Starts `argv` inside the host's namespace; the lab kills it in `destroy()`. */
  spawn(name: string, argv: string[]): ChildProcess;
  /** Cuts the host's link like a pulled cable: its peer sees no carrier, packets are dropped. */
  cut(name: string): void;
  restore(name: string): void;
  /** Kills what `spawn` started, then deletes the veth pairs, the namespaces and the bridge. */
  destroy(): void;
}

function ip(args: string[]): { ok: boolean; err: string } {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.error) return { ok: false, err: r.error.message };
  return { ok: r.status === 0, err: (r.stderr ?? "").trim() };
}

function mustIp(args: string[]): void {
  const r = ip(args);
  if (!r.ok) throw new Error(`ip ${args.join(" ")}: ${r.err}`);
}

/**
 * Undefined when this process may create network namespaces, veth pairs and a
 * bridge; otherwise one line saying why not (for `describe.skipIf`).
 */
export function netnsSkipReason(): string | undefined {
  const tag = `agp${process.pid}`;
  const ns = `agon-probe-${process.pid}`;
  const steps: string[][] = [
    ["netns", "add", ns],
    ["link", "add", `${tag}v`, "type", "veth", "peer", "name", "eth0", "netns", ns],
    ["link", "add", `${tag}b`, "type", "bridge"],
  ];
  let why: string | undefined;
  for (const step of steps) {
    const r = ip(step);
    if (!r.ok) {
      why = `network namespaces are not allowed here (\`ip ${step.join(" ")}\` failed: ${r.err || "no output"}); needs root and iproute2`;
      break;
    }
  }
  ip(["link", "del", `${tag}b`]);
  ip(["link", "del", `${tag}v`]);
  ip(["netns", "del", ns]);
  return why;
}

const labs = new Set<Lab>();
let exitHook = false;

/**
 * Creates a namespace per name, all on one new bridge in 10.213.<n>.0/24 (n
 * from the pid, so concurrent runs differ): host i gets 10.213.<n>.<i+1>, `lo`
 * is up in every namespace. Names are unique per process.
 */
export function createLab(names: string[]): Lab {
  const pid = process.pid;
  const octet = 20 + (pid % 200);
  const subnet = `10.213.${octet}.0/24`;
  const bridge = `agb${pid}`;
  const hosts = new Map<string, Host>();
  names.forEach((name, i) => {
    hosts.set(name, {
      name,
      ns: `agon-${pid}-${name}`,
      ip: `10.213.${octet}.${i + 1}`,
      port: `agv${pid}h${i}`,
    });
  });
  const children = new Set<ChildProcess>();

  const host = (name: string): Host => {
    const h = hosts.get(name);
    if (!h) throw new Error(`netns lab: no host "${name}"`);
    return h;
  };

  let destroyed = false;
  const lab: Lab = {
    bridge,
    subnet,
    host,
    exec: (name) => ["ip", "netns", "exec", host(name).ns],
    spawn(name, argv) {
      const child = spawn("ip", ["netns", "exec", host(name).ns, ...argv], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.add(child);
      return child;
    },
    cut: (name) => mustIp(["link", "set", host(name).port, "down"]),
    restore: (name) => mustIp(["link", "set", host(name).port, "up"]),
    destroy() {
      if (destroyed) return;
      destroyed = true;
      labs.delete(lab);
      for (const child of children) {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      }
      // Delete the veth pairs explicitly: a namespace outlives its name while
      // the kernel still holds sockets of it (e.g. closing TCP connections).
      for (const h of hosts.values()) {
        ip(["link", "del", h.port]);
        ip(["netns", "del", h.ns]);
      }
      ip(["link", "del", bridge]);
    },
  };

  labs.add(lab);
  if (!exitHook) {
    exitHook = true;
    process.on("exit", () => {
      for (const l of labs) l.destroy();
    });
  }
  try {
    // Leftovers of an earlier run that had this pid and died before cleaning up.
    for (const h of hosts.values()) {
      ip(["link", "del", h.port]);
      ip(["netns", "del", h.ns]);
    }
    ip(["link", "del", bridge]);
    mustIp(["link", "add", bridge, "type", "bridge"]);
    mustIp(["link", "set", bridge, "up"]);
    for (const h of hosts.values()) {
      mustIp(["netns", "add", h.ns]);
      mustIp(["link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.ns]);
      mustIp(["link", "set", h.port, "master", bridge]);
      mustIp(["link", "set", h.port, "up"]);
      mustIp(["-n", h.ns, "link", "set", "lo", "up"]);
      mustIp(["-n", h.ns, "addr", "add", `${h.ip}/24`, "dev", "eth0"]);
      mustIp(["-n", h.ns, "link", "set", "eth0", "up"]);
    }
  } catch (err) {
    lab.destroy();
    throw err;
  }
  return lab;
}

/** Starts nats-server on `<host's address>:4222` inside the host's namespace; resolves with its URL once it is ready. */
export async function startNatsIn(lab: Lab, name: string, timeoutMs = 15_000): Promise<string> {
  const found = findNatsServer();
  if (found.path === null) throw new Error("no nats-server binary (apt-get install nats-server)");
  const { ip } = lab.host(name);
  const child = lab.spawn(name, [found.path, "-a", ip, "-p", "4222"]);
  let log = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`nats-server in ${name} not ready in ${timeoutMs} ms: ${log}`)),
      timeoutMs,
    );
    child.stderr!.on("data", (b: Buffer) => {
      log += b.toString();
      if (log.includes("Server is ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server in ${name} exited (${code}): ${log}`));
    });
  });
  return `nats://${ip}:4222`;
}
