// `npm run bench -- quality`: sample quality against training steps, on real processes.
//
// For each recipe × seed, one `agon train` run keeps a checkpoint at every requested step
// count, and `agon eval` measures each checkpoint's Fréchet distance (FD; our classifier's
// features, docs/QUALITY.md) with the same n and latent seed. The PyTorch reference
// numbers (classic DCGAN, batch 64, n = 2000) are printed beside ours for comparison; the
// benchmark itself is not tuned to them.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { machineInfo } from "./machine.js";
import { median, textTable } from "./stats.js";

const AGON = resolve(import.meta.dirname, "../shared/cli/agon.js");

/** A named training recipe: `agon train` flags on top of `--steps`, `--seed`, `--run-dir`. */
export interface QualityRecipe {
  summary: string;
  flags: string[];
  /** Extra `agon eval` flags, e.g. to pick the EMA or raw generator weights. */
  evalFlags?: string[][];
}

/**
 * Recipes by name. `dcgan` is the project's default DCGAN on MNIST, batch 64 (the issue's
 * comparison setting). New model families add their recipes here.
 */
export const RECIPES: Record<string, QualityRecipe> = {
  dcgan: {
    summary: "default dcgan on MNIST, batch 64, K=1",
    flags: ["--dataset", "mnist", "--model", "dcgan", "--batch", "64", "--shards", "1"],
    evalFlags: [
      ["--weights", "ema"],
      ["--weights", "raw"],
    ],
  },
  rpgan: {
    summary: "dcgan (no norm in D) with rpgan + R1/R2 (γ=1, lazy every 4) on MNIST, batch 64, K=1",
    flags: [
      ...["--dataset", "mnist", "--model", "dcgan", "--loss", "rpgan", "--batch", "64"],
      ...["--shards", "1", "--set", "model.dNorm=none", "loss.r1=1", "loss.r2=1"],
      "loss.regEvery=4",
    ],
    evalFlags: [["--weights", "ema"]],
  },
  "rpgan-diffaugment": {
    summary: "the rpgan recipe with DiffAugment (color, translation, cutout)",
    flags: [
      ...["--dataset", "mnist", "--model", "dcgan", "--loss", "rpgan", "--batch", "64"],
      ...["--shards", "1", "--set", "model.dNorm=none", "loss.r1=1", "loss.r2=1"],
      ...["loss.regEvery=4", "augment.policy=[color,translation,cutout]"],
    ],
    evalFlags: [["--weights", "ema"]],
  },
};

/**
 * PyTorch classic DCGAN (batch norm, same widths and kernels), MNIST, batch 64, FD n = 2000,
 * two seeds: [min, max] at each step count. Source: issue 14's side-by-side measurement.
 */
export const PYTORCH_CLASSIC: Record<number, [number, number]> = {
  500: [24.1, 30.1],
  1000: [18.5, 19.8],
  2000: [15.1, 15.5],
  3000: [11.9, 12.7],
};

interface Row {
  recipe: string;
  seed: number;
  step: number;
  weights: string;
  fd: number;
  trainSeconds: number;
}

function run(args: string[], log: boolean): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [AGON, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
      if (log) process.stderr.write(d);
    });
    child.on("close", (code) => {
      if (code === 0) resolvePromise(out);
      else reject(new Error(`agon ${args[0]} exited ${code}: ${err.trim().split("\n").pop()}`));
    });
  });
}

const USAGE = `usage: npm run bench -- quality [--recipes dcgan,...] [--seeds 1,2] [--steps 1000,3000]
                                 [--n 2000] [--backend wasm] [--json FILE] [--keep DIR]
recipes: ${Object.keys(RECIPES).join(", ")}`;

