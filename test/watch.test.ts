// `agon watch` against a real run (a real coordinator and worker on a real
// nats-server), plus the pure rendering.
import { Command } from "commander";
import { describe, expect, it } from "vitest";
import {
  initialWatchState,
  reduceWatch,
  renderWatch,
  runWatch,
  sparkline,
  startWatch,
  statusLine,
  WatchError,
  type WatchState,
} from "../coordinator/watch.js";
import { registerWatchCommand } from "../shared/cli/commands/watch.js";
import { tempDir, tinyRing } from "./helpers/cli.js";
import { startCoordinator, startWorker } from "./helpers/cluster.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();
const STEPS = 200;

/** Collects what the watcher writes. */
function sink(tty = false) {
  const chunks: string[] = [];
  return {
    chunks,
    text: () => chunks.join(""),
    out: {
      isTTY: tty,
      columns: tty ? 100 : undefined,
      write: (s: string) => {
        chunks.push(s);
        return true;
      },
    },
  };
}

interface Line {
  subject: string;
  data: Record<string, unknown>;
}

/**
 * One real run watched three ways at once: runWatch --json, the registered
 * `watch` command (as the CLI will run it), and the live view on a fake terminal.
 */
async function watchedRun() {
  const run = `watch-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const json = sink();
  const cmd = sink();
  const view = sink(true);
  const program = new Command("agon").exitOverride();
  registerWatchCommand(program, cmd.out);

  const jsonWatch = await startWatch({ run, nats: nats.url, json: true, log: () => {} }, json.out);
  const viewWatch = await startWatch(
    { run, nats: nats.url, tty: true, redrawMs: 0, log: () => {} },
    view.out,
  );
  const cmdDone = program.parseAsync(["watch", "--json", "--run", run, "--nats", nats.url], {
    from: "user",
  });
  // The command subscribes asynchronously; give it a moment before the run starts.
  await new Promise((r) => setTimeout(r, 300));

  const config = [...tinyRing({ steps: STEPS }), "--run-dir", tempDir(), "--set", `run.id=${run}`];
  const coordinator = await startCoordinator(config, nats.url);
  const worker = startWorker(coordinator.address, nats.url, "w1");
  const [jsonResult, viewResult] = await Promise.all([jsonWatch.done, viewWatch.done, cmdDone]);
  await coordinator.done;
  await worker.exited;
  const lines = (text: string) =>
    text
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Line);
  return { run, json: lines(json.text()), cmd: lines(cmd.text()), jsonResult, viewResult, view };
}

let result: Awaited<ReturnType<typeof watchedRun>> | undefined;
const getRun = async () => {
  result ??= await watchedRun();
  return result;
};

describe("agon watch on a real run", () => {
  it("metrics on NATS: schema and complete increasing steps", async () => {
    const { run, json } = await getRun();
    const metrics = json.filter((l) => l.subject === `agon.${run}.metrics`).map((l) => l.data);
    expect(metrics.length).toBe(2 * STEPS); // kD = kG = 1: one D and one G phase per step

    for (const m of metrics) {
      expect(m.schema).toBe(1);
      expect(m.runId).toBe(run);
      expect(Number.isInteger(m.step)).toBe(true);
      expect([0, 1]).toContain(m.phase);
      expect(m.kind).toBe(m.phase === 0 ? "D" : "G");
      expect(typeof m.gLoss).toBe("number");
      expect(typeof m.dFake).toBe("number");
      if (m.kind === "D") {
        expect(typeof m.dLoss).toBe("number");
        expect(typeof m.dReal).toBe("number");
      } else {
        expect(m.dLoss).toBeNull();
        expect(m.dReal).toBeNull();
      }
      expect(typeof m.gradNorm).toBe("number");
      expect(m.versions).toEqual({ G: expect.any(Number), D: expect.any(Number) });
      expect(m.steps).toBe(STEPS);
      expect(m.stepDone).toBe(m.kind === "G");
      expect(m.workers).toBe(1);
      expect(Number.isNaN(Date.parse(m.time as string))).toBe(false);
      for (const k of ["phaseSeconds", "computeSeconds", "bytesIn", "bytesOut"]) {
        expect(typeof m[k], k).toBe("number");
      }
    }

    // Every phase of every step, in order; every step 0..N-1 done, in order.
    expect(metrics.map((m) => `${m.step}.${m.phase}`)).toEqual(
      Array.from({ length: STEPS }, (_, s) => [`${s}.0`, `${s}.1`]).flat(),
    );
    const done = metrics.filter((m) => m.stepDone).map((m) => m.step);
    expect(done).toEqual(Array.from({ length: STEPS }, (_, s) => s));
    // Versions count the updates of each network.
    const last = metrics.at(-1)!;
    expect(last.versions).toEqual({ G: STEPS, D: STEPS });
  });

  it("--json prints every message as one {subject, data} line and exits when the run is done", async () => {
    const { run, json, cmd, jsonResult } = await getRun();
    expect(jsonResult.reason).toBe("done");
    expect(jsonResult.state.done).toBe(true);
    for (const l of json) {
      expect(Object.keys(l).sort()).toEqual(["data", "subject"]);
      expect([`agon.${run}.metrics`, `agon.${run}.events`]).toContain(l.subject);
    }
    const events = json.filter((l) => l.subject === `agon.${run}.events`).map((l) => l.data);
    const joined = events.find((e) => e.type === "workerJoined");
    expect(joined).toMatchObject({ schema: 1, runId: run, type: "workerJoined" });
    expect(typeof joined!.message).toBe("string");
    // The registered command sees the same metrics.
    const metricSteps = (ls: Line[]) =>
      ls.filter((l) => l.subject.endsWith(".metrics")).map((l) => `${l.data.step}.${l.data.phase}`);
    expect(metricSteps(cmd)).toEqual(metricSteps(json));
  });

  it("the live view ends on the final state", async () => {
    const { view, viewResult } = await getRun();
    expect(viewResult.reason).toBe("done");
    const frames = view.text();
    expect(frames).toContain("\x1b[J"); // redrawn in place
    const lastFrame = frames.slice(frames.lastIndexOf("\x1b[J") + 3);
    expect(lastFrame).toContain(`step ${STEPS}/${STEPS}`);
    expect(lastFrame).toContain("100%");
    expect(lastFrame).toContain("run complete");
    expect(lastFrame).toContain("workers 1");
    expect(lastFrame).toMatch(/^D [▁▂▃▄▅▆▇█]{60}$/m);
    expect(lastFrame).toMatch(/^G [▁▂▃▄▅▆▇█]{60}$/m);
  });
});

describe("agon watch, stopping and errors", () => {
  it("stops with reason 'stopped' when aborted (Ctrl-C)", async () => {
    const abort = new AbortController();
    const s = sink();
    const handle = await startWatch(
      { run: "nobody", nats: nats.url, signal: abort.signal, log: () => {} },
      s.out,
    );
    abort.abort();
    const r = await handle.done;
    expect(r.reason).toBe("stopped");
    expect(s.text()).toContain("watching run nobody");
    // nothing arrived: it says so instead of a status line of dashes
    expect(s.text()).toContain("stopped: nothing arrived from run nobody\n");
    expect(s.text()).not.toMatch(/^step 0\/\?/m);
  });

  it("says what it waits for while no run of that name is active, until stopped", async () => {
    const abort = new AbortController();
    const lines: string[] = [];
    const handle = await startWatch(
      { run: "nobody-yet", nats: nats.url, signal: abort.signal, log: (l) => lines.push(l) },
      sink().out,
    );
    const t0 = Date.now();
    while (lines.length === 0 && Date.now() - t0 < 20_000)
      await new Promise((r) => setTimeout(r, 100));
    abort.abort();
    expect((await handle.done).reason).toBe("stopped");
    expect(lines[0]).toMatch(
      /^watch: no run named nobody-yet is active on this NATS \(nats:\/\/.*\); waiting \(\d+ s\)$/,
    );
  });

  it("rejects a bad run id or NATS URL with one line", async () => {
    const s = sink();
    await expect(runWatch({ run: "a.b", nats: nats.url }, s.out)).rejects.toThrow(WatchError);
    await expect(runWatch({ nats: "http://x" }, s.out)).rejects.toThrow(/not a NATS URL/);
    await expect(runWatch({ nats: "nats://127.0.0.1:1" }, s.out)).rejects.toThrow(
      /cannot connect to NATS/,
    );
  });
});

describe("rendering (pure)", () => {
  const metrics = (step: number, phase: number, extra: Record<string, unknown> = {}) => ({
    schema: 1,
    runId: "r",
    step,
    phase,
    kind: phase === 0 ? "D" : "G",
    dLoss: phase === 0 ? 1 + step / 10 : null,
    gLoss: 0.5 + step / 100,
    dReal: phase === 0 ? 0.6 : null,
    dFake: 0.4,
    steps: 10,
    stepDone: phase === 1,
    workers: 3,
    ...extra,
  });

  function fed(n: number, steps = 10): WatchState {
    const s = initialWatchState("r", "nats://h:4222");
    for (let step = 0; step < n; step++) {
      reduceWatch(s, "metrics", metrics(step, 0, { steps }), step * 1000);
      reduceWatch(s, "metrics", metrics(step, 1, { steps }), step * 1000 + 500);
    }
    return s;
  }

  it("sparkline scales to min..max and leaves gaps for missing values", () => {
    expect(sparkline([0, 1, 2, 3, 4, 5, 6, 7])).toBe("▁▂▃▄▅▆▇█");
    expect(sparkline([1, null, Number.NaN, 1])).toBe("▄  ▄");
    expect(sparkline([])).toBe("");
  });

  it("shows progress, ETA, losses, sparklines, workers and the last 5 events", () => {
    const s = fed(4);
    for (let i = 0; i < 7; i++) {
      reduceWatch(s, "events", { time: `2026-01-01T00:00:0${i}Z`, type: "t", message: `e${i}` }, 0);
    }
    const text = renderWatch(s);
    expect(text).toContain("run r");
    expect(text).toMatch(/step 4\/10 █{12}░{18} 40% {2}1\.00 steps\/s {2}ETA 6s/);
    expect(text).toContain("D loss 1.300  G loss 0.530  D(x) 0.600  D(G(z)) 0.400  workers 3");
    expect(text).toContain("D ▁▃▆█");
    expect(text).toContain("G ▁▃▆█");
    expect(text).not.toContain("e1");
    expect(text).toContain("00:00:02 t: e2");
    expect(text).toContain("00:00:06 t: e6");
    expect(statusLine(s)).toBe(
      "step 4/10 40% | D 1.300 G 0.530 | D(x) 0.600 D(G(z)) 0.400 | workers 3 | 1.00 steps/s | ETA 6s",
    );
  });

  it("marks the run complete at the last step, keeps ~60 losses, and cuts long lines", () => {
    const s = fed(100, 101);
    reduceWatch(s, "metrics", metrics(100, 0, { steps: 101 }), 0);
    expect(s.done).toBe(false);
    reduceWatch(s, "metrics", metrics(100, 1, { steps: 101 }), 0);
    expect(s.done).toBe(true);
    expect(s.dHistory.length).toBe(60);
    expect(s.gHistory.length).toBe(60);
    const text = renderWatch(s);
    expect(text).toContain("run complete");
    expect(text).toContain("ETA done");
    const cut = renderWatch(s, { columns: 40 });
    for (const line of cut.split("\n")) expect(Array.from(line).length).toBeLessThan(40);
    expect(cut).toContain("…");
  });

  it("is not done any more when an extended run goes on", () => {
    const s = fed(10);
    expect(s.done).toBe(true);
    reduceWatch(s, "metrics", metrics(10, 0, { steps: 20 }), 0);
    expect(s.done).toBe(false);
  });

  it("waits for metrics before the first message", () => {
    expect(renderWatch(initialWatchState("r", "n"))).toContain("waiting for metrics");
  });
});
