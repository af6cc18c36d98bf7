// Bounded resources per peer: a hostile token holder's half-finished uploads
// and silent connections cost the coordinator little memory and are closed;
// training goes on with the calm hashes.
import { readFileSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MAX_UPLOADS_PER_SESSION } from "../coordinator/service.js";
import { referenceHashes, ringK6, tempDir } from "./helpers/cli.js";
import { startCoordinator, startWorker, waitFor, waitForStep } from "./helpers/cluster.js";
import { HungMember } from "./helpers/hung.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

/** Resident memory of a process in MiB (Linux /proc). */
function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return Number(m?.[1] ?? 0) / 1024;
  } catch {
    return 0; // exited
  }
}

describe("bounded resources per peer", () => {
  it.skipIf(process.platform !== "linux")(
    "1,000 header-only uploads and 100 silent connections: coordinator RSS grows < 32 MiB, the connections are closed, hashes = calm",
    async () => {
      // Hidden layers of 256: D has ~67k parameters, a 270 KB gradient (the 1,000
      // header-only uploads would reserve ~260 MiB if memory were taken on the header).
      const config = ringK6(40, ["model.gHidden=[256,256]", "model.dHidden=[256,256]"]);
      const expectedP = referenceHashes(config);
      const runDir = tempDir();
      const metrics = join(runDir, "metrics.jsonl");
      const coord = await startCoordinator([...config, "--run-dir", runDir], nats.url);
      const pid = coord.child.pid!;
      for (const n of ["w0", "w1"]) startWorker(coord.address, nats.url, n);
      await waitForStep(metrics, 5, 300_000);
      // The calm run's highest RSS until the attack is the baseline (training's own garbage
      // comes and goes; one low sample just after a GC would count it as the attack's).
      let calm = rssMiB(pid);
      const calmSampler = setInterval(() => {
        calm = Math.max(calm, rssMiB(pid));
      }, 20);

      const hostile = new HungMember(coord.address);
      await hostile.join("hostile");
      await waitFor(
        () => hostile.last?.phase === 0,
        30_000,
        "a D microtask for the hostile member",
      );
      const task = hostile.last!;
      const dLength = await hostile.paramLength("D", task.dVersion);
      expect(dLength * 4).toBeGreaterThan(250_000);

      let peak = 0;
      clearInterval(calmSampler);
      const baseline = Math.max(calm, rssMiB(pid));
      const sampler = setInterval(() => {
        peak = Math.max(peak, rssMiB(pid));
      }, 20);

      // 100 silent TCP connections: they never speak.
      const [host, port] = [
        coord.address.replace(/:\d+$/, ""),
        Number(/:(\d+)$/.exec(coord.address)![1]),
      ];
      const silent: Socket[] = [];
      const closed = new Set<Socket>();
      for (let i = 0; i < 100; i++) {
        const s = createConnection({ host, port });
        s.on("error", () => {});
        s.resume(); // reads (and so sees the server's FIN), never writes
        s.on("close", () => closed.add(s));
        silent.push(s);
      }

      // Uploads that send their data and then never end: only a few may be open at once,
      // and those are closed when idle past the lease.
      const stalled = await hostile.headerOnlyUploads(
        3 * MAX_UPLOADS_PER_SESSION,
        task.taskId,
        dLength,
        new Uint8Array(dLength * 4),
      );
      const refused = stalled.filter((r) => r === `code 8`).length; // RESOURCE_EXHAUSTED
      expect(refused, stalled.join(", ")).toBeGreaterThanOrEqual(2 * MAX_UPLOADS_PER_SESSION);
      expect(stalled.filter((r) => r === "rejected").length).toBeLessThanOrEqual(
        MAX_UPLOADS_PER_SESSION,
      );
      expect(coord.stderr()).toMatch(/upload idle for \d+ ms/);

      // 1,000 header-only uploads: nothing is reserved for them.
      const headerOnly = await hostile.headerOnlyUploads(1000, task.taskId, dLength);
      expect(headerOnly.filter((r) => r === "accepted")).toEqual([]);

      try {
        await waitFor(() => closed.size === silent.length, 30_000, "the silent connections closed");
      } finally {
        clearInterval(sampler);
      }
      console.log(
        `coordinator RSS ${baseline.toFixed(1)} MiB before, peak ${peak.toFixed(1)} MiB during the attack`,
      );
      expect(peak - baseline).toBeLessThan(32);

      const done = await coord.done;
      hostile.close();
      expect(done.hashes).toEqual(await expectedP);
    },
    600_000,
  );
});
