// The coordinator and the workers are given every URL of a 3-node NATS cluster;
// the server the coordinator is connected to is killed mid-run.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connectNats, findNatsServer, freePort, subjects } from "../shared/nats.js";
import { referenceHashes, ringK6, tempDir } from "./helpers/cli.js";
import { killAll, lastStep, startCoordinator, startWorker, waitFor } from "./helpers/cluster.js";

const STEPS = 150;
const config = ringK6(STEPS, ["checkpoint.every=25", "checkpoint.keep=3"]);

interface ClusterNode {
  url: string;
  port: number;
  /** The monitoring endpoint (http://127.0.0.1:<port>), for /connz and /routez. */
  monitor: string;
  child: ChildProcess;
}

const running: ClusterNode[] = [];
const killNodes = () => {
  for (const node of running) if (node.child.exitCode === null) node.child.kill("SIGKILL");
};
// Also when the test runner dies before afterAll.
process.on("exit", killNodes);

/** Starts `n` nats-servers on loopback, routed to each other as one cluster; resolves once every node sees n-1 routes. */
async function startNatsCluster(n: number): Promise<ClusterNode[]> {
  const bin = findNatsServer().path;
  if (!bin) throw new Error("no nats-server binary (apt-get install nats-server)");
  const ports: Array<{ client: number; cluster: number; http: number }> = [];
  for (let i = 0; i < n; i++) {
    ports.push({ client: await freePort(), cluster: await freePort(), http: await freePort() });
  }
  const nodes = ports.map((p, i): ClusterNode => {
    const routes = ports
      .filter((_, j) => j !== i)
      .map((q) => `nats://127.0.0.1:${q.cluster}`)
      .join(",");
    const args = ["-a", "127.0.0.1", "-p", String(p.client), "-m", String(p.http)];
    args.push("--server_name", `agon-test-${i}`, "--cluster_name", `agon-test-${process.pid}`);
    args.push("--cluster", `nats://127.0.0.1:${p.cluster}`, "--routes", routes);
    const child = spawn(bin, args, { stdio: "ignore" });
    return {
      url: `nats://127.0.0.1:${p.client}`,
      port: p.client,
      monitor: `http://127.0.0.1:${p.http}`,
      child,
    };
  });
  running.push(...nodes);
  await waitForAsync(
    async () => (await Promise.all(nodes.map(routeCount))).every((r) => r === n - 1),
    20_000,
    `a ${n}-node NATS cluster with full routes`,
  );
  return nodes;
}

async function monitor<T>(node: ClusterNode, path: string): Promise<T | undefined> {
  try {
    const res = await fetch(`${node.monitor}${path}`);
    return res.ok ? ((await res.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

async function routeCount(node: ClusterNode): Promise<number> {
  return (await monitor<{ num_routes: number }>(node, "/routez"))?.num_routes ?? -1;
}

interface Client {
  name: string;
  /** Messages the client published through this server. */
  inMsgs: number;
}

/** The client connections a node holds right now. */
async function clientsOf(node: ClusterNode): Promise<Client[]> {
  const connz = await monitor<{ connections?: Array<{ name?: string; in_msgs?: number }> }>(
    node,
    "/connz?limit=1000",
  );
  return (connz?.connections ?? []).map((c) => ({ name: c.name ?? "", inMsgs: c.in_msgs ?? 0 }));
}

async function waitForAsync(cond: () => Promise<boolean>, timeoutMs: number, what: string) {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("several NATS servers", () => {
  afterAll(() => {
    killAll();
    killNodes();
  });

  it("coordinator and workers given all URLs of a 3-node NATS cluster carry on when the server the coordinator uses is killed, and the weights equal a clean run", async () => {
    const expected = await referenceHashes(config);
    const nodes = await startNatsCluster(3);
    const urls = nodes.map((n) => n.url).join(",");
    const runDir = tempDir();
    const metrics = join(runDir, "metrics.jsonl");
    const coord = await startCoordinator([...config, "--run-dir", runDir], urls);
    const workers = ["w0", "w1"].map((name) => startWorker(coord.address, urls, name));
    const clients = ["agon-coordinator-agon", "agon-worker-w0", "agon-worker-w1"];

    // Wait until all three clients are connected, then see who is where.
    let where = new Map<string, { node: number; inMsgs: number }>();
    await waitForAsync(
      async () => {
        const lists = await Promise.all(nodes.map(clientsOf));
        where = new Map(
          lists.flatMap((list, node) => list.map((c) => [c.name, { node, inMsgs: c.inMsgs }])),
        );
        return clients.every((c) => where.has(c)) && lastStep(metrics) >= 20;
      },
      60_000,
      "coordinator and workers connected to NATS, step 20",
    );
    const victim = where.get("agon-coordinator-agon")!.node;
    const onVictim = clients.filter((c) => where.get(c)?.node === victim);
    // The server to be killed is in use: the coordinator publishes parameters and metrics through it.
    expect(where.get("agon-coordinator-agon")!.inMsgs).toBeGreaterThan(0);

    // Watch the metrics subject through another server of the cluster.
    const watchVia = nodes.find((_, i) => i !== victim)!;
    const nc = await connectNats(watchVia.url, "metrics-watcher");
    const seen: number[] = [];
    nc.subscribe(subjects("agon").metrics, {
      callback: (_err, msg) => {
        seen.push((msg.json() as { step: number }).step);
      },
    });
    await waitFor(() => seen.length > 0, 20_000, "metrics through another server");

    nodes[victim].child.kill("SIGKILL");
    await new Promise((r) => nodes[victim].child.once("exit", r));
    const killedAt = lastStep(metrics);
    const seenBeforeKill = seen.length;

    // The coordinator's metrics keep arriving: it published them through a surviving server.
    await waitFor(
      () => seen.slice(seenBeforeKill).some((s) => s >= killedAt + 20),
      60_000,
      "metrics 20 steps after the kill",
    );
    // Every client of the killed server is back, on one of the others.
    const survivors = nodes.filter((_, i) => i !== victim);
    await waitForAsync(
      async () => {
        const names = (await Promise.all(survivors.map(clientsOf))).flat().map((c) => c.name);
        return clients.every((c) => names.includes(c));
      },
      20_000,
      "every client connected to a surviving server",
    );

    const done = await coord.done;
    expect(done.step).toBe(STEPS);
    expect(done.hashes).toEqual(expected);
    for (const w of workers) expect(await w.exited).toBe(0);
    await nc.drain();

    const victimPort = String(nodes[victim].port);
    const logOf = (client: string) =>
      client === "agon-coordinator-agon"
        ? coord.stderr()
        : workers[client === "agon-worker-w0" ? 0 : 1].stderr();
    for (const client of onVictim) {
      expect(logOf(client)).toMatch(new RegExp(`nats: disconnected from .*:${victimPort}`));
      expect(logOf(client)).toMatch(/nats: reconnected to /);
    }
    console.log(
      `nats-cluster: killed server ${victim} (port ${victimPort}; clients ${onVictim.join(", ")}) at step ${killedAt}; watcher saw ${seen.length} metrics messages, ${seen.length - seenBeforeKill} after the kill, last step ${seen.at(-1)}; hashes G ${done.hashes.G.slice(0, 12)} D ${done.hashes.D.slice(0, 12)}`,
    );
  });
});
