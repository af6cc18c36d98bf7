// `npm run bench -- distributed`: the cost of distribution, measured side by
// side in one run on real processes. Overhead: `agon local --workers 1` vs
// `agon train` (same model, backend, batch). Scaling: 2 workers vs 1. Per
// phase: bytes up and down, and time outside the busiest worker's compute.
// Transport: the upload-heavy MLP with fp32 vs bf16 gradients and parameters.
// Scale: a ≥ 5 M-parameter MLP with K = 8 on 2 workers, where the reduction
// tree keeps the coordinator's inbound bytes per phase at 2 gradients, not 8.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseConfig } from "../shared/config.js";
import { buildModel } from "../shared/models/index.js";
import { spawnNatsServer } from "../shared/nats.js";
import { machineInfo } from "./machine.js";
import { type PhaseBreakdown, phaseBreakdown, SEGMENTS } from "./phase-trace.js";
import { fmtMs, median } from "./stats.js";

const AGON = resolve(import.meta.dirname, "../shared/cli/agon.js");

interface Phase {
  step: number;
  phase: number;
  kind: string;
  time: string;
  phaseSeconds?: number;
  computeSeconds?: number;
  bytesIn?: number;
  bytesOut?: number;
}

interface RunStats {
  label: string;
  stepsPerSecond: number;
  samplesPerSecond: number;
  phases: Phase[];
}

/** Runs `agon args`; with `trace`, its processes log each phase's path there (AGON_TRACE). */
function run(args: string[], trace?: string): Promise<void> {
  return new Promise((done, fail) => {
    const env = trace ? { ...process.env, AGON_TRACE: trace } : process.env;
    const child = spawn(process.execPath, [AGON, ...args], {
      stdio: ["ignore", "ignore", "pipe"],
      env,
    });
    let err = "";
    child.stderr.on("data", (b: Buffer) => {
      err += b.toString();
    });
    child.on("close", (code) =>
      code === 0 ? done() : fail(new Error(`agon ${args[0]} exited ${code}: ${err.slice(-2000)}`)),
    );
  });
}

