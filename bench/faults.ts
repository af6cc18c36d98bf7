// `npm run bench -- faults`: how fast training recovers, on real processes.
// Worker loss (SIGKILL, SIGSTOP) → time until the interrupted phase completes;
// coordinator restart → time from the new process's start to its first
// completed step; checkpoint write time and its effect on step time.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { ReplicatedLog } from "../coordinator/ha/log.js";
import { initBackend } from "../shared/backend.js";
import { parseConfig } from "../shared/config.js";
import { weightsHash } from "../shared/hash.js";
import { buildModel, resultSize } from "../shared/models/index.js";
import { connectNats, spawnNatsServer } from "../shared/nats.js";
import { machineInfo } from "./machine.js";
import { median } from "./stats.js";

const AGON = resolve(import.meta.dirname, "../shared/cli/agon.js");

interface Metric {
  step: number;
  phase: number;
  stepDone?: boolean;
  time: string;
  phaseSeconds: number;
  computeSeconds: number;
}

const dcgan = (steps: number, every: number) => [
  "--dataset",
  "mnist",
  "--model",
  "dcgan",
  "--set",
  "samples.every=100000",
  `checkpoint.every=${every}`,
  "--batch",
  "64",
  "--shards",
  "2",
  "--steps",
  String(steps),
  "--backend",
  "wasm",
];

function metrics(runDir: string): Metric[] {
  const file = join(runDir, "metrics.jsonl");
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Metric);
}

