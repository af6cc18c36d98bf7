// Patient workers: a coordinator that is gone for longer than a minute (a node
// reboot, a pod rescheduled elsewhere) finds its workers still there when it
// comes back, and a worker stopped while it waits exits cleanly.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { referenceHashes, ringK6, tempDir } from "./helpers/cli.js";
import {
  type Proc,
  startCoordinator,
  startWorker,
  waitFor,
  waitForStep,
  within,
} from "./helpers/cluster.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

/** Longer than the 60 s workers used to give up after: the outage of the issue. */
const OUTAGE_MS = 90_000;

describe("patient workers", () => {
  it("a coordinator down for 90 s is re-joined by the same worker processes and the run ends with the calm hashes; a worker stopped while waiting exits 0", async () => {
    const config = ringK6(120, ["checkpoint.every=20", "checkpoint.keep=2"]);
    const expectedP = referenceHashes(config);
    const runDir = tempDir();
    const metrics = join(runDir, "metrics.jsonl");
    let coord = await startCoordinator([...config, "--run-dir", runDir], nats.url);
    const address = coord.address;
    const workers: Proc[] = ["w0", "w1"].map((n) => startWorker(address, nats.url, n));
    await waitForStep(metrics, 45, 90_000);
    coord.child.kill("SIGKILL");
    await coord.exited;
    const downAt = Date.now();

    // While it is down: one worker with a short --coordinator-timeout gives up
    // with one clear line; two others are stopped (SIGTERM, SIGINT) while waiting.
    const impatient = startWorker(address, nats.url, "impatient", ["--coordinator-timeout", "15s"]);
    const stopped = (["SIGTERM", "SIGINT"] as const).map((signal) => ({
      signal,
      proc: startWorker(address, nats.url, `stopped-${signal}`),
    }));
    for (const { signal, proc } of stopped) {
      await waitFor(
        () => /waiting for the coordinator at .* so far/.test(proc.stderr()),
        45_000,
        `${signal} worker's waiting line`,
      );
      proc.child.kill(signal);
      expect(
        await within(proc.exited, 30_000, `the ${signal} worker exiting`, { proc }),
        proc.stderr(),
      ).toBe(0);
      expect(proc.stderr()).not.toMatch(/Error|\n\s+at /);
    }
    expect(
      await within(impatient.exited, 60_000, "the impatient worker giving up", { impatient }),
    ).toBe(1);
    expect(impatient.stderr()).toMatch(
      /agon: error: no coordinator at .* for \d+ s \(--coordinator-timeout\)/,
    );

    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - downAt))));
    for (const w of workers) {
      expect(w.child.exitCode, w.stderr()).toBeNull();
      expect(w.stderr()).toMatch(
        /waiting for the coordinator at .* so far, giving up after 10 min/,
      );
    }
    coord = await startCoordinator([...config, "--run-dir", runDir], nats.url, {
      listen: address,
      fresh: false,
    });
    // Bounded, so a hang says where it is (the processes' last lines) before the test's own limit.
    const procs = { coordinator: coord, w0: workers[0], w1: workers[1] };
    const done = await within(coord.done, 90_000, "the restarted coordinator finishing", procs);
    expect(done.hashes).toEqual(await expectedP);
    for (const w of workers) {
      expect(await within(w.exited, 30_000, "the workers exiting", procs), w.stderr()).toBe(0);
      expect(w.stderr()).toMatch(/re-joined/);
    }
    // The same two processes did the rest of the run: nobody else joined.
    expect(coord.stderr()).toMatch(/w0#\d+ joined/);
    expect(coord.stderr()).toMatch(/w1#\d+ joined/);
    expect(coord.stderr()).not.toMatch(/(impatient|stopped-SIG\w+)#\d+ joined/);
  }, 300_000);
});
