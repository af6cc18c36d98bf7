// `npm run bench -- augment-curves [options]`: issue 15's small-data check. Generates a
// labelled folder of ≈1,000 64×64 RGB images in 4 class subfolders (disc, square,
// triangle, ring; random colour, size, place and background, from a fixed seed),
// prepares it (`agon data prepare`), fits its FD features (`agon eval fit-features`,
// docs/QUALITY.md), then trains the same conditional recipe twice — without
// augmentation and with DiffAugment [color, translation, cutout] (Zhao et al. 2020) —
// with `eval.every` giving an FD curve for each, and writes both runs' last-checkpoint
// sample grids (a row per class) and the curves as JSON. The recipe is
// docs/examples/shapes-rgb64-diffaugment.yaml's (dcgan, `dNorm: none`, rpgan + R1/R2
// every 4th D phase) with `model.conditional: true`; the two runs differ only in
// `augment`. With few images D memorises them; the augmented run's FD should turn up
// later (or not at all).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { PNG } from "pngjs";
import { Rng } from "../shared/rng.js";
import { agonCli } from "./agon-cli.js";
import { insideShape } from "./shapes.js";

/** The four classes, in label order (agon data prepare sorts subfolders by name). */
export const CLASSES = ["disc", "ring", "square", "triangle"] as const;

/**
 * One size×size RGB PNG of a shape of class `kind` (an index into CLASSES): a random
 * colour (each channel 60–255), radius 0.18–0.35 of the side, and place, on a dark
 * random background (each channel 20–39). Deterministic in `rng`.
 */
export function classShapePng(rng: Rng, kind: number, size: number): Buffer {
  const png = new PNG({ width: size, height: size });
  const bg = [20, 20, 28].map((v) => v + Math.floor(rng.nextFloat() * 20));
  const colour = [0, 1, 2].map(() => 60 + Math.floor(rng.nextFloat() * 196));
  const r = size * (0.18 + 0.17 * rng.nextFloat());
  const cx = r + (size - 2 * r) * rng.nextFloat();
  const cy = r + (size - 2 * r) * rng.nextFloat();
  const name = CLASSES[kind];
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const c = insideShape(name, dx, dy, r) ? colour : bg;
      png.data.set([c[0], c[1], c[2], 255], (y * size + x) * 4);
    }
  }
  return PNG.sync.write(png);
}

/** The shared recipe (everything but `augment`, run, eval and checkpoint settings). */
function recipe(o: Options, data: string): Record<string, unknown> {
  return {
    seed: o.seed,
    model: {
      name: "dcgan",
      latentDim: 64,
      gFilters: o.filters,
      dFilters: o.filters,
      maxFilters: 8 * o.filters,
      kernel: 4,
      dNorm: "none",
      conditional: true,
    },
    loss: { name: "rpgan", r1: 1, r2: 1, regEvery: 4 },
    dataset: { name: "prepared", path: data },
    shards: 1,
    batch: o.batch,
    steps: o.steps,
    samples: { every: o.every, count: 32 },
    checkpoint: { every: o.every, keep: 1000 },
    eval: { every: o.every, n: o.n },
  };
}

interface Options {
  dir: string;
  count: number;
  steps: number;
  every: number;
  n: number;
  batch: number;
  filters: number;
  seed: number;
  runs: string[];
  backend: string;
}

interface EvalLine {
  step: number;
  fd: number;
}

const RUNS: Record<string, Record<string, unknown> | undefined> = {
  none: undefined,
  diffaugment: { policy: ["color", "translation", "cutout"] },
};

const USAGE = `usage: npm run bench -- augment-curves [--dir DIR] [--count 1024] [--steps 2000] [--every 50]
        [--n 500] [--batch 32] [--filters 16] [--seed 1] [--runs none,diffaugment] [--backend wasm]
Writes DIR/shapes (PNG folders), DIR/shapes-64 (prepared + features), DIR/runs/<run>,
DIR/<run>-grid.png and DIR/augment-curves.<runs>.json; the runs in --runs train at the same time
(one process each; run them one by one with --runs none, then --runs diffaugment).`;