async function until(cond: () => boolean, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

function coordinator(
  config: string[],
  runDir: string,
  nats: string,
  listen: string,
  fresh: boolean,
  extra: string[] = [],
) {
  const child = spawn(
    process.execPath,
    [
      AGON,
      "coordinator",
      ...config,
      "--run-dir",
      runDir,
      "--listen",
      listen,
      "--nats",
      nats,
      ...(fresh ? ["--fresh"] : []),
      ...extra,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let address = "";
  let stderr = "";
  /** Each stderr line with when it arrived (Date.now()), for the takeover's breakdown. */
  const lines: Array<{ at: number; line: string }> = [];
  child.stderr!.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  createInterface({ input: child.stderr! }).on("line", (line) => {
    lines.push({ at: Date.now(), line });
  });
  createInterface({ input: child.stdout! }).on("line", (line) => {
    const e = JSON.parse(line) as { event: string; address?: string };
    if (e.event === "listening" || e.event === "standby") address = e.address!;
  });
  return { child, address: () => address, stderr: () => stderr, lines };
}

function worker(address: string, nats: string, name: string): ChildProcess {
  return spawn(
    process.execPath,
    [AGON, "worker", "--coordinator", address, "--nats", nats, "--name", name, "--backend", "wasm"],
    { stdio: "ignore" },
  );
}

const stop = (p: ChildProcess) => {
  p.kill("SIGCONT");
  p.kill("SIGKILL");
};

export async function runFaultsBench(argv: string[]): Promise<number> {
  if (argv.includes("--help")) {
    process.stdout.write(
      "usage: npm run bench -- faults [standby] [--pairs N] [--takeovers N] [--json out.json]\n  standby: only the hot-standby measurements\n  --pairs: interleaved blocks without/with the replicated log (default 3)\n  --takeovers: leader SIGKILLs measured (default 2)\n",
    );
    return 0;
  }
  const jsonAt = argv.indexOf("--json");
  const info = machineInfo();
  process.stdout.write(
    `# fault benchmark — ${info.cpuModel}, ${info.cores} cores, node ${info.node}\n`,
  );
  process.stdout.write(
    "DCGAN f=32 on MNIST, batch 64, K=2, 2 workers, wasm, default lease (1.5 s)\n\n",
  );
  // JetStream on: the hot standby's log and lease live there.
  const nats = await spawnNatsServer({ jetstream: true });
  const work = mkdtempSync(join(tmpdir(), "agon-bench-faults-"));
  const results: Record<string, unknown> = { machine: info };
  try {
    const arg = (name: string, dflt: number) => {
      const i = argv.indexOf(name);
      return i >= 0 ? Number(argv[i + 1]) : dflt;
    };
    results.standby = await standbyBench(work, nats.url, arg("--pairs", 3), arg("--takeovers", 2));
    if (argv.includes("standby")) {
      if (jsonAt >= 0) writeFileSync(argv[jsonAt + 1], `${JSON.stringify(results, null, 2)}\n`);
      return 0;
    }
    // Worker loss: kill (or freeze) one worker right after a phase starts.
    for (const signal of ["SIGKILL", "SIGSTOP"] as const) {
      const runDir = join(work, `loss-${signal}`);
      const c = coordinator(dcgan(100_000, 100_000), runDir, nats.url, "127.0.0.1:0", true);
      await until(() => c.address() !== "");
      const ws = [worker(c.address(), nats.url, "a"), worker(c.address(), nats.url, "b")];
      await until(() => metrics(runDir).length >= 12);
      const before = metrics(runDir);
      const normalMs = median(before.slice(4).map((m) => m.phaseSeconds * 1000));
      // K=2 over 2 workers: the busiest worker ran exactly one microtask per phase.
      const microtaskMs = median(before.slice(4).map((m) => m.computeSeconds * 1000));
      const n = before.length;
      // Right after a phase completes, the next one has just started.
      await until(() => metrics(runDir).length > n);
      const killedAt = Date.now();
      ws[1].kill(signal);
      const phasesAtKill = metrics(runDir).length;
      await until(() => metrics(runDir).length > phasesAtKill);
      const recovered = Date.parse(metrics(runDir)[phasesAtKill].time) - killedAt;
      const row = {
        signal,
        normalPhaseMs: normalMs,
        microtaskMs,
        recoveryMs: recovered,
        boundMs: 2000 + microtaskMs,
      };
      results[`workerLoss${signal}`] = row;
      process.stdout.write(
        `worker ${signal}: interrupted phase completed ${recovered} ms after the signal ` +
          `(normal phase ${normalMs.toFixed(0)} ms; bound lease 2000 + one microtask ${microtaskMs.toFixed(0)} ms)\n`,
      );
      ws.forEach(stop);
      c.child.kill("SIGKILL");
    }

    // Coordinator restart: SIGKILL, then time from the new process start to its first completed step.
    {
      const runDir = join(work, "restart");
      const first = coordinator(dcgan(100_000, 5), runDir, nats.url, "127.0.0.1:0", true);
      await until(() => first.address() !== "");
      const address = first.address();
      const ws = [worker(address, nats.url, "a"), worker(address, nats.url, "b")];
      await until(() => metrics(runDir).filter((m) => m.stepDone).length >= 12);
      first.child.kill("SIGKILL");
      await new Promise((r) => first.child.on("close", r));
      const phasesBefore = metrics(runDir).length;
      const started = Date.now();
      const second = coordinator(dcgan(100_000, 5), runDir, nats.url, address, false);
      await until(() =>
        metrics(runDir)
          .slice(phasesBefore)
          .some((m) => m.stepDone),
      );
      const firstStep = metrics(runDir)
        .slice(phasesBefore)
        .find((m) => m.stepDone)!;
      const ms = Date.parse(firstStep.time) - started;
      results.coordinatorRestart = { firstStepMs: ms };
      process.stdout.write(
        `coordinator restart: first completed step ${ms} ms after the new process started\n`,
      );
      ws.forEach(stop);
      second.child.kill("SIGKILL");
    }

    // Checkpoint cost: step time with a checkpoint every step vs never, and the write time itself.
    {
      const stepMs: Record<string, number> = {};
      let writeMs: number[] = [];
      for (const every of [100_000, 1]) {
        const runDir = join(work, `ckpt-${every}`);
        const c = coordinator(dcgan(30, every), runDir, nats.url, "127.0.0.1:0", true);
        await until(() => c.address() !== "");
        const ws = [worker(c.address(), nats.url, "a"), worker(c.address(), nats.url, "b")];
        await new Promise((r) => c.child.on("close", r));
        const ends = metrics(runDir).filter((m) => m.stepDone);
        const gaps = ends.slice(4).map((m, i) => Date.parse(m.time) - Date.parse(ends[i + 3].time));
        stepMs[every === 1 ? "everyStep" : "never"] = median(gaps);
        if (every === 1) {
          writeMs = [...c.stderr().matchAll(/checkpoint \S+ \(interval, ([\d.]+) ms\)/g)].map((m) =>
            Number(m[1]),
          );
        }
        ws.forEach(stop);
      }
      results.checkpointWriteMs = median(writeMs);
      process.stdout.write(
        `checkpoint write (off the training path): median ${median(writeMs).toFixed(1)} ms\n`,
      );
      results.checkpoint = stepMs;
      process.stdout.write(
        `checkpoint every step: median step ${stepMs.everyStep.toFixed(0)} ms vs ${stepMs.never.toFixed(0)} ms without ` +
          `(${(((stepMs.everyStep - stepMs.never) / stepMs.never) * 100).toFixed(1)}% slower)\n`,
      );
    }
    if (jsonAt >= 0) writeFileSync(argv[jsonAt + 1], `${JSON.stringify(results, null, 2)}\n`);
    return 0;
  } finally {
    await nats.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** Load averages (1, 5, 15 min) as one string. */
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(" / ");

/**
 * The hot standby, on the MNIST DCGAN:
 * - the replicated log's cost on phase time, as interleaved blocks of runs
 *   without (A) and with `--ha` (B), A B A B …, so that drift in the machine's
 *   load cancels in each pair's ratio B/A (each block's median phase, the first
 *   8 phases left out);
 * - the standby's lag in phases (leader's metrics lines minus the standby's,
 *   sampled every 50 ms) in one more block with a standby following;
 * - `takeovers` times the leader SIGKILLed right after a phase completed: from
 *   the kill to the standby's leaderLost line, to its "leading" line, and to
 *   the next phase it completes (default lease 1.5 s).
 */
async function standbyBench(
  work: string,
  nats: string,
  pairs: number,
  takeovers: number,
): Promise<Record<string, unknown>> {
  const steps = 20;
  const loadBefore = load();
  const append = await appendCost(nats, 40);
  process.stdout.write(
    `log append (sha256 of the network + one JetStream publish, awaited), median of 40 each: D phase ${append.D.toFixed(1)} ms, G phase ${append.G.toFixed(1)} ms\n`,
  );
  const block = async (mode: "off" | "log" | "standby", i: number) => {
    const runDir = join(work, `ha-${mode}-${i}`);
    const config = [
      ...dcgan(steps, 100_000),
      "--set",
      `run.id=bench-ha-${mode}-${i}-${process.pid}`,
    ];
    const leader = coordinator(
      config,
      runDir,
      nats,
      "127.0.0.1:0",
      true,
      mode === "off" ? [] : ["--ha"],
    );
    await until(() => leader.address() !== "");
    let standby: ReturnType<typeof coordinator> | null = null;
    const standbyDir = join(work, `ha-follower-${i}`);
    if (mode === "standby") {
      standby = coordinator(config, standbyDir, nats, "127.0.0.1:0", true, ["--standby"]);
      await until(() => standby!.address() !== "");
    }
    const ws = [worker(leader.address(), nats, "a"), worker(leader.address(), nats, "b")];
    const lag: number[] = [];
    const sampler = standby
      ? setInterval(() => {
          const l = metrics(runDir).length;
          if (l > 4) lag.push(l - metrics(standbyDir).length);
        }, 50)
      : null;
    await new Promise((r) => leader.child.on("close", r));
    if (sampler) clearInterval(sampler);
    ws.forEach(stop);
    if (standby) stop(standby.child);
    const ms = median(
      metrics(runDir)
        .slice(8)
        .map((m) => m.phaseSeconds * 1000),
    );
    return { ms, lag };
  };
  const rows: Array<{ off: number; log: number; ratio: number }> = [];
  for (let i = 0; i < pairs; i++) {
    const off = (await block("off", i)).ms;
    const log = (await block("log", i)).ms;
    rows.push({ off, log, ratio: log / off });
    process.stdout.write(
      `pair ${i + 1}: median phase ${off.toFixed(0)} ms without the log, ${log.toFixed(0)} ms with --ha: ratio ${(log / off).toFixed(3)}\n`,
    );
  }
  const ratios = rows.map((r) => r.ratio);
  const costPct = (median(ratios) - 1) * 100;
  if (pairs > 0)
    process.stdout.write(
      `replicated log: ratio with/without per pair ${ratios.map((r) => r.toFixed(3)).join(", ")}; median ${median(ratios).toFixed(3)} (${costPct >= 0 ? "+" : ""}${costPct.toFixed(1)} %), spread ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}\n`,
    );
  const offMs = median(rows.map((r) => r.off));
  if (pairs > 0) {
    process.stdout.write(
      `log append vs the median phase without the log (${offMs.toFixed(0)} ms): ${(((append.D + append.G) / 2 / offMs) * 100).toFixed(1)} %\n`,
    );
  }
  const follower = pairs > 0 ? await block("standby", pairs) : { ms: Number.NaN, lag: [] };
  const lag = follower.lag.sort((a, b) => a - b);
  if (pairs > 0)
    process.stdout.write(
      `standby lag: median ${median(lag)} phases, max ${lag.at(-1)} (${lag.length} samples); median phase with a standby following ${follower.ms.toFixed(0)} ms\n`,
    );

  // Leader loss: SIGKILL right after a phase completes; the standby takes over.
  const losses: Array<Record<string, number>> = [];
  for (let i = 0; i < takeovers; i++) {
    const runDir = join(work, `ha-loss-leader-${i}`);
    const standbyDir = join(work, `ha-loss-standby-${i}`);
    const config = [
      ...dcgan(100_000, 100_000),
      "--set",
      `run.id=bench-ha-loss-${i}-${process.pid}`,
    ];
    const leader = coordinator(config, runDir, nats, "127.0.0.1:0", true, ["--ha"]);
    await until(() => leader.address() !== "");
    const standby = coordinator(config, standbyDir, nats, "127.0.0.1:0", true, ["--standby"]);
    await until(() => standby.address() !== "");
    // The standby listens while it follows (refusing calls until it leads): workers know both.
    const both = `${leader.address()},${standby.address()}`;
    const ws = [worker(both, nats, "a"), worker(both, nats, "b")];
    await until(() => metrics(runDir).length >= 12);
    const phaseMs = median(
      metrics(runDir)
        .slice(4)
        .map((m) => m.phaseSeconds * 1000),
    );
    const n = metrics(runDir).length;
    await until(() => metrics(runDir).length > n);
    leader.child.kill("SIGKILL");
    const killedAt = Date.now();
    await new Promise((r) => leader.child.on("close", r));
    const done = metrics(runDir).length;
    await until(() => metrics(standbyDir).length > done, 120_000);
    const next = metrics(standbyDir)[done];
    const lineAt = (re: RegExp) =>
      (standby.lines.find((l) => l.at >= killedAt && re.test(l.line))?.at ?? Number.NaN) - killedAt;
    const row = {
      lostMs: lineAt(/leader of epoch 1 .* silent for/),
      leadingMs: lineAt(/leading epoch 2/),
      nextPhaseMs: Date.parse(next.time) - killedAt,
      phaseMs,
    };
    losses.push(row);
    process.stdout.write(
      `leader SIGKILL → lease seen lapsed ${row.lostMs} ms → leading ${row.leadingMs} ms → next phase completed ${row.nextPhaseMs} ms (lease 1500 ms; normal phase ${phaseMs.toFixed(0)} ms)\n`,
    );
    ws.forEach(stop);
    stop(standby.child);
  }
  const loadAfter = load();
  process.stdout.write(`load average (1/5/15 min): ${loadBefore} before, ${loadAfter} after\n`);
  return {
    appendMs: append,
    logPairs: rows,
    logCostPct: costPct,
    logRatioSpread: [Math.min(...ratios), Math.max(...ratios)],
    standbyPhaseMs: follower.ms,
    lagPhases: { median: median(lag), max: lag.at(-1) },
    leaderLoss: losses,
    loadAverage: { before: loadBefore, after: loadAfter },
  };
}

/**
 * What the replicated log adds to a leader's phase, measured alone: the
 * sha256 of the network a phase changed plus one append of a phase entry of
 * the MNIST DCGAN's size (awaited, as the leader awaits it), `n` of each kind,
 * to this JetStream; median ms per kind.
 */
async function appendCost(nats: string, n: number): Promise<{ D: number; G: number }> {
  await initBackend("wasm", () => {});
  const cfg = parseConfig({
    dataset: { name: "mnist" },
    model: { name: "dcgan" },
    steps: 1,
    batch: 64,
    shards: 2,
  });
  const model = buildModel(cfg.model, [28, 28, 1]);
  const nc = await connectNats(nats, "bench-append");
  const log = await ReplicatedLog.open(nc, `bench-append-${process.pid}`);
  log.lastSeq = await log.tail();
  const times: Record<"D" | "G", number[]> = { D: [], G: [] };
  for (let i = 0; i < 2 * n; i++) {
    const kind = i % 2 === 0 ? "D" : "G";
    const net = kind === "G" ? model.g : model.d;
    const grad = Float32Array.from({ length: resultSize(net) }, () => Math.random());
    const weights = Float32Array.from({ length: net.trainableSize }, () => Math.random());
    const t0 = performance.now();
    await log.append({
      type: "phase",
      epoch: 1,
      update: {
        step: i >> 1,
        phase: i % 2,
        kind,
        grad,
        count: 64,
        dLoss: 1,
        gLoss: 1,
        dReal: 0.5,
        dFake: 0.5,
      },
      adamSteps: { G: i, D: i },
      hashes: { [kind]: weightsHash(weights) },
      metrics: { step: i >> 1, phase: i % 2 },
    });
    times[kind].push(performance.now() - t0);
  }
  await nc.drain();
  return { D: median(times.D.slice(2)), G: median(times.G.slice(2)) };
}
