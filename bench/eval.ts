// `npm run bench -- eval`: what evaluation during training (eval.every) costs. The same
// run twice, without and with eval.every, as real processes: `agon train`, or with
// `--workers N` `agon local` (a coordinator handing evaluation microtasks to N workers). The cost is the evaluations' own seconds (eval.jsonl)
// against the run's phase time (metrics.jsonl phaseSeconds) and the wall-time difference.
// The weight hashes of both runs must be equal.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { machineInfo } from "./machine.js";

const AGON = resolve(import.meta.dirname, "../shared/cli/agon.js");

function train(
  command: string[],
  args: string[],
): Promise<{ seconds: number; hashes: { G: string; D: string } }> {
  return new Promise((done, fail) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [AGON, ...command, ...args, "--json"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      err += b.toString();
    });
    child.on("error", fail);
    child.on("close", (code) => {
      if (code !== 0)
        return fail(new Error(`agon ${command[0]} exited ${code}: ${err.slice(-2000)}`));
      const summary = JSON.parse(out.trim().split("\n").pop() as string);
      done({ seconds: (performance.now() - t0) / 1000, hashes: summary.hashes });
    });
  });
}

export async function runEvalBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string", default: "dcgan" },
      dataset: { type: "string", default: "mnist" },
      steps: { type: "string", default: "200" },
      every: { type: "string", default: "50" },
      n: { type: "string", default: "2000" },
      backend: { type: "string", default: "wasm" },
      workers: { type: "string", default: "0" },
      inception: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(
      "usage: npm run bench -- eval [--model dcgan] [--dataset mnist] [--steps 200] [--every 50] [--n 2000] [--backend wasm] [--workers N (agon local; 0: agon train)] [--inception FILE (eval.features inception: FID)]\n",
    );
    return 0;
  }
  const machine = machineInfo();
  process.stderr.write(
    `machine: ${machine.cpuModel}, ${machine.cores} cores, load ${machine.loadAvg.join(" ")}\n`,
  );
  const base = [
    "--dataset",
    String(values.dataset),
    "--model",
    String(values.model),
    "--steps",
    String(values.steps),
    "--backend",
    String(values.backend),
    "--set",
    "samples.every=1000000",
    "checkpoint.every=1000000",
  ];
  const plainDir = mkdtempSync(join(tmpdir(), "agon-bench-eval-"));
  const evalDir = mkdtempSync(join(tmpdir(), "agon-bench-eval-"));
  const workers = Number(values.workers);
  const local = workers > 0;
  const command = local ? ["local", "--workers", String(workers)] : ["train"];
  try {
    const plain = await train(command, [...base, "run.id=bench-plain", "--run-dir", plainDir]);
    const evaluated = await train(command, [
      ...base,
      "run.id=bench-eval",
      ...base,
      `eval.every=${values.every}`,
      `eval.n=${values.n}`,
      ...(values.inception
        ? ["eval.features=inception", `eval.inception=${resolve(values.inception)}`]
        : []),
      "--run-dir",
      evalDir,
    ]);
    const lines = readFileSync(join(evalDir, "eval.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step: number; fd?: number; fid?: number; seconds: number });
    const evalSeconds = lines.reduce((s, l) => s + l.seconds, 0);
    const phaseSeconds = (dir: string) =>
      readFileSync(join(dir, "metrics.jsonl"), "utf8")
        .trim()
        .split("\n")
        .reduce((s, l) => s + Number(JSON.parse(l).phaseSeconds ?? 0), 0);
    const plainPhases = phaseSeconds(plainDir);
    const same = plain.hashes.G === evaluated.hashes.G && plain.hashes.D === evaluated.hashes.D;
    process.stdout.write(
      [
        `${values.model} on ${values.dataset}, ${values.steps} steps, eval every ${values.every} steps (n ${values.n}${values.inception ? ", Inception-v3 features" : ""}), ${values.backend}, ${local ? `agon local --workers ${workers} (evaluation microtasks)` : "agon train"}`,
        `run without eval: ${plain.seconds.toFixed(1)} s wall${local ? `, ${plainPhases.toFixed(1)} s in phases` : ""}; with eval: ${evaluated.seconds.toFixed(1)} s wall`,
        `${lines.length} evaluations: ${evalSeconds.toFixed(2)} s in all, ${(evalSeconds / lines.length).toFixed(2)} s each`,
        local
          ? `cost: ${((100 * evalSeconds) / plainPhases).toFixed(1)} % of phase time (wall difference ${((100 * (evaluated.seconds - plain.seconds)) / plain.seconds).toFixed(1)} %)`
          : `cost: ${((100 * evalSeconds) / plain.seconds).toFixed(1)} % of training time (wall difference ${((100 * (evaluated.seconds - plain.seconds)) / plain.seconds).toFixed(1)} %)`,
        `${values.inception ? "FID" : "FD"}: ${lines.map((l) => `${l.step}: ${(l.fid ?? l.fd ?? Number.NaN).toFixed(1)}`).join(", ")}`,
        `weight hashes ${same ? "equal" : "DIFFER"} with and without eval`,
      ].join("\n") + "\n",
    );
    return same ? 0 : 1;
  } finally {
    rmSync(plainDir, { recursive: true, force: true });
    rmSync(evalDir, { recursive: true, force: true });
  }
}
