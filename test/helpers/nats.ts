// The NATS server every test that needs one uses:
//   1. NATS_URL, when set, names a server someone else runs (stop() does nothing);
//   2. otherwise nats-server from PATH or /usr/sbin (Debian's package) is started
//      on a free loopback port with JetStream in a temp dir, and stop() kills it
//      and removes the dir;
//   3. otherwise the test fails with one line that says how to get one.
// A testcontainers fallback (a `nats` container when a Docker engine answers)
// is not implemented: the machines these tests run on have no Docker engine.
import { afterAll, beforeAll } from "vitest";
import { spawnNatsServer } from "../../shared/nats.js";
import { killAll } from "./cluster.js";

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

/**
 * One nats-server for a whole test file, started before its tests; afterwards
 * every process the cluster helper started is killed and the server stopped.
 */
export function natsForSuite(): { readonly url: string; restart(): Promise<void> } {
  let server: Awaited<ReturnType<typeof startNats>> | undefined;
  beforeAll(async () => {
    server = await startNats();
  });
  afterAll(async () => {
    killAll();
    await server?.stop();
  });
  return {
    get url() {
      if (!server) throw new Error("natsForSuite: used outside a test");
      return server.url;
    },
    async restart() {
      if (!server?.restart)
        throw new Error("this NATS server cannot be restarted (NATS_URL is set)");
      await server.restart();
    },
  };
}
