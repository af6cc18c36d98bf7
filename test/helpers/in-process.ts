// A coordinator in the test's own process, for tests that read its log and its final hashes
// directly (its own file: importing the coordinator loads TensorFlow.js, which the tests that
// only start child processes through ./cluster.js should not pay for).
import { CoordinatorServer } from "../../coordinator/server.js";
import type { RunConfig } from "../../shared/config.js";

/** A coordinator in this process (CoordinatorServer): its log lines and final hashes are at hand. */
export interface InProcessCoordinator {
  server: CoordinatorServer;
  /** Its gRPC address (host:port). */
  address: string;
  /** Every line it logged so far. */
  lines: string[];
  /** The `done` event's weight hashes, once the run has ended (null before). */
  hashes(): unknown;
}

/**
 * Starts a coordinator for `cfg` in this process on a free loopback port, on wasm, fresh, with
 * workers' leases of `leaseMs` (ms), publishing on `natsUrl`. Await `server.done` for the end.
 */
export async function inProcessCoordinator(
  cfg: RunConfig,
  natsUrl: string,
  leaseMs: number,
): Promise<InProcessCoordinator> {
  const lines: string[] = [];
  let hashes: unknown = null;
  const server = new CoordinatorServer(cfg, {
    listen: "127.0.0.1:0",
    nats: [natsUrl],
    backend: "wasm",
    fresh: true,
    leaseMs,
    log: (line) => lines.push(line),
    emit: (event) => {
      if (event.event === "done") hashes = event.hashes;
    },
  });
  const address = await server.start();
  return { server, address, lines, hashes: () => hashes };
}