/** Runs the quality benchmark; returns the process exit code. */
export async function runQualityBench(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        recipes: { type: "string", default: "dcgan" },
        seeds: { type: "string", default: "1,2" },
        steps: { type: "string", default: "1000,3000" },
        n: { type: "string", default: "2000" },
        backend: { type: "string", default: "wasm" },
        json: { type: "string" },
        keep: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    process.stderr.write(`bench quality: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const list = (s: unknown) =>
    String(s)
      .split(",")
      .filter((x) => x !== "");
  const recipes = list(values.recipes);
  const seeds = list(values.seeds).map(Number);
  const steps = list(values.steps)
    .map(Number)
    .sort((a, b) => a - b);
  const unknown = recipes.filter((r) => !(r in RECIPES));
  if (
    unknown.length > 0 ||
    seeds.some((s) => !Number.isInteger(s)) ||
    steps.some((s) => !(s > 0))
  ) {
    process.stderr.write(`bench quality: bad --recipes/--seeds/--steps\n${USAGE}\n`);
    return 2;
  }
  const machine = machineInfo();
  process.stderr.write(
    `quality: ${machine.cpuModel}, ${machine.cores} cores, load ${machine.loadAvg.join(" ")}, backend ${values.backend}\n`,
  );
  const rows: Row[] = [];
  const last = steps[steps.length - 1];
  for (const name of recipes) {
    const recipe = RECIPES[name];
    for (const seed of seeds) {
      const dir = values.keep
        ? resolve(String(values.keep), `${name}-seed${seed}`)
        : mkdtempSync(join(tmpdir(), "agon-quality-"));
      try {
        const t0 = performance.now();
        // A checkpoint at every requested step count, none deleted.
        const every = steps.reduce(gcd);
        await run(
          [
            "train",
            ...recipe.flags,
            "--seed",
            String(seed),
            "--steps",
            String(last),
            "--backend",
            String(values.backend),
            "--run-dir",
            dir,
            "--fresh",
            "--set",
            `checkpoint.every=${every}`,
            `checkpoint.keep=${Math.ceil(last / every) + 1}`,
            "samples.every=1000000",
          ],
          false,
        );
        const trainSeconds = (performance.now() - t0) / 1000;
        for (const step of steps) {
          for (const extra of recipe.evalFlags ?? [[]]) {
            const ckpt = join(dir, `ckpt-${String(step).padStart(8, "0")}`);
            const out = await run(
              [
                "eval",
                "--checkpoint",
                ckpt,
                "--n",
                String(values.n),
                "--json",
                "--backend",
                String(values.backend),
                ...extra,
              ],
              false,
            );
            const result = JSON.parse(out.trim().split("\n").pop() as string) as { fd: number };
            const weights = extra.join(" ") || "default";
            rows.push({ recipe: name, seed, step, weights, fd: result.fd, trainSeconds });
            process.stderr.write(
              `  ${name} seed ${seed} step ${step} ${weights}: FD ${result.fd.toFixed(2)}\n`,
            );
          }
        }
      } finally {
        if (!values.keep) rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  const table = rows.map((r) => {
    const ref = PYTORCH_CLASSIC[r.step];
    return [
      r.recipe,
      String(r.seed),
      String(r.step),
      r.weights,
      r.fd.toFixed(2),
      r.recipe === "dcgan" && ref ? `${ref[0]}–${ref[1]}` : "-",
      r.trainSeconds.toFixed(0),
    ];
  });
  process.stdout.write(
    `${textTable(["recipe", "seed", "step", "weights", "FD", "PyTorch classic", "train s"], table, new Set([1, 2, 4, 6]))}\n`,
  );
  for (const name of recipes) {
    for (const step of steps) {
      const fds = rows.filter((r) => r.recipe === name && r.step === step).map((r) => r.fd);
      process.stdout.write(
        `${name} step ${step}: median FD ${median(fds).toFixed(2)} over ${fds.length}\n`,
      );
    }
  }
  if (values.json) {
    writeFileSync(
      String(values.json),
      `${JSON.stringify({ machine, n: Number(values.n), rows }, null, 2)}\n`,
    );
  }
  return 0;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
