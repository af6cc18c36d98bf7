// The NATS server every test that needs one uses:
//   1. NATS_URL, when set, names a server someone else runs (stop() does nothing);
//   2. otherwise nats-server from PATH or /usr/sbin (Debian's package) is started
//      on a free loopback port with JetStream in a temp dir, and stop() kills it
//      and removes the dir;
//   3. otherwise the test fails with one line that says how to get one.
// A testcontainers fallback (a `nats` container when a Docker engine answers)
// is not implemented: the machines these tests run on have no Docker engine.
import { spawnNatsServer } from "../../shared/nats.js";

export interface TestNats {
  url: string;
  stop(): Promise<void>;
  /** Restarts the server on the same port (only for a server we started). */
  restart?(): Promise<void>;
}

export async function startNats(): Promise<TestNats> {
  const external = process.env.NATS_URL;
  if (external) return { url: external, stop: async () => {} };
  const server = await spawnNatsServer({ missingHint: "set NATS_URL=nats://host:port" });
  return { url: server.url, stop: () => server.stop(), restart: () => server.restart() };
}