/** Runs the benchmark; returns the process exit code. */
export async function runAugmentCurvesBench(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        dir: { type: "string", default: "augment-curves" },
        count: { type: "string", default: "1024" },
        steps: { type: "string", default: "2000" },
        every: { type: "string", default: "50" },
        n: { type: "string", default: "500" },
        batch: { type: "string", default: "32" },
        filters: { type: "string", default: "16" },
        seed: { type: "string", default: "1" },
        runs: { type: "string", default: "none,diffaugment" },
        backend: { type: "string", default: "wasm" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const num = (k: string) => Number(values[k]);
  const o: Options = {
    dir: resolve(String(values.dir)),
    count: num("count"),
    steps: num("steps"),
    every: num("every"),
    n: num("n"),
    batch: num("batch"),
    filters: num("filters"),
    seed: num("seed"),
    runs: String(values.runs).split(","),
    backend: String(values.backend),
  };
  for (const k of ["count", "steps", "every", "n", "batch", "filters"] as const) {
    if (!Number.isInteger(o[k]) || o[k] <= 0) {
      process.stderr.write(`--${k} must be a positive integer\n`);
      return 2;
    }
  }
  const unknown = o.runs.filter((r) => !(r in RUNS));
  if (unknown.length > 0) {
    process.stderr.write(`--runs: unknown ${unknown.join(", ")} (none, diffaugment)\n`);
    return 2;
  }

  // 1. The labelled folder, prepared, with fitted features (each skipped when there).
  const source = join(o.dir, "shapes");
  const data = join(o.dir, "shapes-64");
  if (!existsSync(source)) {
    const rng = new Rng(2026);
    for (let i = 0; i < o.count; i++) {
      const kind = i % CLASSES.length;
      mkdirSync(join(source, CLASSES[kind]), { recursive: true });
      writeFileSync(
        join(source, CLASSES[kind], `${String(i).padStart(5, "0")}.png`),
        classShapePng(rng, kind, 64),
      );
    }
  }
  if (!existsSync(join(data, "features", "features.json"))) {
    await agonCli(["data", "prepare", source, "--out", data, "--resolution", "64"], "prepare");
    const fit = await agonCli(["eval", "fit-features", "--dataset", data, "--json"], "fit");
    const m = JSON.parse(fit.trim()) as { trainAccuracy: number };
    process.stderr.write(
      `features fitted (classifier accuracy on the rows: ${(100 * m.trainAccuracy).toFixed(1)} %)\n`,
    );
  }

  // 2. The runs, side by side (one process each), then a grid of each last checkpoint.
  const results: Record<string, { curve: EvalLine[]; seconds: number; grid: string }> = {};
  await Promise.all(
    o.runs.map(async (name) => {
      const runDir = join(o.dir, "runs", name);
      const config = { ...recipe(o, data), run: { id: `shapes-${name}`, dir: runDir } };
      const augment = RUNS[name];
      if (augment) Object.assign(config, { augment });
      mkdirSync(runDir, { recursive: true });
      const configFile = join(o.dir, `${name}.json`);
      writeFileSync(configFile, JSON.stringify(config, null, 2));
      const t0 = performance.now();
      await agonCli(["train", "-c", configFile, "--backend", o.backend, "--json"], name);
      const seconds = (performance.now() - t0) / 1000;
      const grid = join(o.dir, `${name}-grid.png`);
      await agonCli(["sample", "--checkpoint", runDir, "--out", grid, "--backend", o.backend]);
      const curve = readFileSync(join(runDir, "eval.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => {
          const { step, fd } = JSON.parse(l) as EvalLine;
          return { step, fd };
        });
      results[name] = { curve, seconds, grid };
    }),
  );

  // 3. The curves side by side: step, kimg (step × batch / 1000 real images shown to D), FD.
  const steps = [...new Set(Object.values(results).flatMap((r) => r.curve.map((l) => l.step)))];
  steps.sort((a, b) => a - b);
  const header = ["step", "kimg", ...o.runs.map((r) => `FD ${r}`)];
  const lines = [header.join("\t")];
  for (const s of steps) {
    const fds = o.runs.map((r) => results[r].curve.find((l) => l.step === s)?.fd.toFixed(2) ?? "");
    lines.push([s, ((s * o.batch) / 1000).toFixed(1), ...fds].join("\t"));
  }
  process.stdout.write(`${lines.join("\n")}\n`);
  for (const r of o.runs) {
    process.stdout.write(`${r}: ${results[r].seconds.toFixed(0)} s, grid ${results[r].grid}\n`);
  }
  writeFileSync(
    join(o.dir, `augment-curves.${o.runs.join("+")}.json`),
    `${JSON.stringify({ options: o, classes: CLASSES, results }, null, 2)}\n`,
  );
  return 0;
}