/** Steps/s between the end of step `warm` and the end of the run, from metrics.jsonl timestamps. */
function measure(label: string, runDir: string, batch: number, warm: number): RunStats {
  const phases = readFileSync(join(runDir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Phase);
  const lastPhase = Math.max(...phases.map((p) => p.phase));
  const stepEnds = phases.filter((p) => p.phase === lastPhase);
  const from = stepEnds[warm - 1];
  const to = stepEnds[stepEnds.length - 1];
  const seconds = (Date.parse(to.time) - Date.parse(from.time)) / 1000;
  const steps = to.step - from.step;
  return {
    label,
    stepsPerSecond: steps / seconds,
    samplesPerSecond: (steps * batch) / seconds,
    phases,
  };
}

interface Case {
  name: string;
  config: string[];
  batch: number;
  steps: number;
}

const dcgan = (batch: number, shards: number, steps: number): Case => ({
  name: `dcgan f=32, batch ${batch}, K=${shards}`,
  batch,
  steps,
  config: [
    "--dataset",
    "mnist",
    "--model",
    "dcgan",
    "--set",
    "samples.every=100000",
    "checkpoint.every=100000",
    "--batch",
    String(batch),
    "--shards",
    String(shards),
    "--steps",
    String(steps),
  ],
});

const mlp = (steps: number, transport: "fp32" | "bf16" = "fp32"): Case => ({
  name: `mlp 256-512, batch 64, K=1${transport === "fp32" ? "" : `, ${transport} transport`}`,
  batch: 64,
  steps,
  config: [
    "--set",
    `transport.gradients=${transport}`,
    `transport.params=${transport}`,
    "--dataset",
    "mnist",
    "--model",
    "mlp",
    "--set",
    "samples.every=100000",
    "checkpoint.every=100000",
    "--batch",
    "64",
    "--shards",
    "1",
    "--steps",
    String(steps),
  ],
});

/** The wide MLP of the scale section: G 5.9 M and D 5.8 M parameters on 28×28 MNIST. */
const WIDE = { name: "mlp", latentDim: 64, gHidden: [2048, 2048], dHidden: [2048, 2048] };

const wideMlp = (steps: number): Case => ({
  name: "mlp 2048-2048 (G 5.9 M, D 5.8 M params), batch 64, K=8",
  batch: 64,
  steps,
  config: [
    "--dataset",
    "mnist",
    "--model",
    "mlp",
    "--set",
    `model.latentDim=${WIDE.latentDim}`,
    `model.gHidden=${JSON.stringify(WIDE.gHidden)}`,
    `model.dHidden=${JSON.stringify(WIDE.dHidden)}`,
    "samples.every=100000",
    "checkpoint.every=100000",
    "--batch",
    "64",
    "--shards",
    "8",
    "--steps",
    String(steps),
  ],
});

/** The ring of docs/examples/ring.yaml (MLP 64-64, batch 128, K = 4): phases of a few ms of compute. */
const ring = (steps: number): Case => ({
  name: "ring (docs/examples/ring.yaml: mlp 64-64, batch 128, K=4)",
  batch: 128,
  steps,
  config: [
    "-c",
    resolve(import.meta.dirname, "../docs/examples/ring.yaml"),
    "--set",
    "samples.every=100000",
    "checkpoint.every=100000",
    "--steps",
    String(steps),
  ],
});

const SECTIONS = ["overhead", "scaling", "transport", "scale", "latency"] as const;

export async function runDistributedBench(argv: string[]): Promise<number> {
  if (argv.includes("--help")) {
    process.stdout.write(
      `usage: npm run bench -- distributed [--quick] [--only ${SECTIONS.join("|")}] [--json out.json]\n`,
    );
    return 0;
  }
  const quick = argv.includes("--quick");
  const onlyAt = argv.indexOf("--only");
  const only = onlyAt >= 0 ? argv[onlyAt + 1] : undefined;
  if (only !== undefined && !(SECTIONS as readonly string[]).includes(only)) {
    process.stderr.write(`bench distributed: --only takes one of ${SECTIONS.join(", ")}\n`);
    return 2;
  }
  const runs = (section: (typeof SECTIONS)[number]) => only === undefined || only === section;
  const jsonAt = argv.indexOf("--json");
  const jsonPath = jsonAt >= 0 ? argv[jsonAt + 1] : undefined;
  const warm = 3;
  const info = machineInfo();
  process.stdout.write(
    `# distributed benchmark — ${info.cpuModel}, ${info.cores} cores, node ${info.node}\n`,
  );

  const nats = await spawnNatsServer({ jetstream: false });
  const work = mkdtempSync(join(tmpdir(), "agon-bench-"));
  const results: Record<string, unknown> = { machine: info };
  try {
    const single = async (c: Case, label: string) => {
      const dir = join(work, `${label}-${Math.random().toString(36).slice(2)}`);
      await run(["train", ...c.config, "--backend", "wasm", "--run-dir", dir, "--fresh"]);
      return measure(label, dir, c.batch, warm);
    };
    const local = async (c: Case, workers: number, label: string, trace?: string) => {
      const dir = join(work, `${label}-${Math.random().toString(36).slice(2)}`);
      await run(
        [
          "local",
          ...c.config,
          "--workers",
          String(workers),
          "--nats",
          nats.url,
          "--backend",
          "wasm",
          "--run-dir",
          dir,
          "--fresh",
        ],
        trace,
      );
      return measure(label, dir, c.batch, warm);
    };

    const comm = (s: RunStats) => {
      const steady = s.phases.filter((p) => p.step >= warm);
      const perPhase = (key: "bytesIn" | "bytesOut") => {
        const a = steady[0][key] ?? 0;
        const b = steady[steady.length - 1][key] ?? 0;
        return (b - a) / (steady.length - 1);
      };
      const overheadShare = median(
        steady.map((p) => 1 - (p.computeSeconds ?? 0) / (p.phaseSeconds ?? 1)),
      );
      return {
        phaseMs: median(steady.map((p) => (p.phaseSeconds ?? 0) * 1000)),
        computeMs: median(steady.map((p) => (p.computeSeconds ?? 0) * 1000)),
        outsideComputeShare: overheadShare,
        bytesUpPerPhase: perPhase("bytesIn"),
        bytesDownPerPhase: perPhase("bytesOut"),
      };
    };
    // Overhead: one worker over the wire vs the same microtasks in one process.
    const overhead: Array<Record<string, unknown>> = [];
    for (const c of runs("overhead") ? [mlp(quick ? 15 : 60), dcgan(64, 1, quick ? 10 : 30)] : []) {
      const t = await single(c, "train");
      const l = await local(c, 1, "local1");
      overhead.push({
        case: c.name,
        trainStepsPerSecond: t.stepsPerSecond,
        local1StepsPerSecond: l.stepsPerSecond,
        ratio: l.stepsPerSecond / t.stepsPerSecond,
      });
    }

    // Scaling and communication: 64 samples per worker with 2 workers (batch 128, K=2).
    const c = dcgan(128, 2, quick ? 8 : 24);
    let scaling: ReturnType<typeof scalingOf> | null = null;
    const scalingOf = (one: RunStats, two: RunStats) => ({
      case: c.name,
      oneWorkerStepsPerSecond: one.stepsPerSecond,
      twoWorkersStepsPerSecond: two.stepsPerSecond,
      speedup: two.stepsPerSecond / one.stepsPerSecond,
      communication: { oneWorker: comm(one), twoWorkers: comm(two) },
    });
    if (runs("scaling"))
      scaling = scalingOf(await local(c, 1, "local1"), await local(c, 2, "local2"));

    // Transport precision: the same MLP run, one worker, fp32 vs bf16 both ways.
    const transport = [];
    for (const dtype of runs("transport") ? (["fp32", "bf16"] as const) : []) {
      const s = await local(mlp(quick ? 15 : 60, dtype), 1, `local1-${dtype}`);
      transport.push({ dtype, stepsPerSecond: s.stepsPerSecond, ...comm(s) });
    }

    // Scale: inbound bytes per phase against the model's bytes, per network.
    let scale: Record<string, unknown> | null = null;
    if (runs("scale")) {
      const wc = wideMlp(quick ? 5 : 8);
      const model = buildModel(
        parseConfig({ model: WIDE, dataset: { name: "mnist" }, steps: 1 }).model,
        [28, 28, 1],
      );
      const bytes = { G: 4 * model.g.size, D: 4 * model.d.size };
      const traceFile = join(work, "scale-trace.jsonl");
      const s = await local(wc, 2, "scale2", traceFile);
      const path = phaseBreakdown(traceFile, 1);
      const millions = (model.g.size + model.d.size) / 2 / 1e6;
      const steady = s.phases.filter((p) => p.step >= 1);
      const ratios = { G: [] as number[], D: [] as number[] };
      for (let i = 1; i < steady.length; i++) {
        const p = steady[i];
        const kind = p.kind as "G" | "D";
        ratios[kind].push(((p.bytesIn ?? 0) - (steady[i - 1].bytesIn ?? 0)) / bytes[kind]);
      }
      scale = {
        case: wc.name,
        workers: 2,
        params: { G: model.g.size, D: model.d.size },
        inboundOverModelBytes: { G: median(ratios.G), D: median(ratios.D) },
        inboundBeforeTree: 8,
        stepsPerSecond: s.stepsPerSecond,
        ...comm(s),
        modelBytes: (bytes.G + bytes.D) / 2,
        path,
        updateMsPerMillion: path.segments.update / millions,
        publishMsPerMillion: path.segments.publish / millions,
      };
    }

    // Latency: where a small model's phase goes, 1 and 2 workers, traced end to end.
    const latency: Array<{ workers: number; stepsPerSecond: number; path: PhaseBreakdown }> = [];
    for (const workers of runs("latency") ? [1, 2] : []) {
      const traceFile = join(work, `latency-${workers}.jsonl`);
      const s = await local(ring(quick ? 40 : 150), workers, `latency${workers}`, traceFile);
      latency.push({
        workers,
        stepsPerSecond: s.stepsPerSecond,
        path: phaseBreakdown(traceFile, warm),
      });
    }
    Object.assign(results, { overhead, scaling, transport, scale, latency });

    process.stdout.write("\n## overhead: agon local --workers 1 vs agon train (wasm)\n\n");
    process.stdout.write("| case | train steps/s | local×1 steps/s | ratio |\n|---|--:|--:|--:|\n");
    for (const o of overhead) {
      const r = o as {
        case: string;
        trainStepsPerSecond: number;
        local1StepsPerSecond: number;
        ratio: number;
      };
      process.stdout.write(
        `| ${r.case} | ${r.trainStepsPerSecond.toFixed(2)} | ${r.local1StepsPerSecond.toFixed(2)} | ${r.ratio.toFixed(3)} |\n`,
      );
    }
    if (scaling) {
      process.stdout.write(`\n## scaling: ${c.name}\n\n`);
      process.stdout.write(
        `1 worker ${scaling.oneWorkerStepsPerSecond.toFixed(2)} steps/s, 2 workers ${scaling.twoWorkersStepsPerSecond.toFixed(2)} steps/s: ${scaling.speedup.toFixed(2)}×\n`,
      );
      process.stdout.write("\n## communication per phase (steady state)\n\n");
      process.stdout.write(
        "| workers | phase ms | busiest worker compute ms | outside compute | bytes up | bytes down |\n",
      );
      process.stdout.write("|--:|--:|--:|--:|--:|--:|\n");
      for (const [n, s] of [
        [1, scaling.communication.oneWorker],
        [2, scaling.communication.twoWorkers],
      ] as const) {
        process.stdout.write(
          `| ${n} | ${s.phaseMs.toFixed(1)} | ${s.computeMs.toFixed(1)} | ${(s.outsideComputeShare * 100).toFixed(1)}% | ${Math.round(s.bytesUpPerPhase)} | ${Math.round(s.bytesDownPerPhase)} |\n`,
        );
      }
    }
    if (transport.length > 0) {
      process.stdout.write(
        "\n## transport: mlp 256-512, batch 64, K=1, agon local --workers 1 (steady state)\n\n",
      );
      process.stdout.write(
        "| gradients & params | steps/s | phase ms | outside compute | bytes up / phase | bytes down / phase |\n",
      );
      process.stdout.write("|---|--:|--:|--:|--:|--:|\n");
      for (const t of transport) {
        process.stdout.write(
          `| ${t.dtype} | ${t.stepsPerSecond.toFixed(2)} | ${t.phaseMs.toFixed(1)} | ${(t.outsideComputeShare * 100).toFixed(1)}% | ${Math.round(t.bytesUpPerPhase)} | ${Math.round(t.bytesDownPerPhase)} |\n`,
        );
      }
    }
    if (scale) {
      const r = scale as {
        case: string;
        params: { G: number; D: number };
        inboundOverModelBytes: { G: number; D: number };
        stepsPerSecond: number;
        phaseMs: number;
        computeMs: number;
      };
      process.stdout.write(`\n## scale: ${r.case}, agon local --workers 2\n\n`);
      process.stdout.write(
        `coordinator inbound bytes per phase ÷ the network's bytes (median, steady state): D ${r.inboundOverModelBytes.D.toFixed(2)}×, G ${r.inboundOverModelBytes.G.toFixed(2)}× (8× before the reduction tree)\n`,
      );
      process.stdout.write(
        `${r.stepsPerSecond.toFixed(3)} steps/s, phase ${r.phaseMs.toFixed(0)} ms, busiest worker compute ${r.computeMs.toFixed(0)} ms\n`,
      );
    }
    if (scale) {
      const r = scale as { path: PhaseBreakdown; modelBytes: number; bytesDownPerPhase: number };
      process.stdout.write(
        `bytes down per phase ÷ the network's bytes: ${(r.bytesDownPerPhase / r.modelBytes).toFixed(2)} (1 = one NATS broadcast, no FetchParams)\n`,
      );
      process.stdout.write(
        `coordinator per phase: update (tree + mean + Adam) ${fmtMs(r.path.segments.update)} ms = ${fmtMs((scale as { updateMsPerMillion: number }).updateMsPerMillion)} ms per M params; publish (encode + sha256 + NATS) ${fmtMs(r.path.segments.publish)} ms = ${fmtMs((scale as { publishMsPerMillion: number }).publishMsPerMillion)} ms per M params\n`,
      );
      process.stdout.write(
        `\ncritical path of a phase (median ms over ${r.path.phases} phases):\n\n`,
      );
      process.stdout.write(pathTable([{ label: "2 workers", path: r.path }]));
    }
    if (latency.length > 0) {
      process.stdout.write(`\n## latency: ${ring(0).name}, agon local, traced (AGON_TRACE)\n\n`);
      process.stdout.write(
        latency
          .map(
            (l) =>
              `${l.workers} worker(s): ${l.stepsPerSecond.toFixed(1)} steps/s, phase ${fmtMs(l.path.wallMs)} ms, slowest worker's compute ${fmtMs(l.path.computeMs)} ms, phase overhead ${fmtMs(l.path.overheadMs)} ms (median over ${l.path.phases} phases)\n`,
          )
          .join(""),
      );
      process.stdout.write("\ncritical path of a phase (median ms of each segment):\n\n");
      process.stdout.write(
        pathTable(latency.map((l) => ({ label: `${l.workers} worker(s)`, path: l.path }))),
      );
    }
    if (jsonPath) writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
    return 0;
  } finally {
    await nats.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** A markdown table: one row per run, one column per critical-path segment (median ms). */
function pathTable(rows: Array<{ label: string; path: PhaseBreakdown }>): string {
  const head = `| run | ${SEGMENTS.join(" | ")} | wall | overhead |\n|---|${SEGMENTS.map(() => "--:").join("|")}|--:|--:|\n`;
  return (
    head +
    rows
      .map(
        (r) =>
          `| ${r.label} | ${SEGMENTS.map((k) => fmtMs(r.path.segments[k])).join(" | ")} | ${fmtMs(r.path.wallMs)} | ${fmtMs(r.path.overheadMs)} |\n`,
      )
      .join("")
  );
}
