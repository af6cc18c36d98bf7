// `npm run bench -- faults`: how fast training recovers, on real processes.
// Worker loss (SIGKILL, SIGSTOP) → time until the interrupted phase completes;
// coordinator restart → time from the new process's start to its first
// completed step; checkpoint write time and its effect on step time.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { spawnNatsServer } from "../shared/nats.js";
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
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let address = "";
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  createInterface({ input: child.stdout! }).on("line", (line) => {
    const e = JSON.parse(line) as { event: string; address?: string };
    if (e.event === "listening") address = e.address!;
  });
  return { child, address: () => address, stderr: () => stderr };
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
    process.stdout.write("usage: npm run bench -- faults [--json out.json]\n");
    return 0;
  }
  const jsonAt = argv.indexOf("--json");
  const info = machineInfo();
  process.stdout.write(
    `# fault benchmark — ${info.cpuModel}, ${info.cores} cores, node ${info.node}\n`,
  );
  process.stdout.write("DCGAN f=32 on MNIST, batch 64, K=2, 2 workers, wasm, lease 2 s\n\n");
  const nats = await spawnNatsServer({ jetstream: false });
  const work = mkdtempSync(join(tmpdir(), "agon-bench-faults-"));
  const results: Record<string, unknown> = { machine: info };
  try {
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
