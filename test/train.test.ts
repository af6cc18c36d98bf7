import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import { readCheckpoint } from "../coordinator/checkpoint.js";
import { train } from "../coordinator/train.js";
import { FlatAdam } from "../shared/adam.js";
import { parseConfig } from "../shared/config.js";
import { drawIndices, gatherSamples, loadDataset, ringModes } from "../shared/data/index.js";
import { weightsHash } from "../shared/hash.js";
import { selectLoss } from "../shared/losses.js";
import { computeMicrotask } from "../shared/microtask.js";
import { buildModel, initWeights } from "../shared/models/index.js";
import { hashSeed, noiseSeed, SeedDomain } from "../shared/rng.js";
import { generateSamples } from "../shared/runner.js";
import { datasetSpec } from "../shared/schedule.js";
import { runAgon, tempDir, tinyRing } from "./helpers/cli.js";

const quiet = () => {};
const ringArgs = (dir: string, extra: string[] = []) => [
  "train",
  ...tinyRing({ steps: 20 }),
  "--run-dir",
  dir,
  "--json",
  ...extra,
];

function summary(stdout: string): { step: number; hashes: { G: string; D: string } } {
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

describe("agon train", () => {
  it("gives identical weight hashes for the same seed and different ones for another seed", async () => {
    const [a, b, c] = await Promise.all([
      runAgon(ringArgs(tempDir())),
      runAgon(ringArgs(tempDir())),
      runAgon(ringArgs(tempDir(), ["--seed", "2"])),
    ]);
    for (const r of [a, b, c]) expect(r.code, r.stderr).toBe(0);
    const [sa, sb, sc] = [a, b, c].map((r) => summary(r.stdout));
    expect(sa.step).toBe(20);
    expect(sb.hashes).toEqual(sa.hashes);
    expect(sc.hashes.G).not.toBe(sa.hashes.G);
    expect(sc.hashes.D).not.toBe(sa.hashes.D);
  });

  it("with K=4 in one process equals the definition: shard gradients summed along the tree ((0+1)+(2+3)) in float32, then ÷ K", async () => {
    const dir = tempDir();
    const cfg = parseConfig({
      run: { id: "def", dir },
      seed: 5,
      model: { name: "mlp", latentDim: 4, gHidden: [16], dHidden: [16] },
      loss: { name: "non-saturating" },
      dataset: { name: "ring", size: 256 },
      shards: 4,
      batch: 32,
      schedule: { kD: 2, kG: 1 },
      steps: 3,
      ema: false,
    });
    const result = await train(cfg, {
      backend: "wasm",
      fresh: true,
      log: quiet,
      progressOut: devNull(),
    });

    // The definition, written out independently of the trainer's state machine.
    const ds = await loadDataset(datasetSpec(cfg));
    const model = buildModel(cfg.model, ds.sampleShape);
    const loss = selectLoss(cfg.loss);
    const w = {
      G: initWeights(model.g, hashSeed(cfg.seed, SeedDomain.initG)),
      D: initWeights(model.d, hashSeed(cfg.seed, SeedDomain.initD)),
    };
    const adam = {
      G: new FlatAdam(model.g.size, cfg.optimizer.g),
      D: new FlatAdam(model.d.size, cfg.optimizer.d),
    };
    const plan = { count: ds.count, shards: 4, seed: cfg.seed };
    for (let step = 0; step < 3; step++) {
      for (let phase = 0; phase < 3; phase++) {
        const kind = phase < 2 ? "D" : "G";
        const g: Float32Array[] = [];
        for (let shard = 0; shard < 4; shard++) {
          const real =
            kind === "D"
              ? gatherSamples(ds, drawIndices(plan, shard, step * 2 + phase, 8))
              : undefined;
          const r = computeMicrotask(model, loss, {
            phase: kind,
            gWeights: w.G,
            dWeights: w.D,
            real,
            batch: 8,
            noiseSeed: noiseSeed(cfg.seed, step, phase, shard),
          });
          g.push(r.grad);
        }
        const left = Float32Array.from(g[0], (v, i) => v + g[1][i]);
        const right = Float32Array.from(g[2], (v, i) => v + g[3][i]);
        const root = Float32Array.from(left, (v, i) => v + right[i]);
        adam[kind].step(
          w[kind],
          Float32Array.from(root, (v) => v / 4),
        );
      }
    }
    expect(result.hashes).toEqual({ G: weightsHash(w.G), D: weightsHash(w.D) });
  });

  it("resumes from its newest checkpoint and continues exactly as if never stopped", async () => {
    const straight = tempDir();
    const stopped = tempDir();
    const every = ["--set", "checkpoint.every=3"];
    const full = await runAgon(ringArgs(straight, every));
    // Stop at step 9 (a checkpoint), then run the same command to step 20 in the same dir.
    const first = await runAgon(ringArgs(stopped, [...every, "--steps", "9"]));
    const resumed = await runAgon(ringArgs(stopped, every));
    for (const r of [full, first, resumed]) expect(r.code, r.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resumed from .*ckpt-00000009 \(step 9\)/);
    expect(summary(resumed.stdout).hashes).toEqual(summary(full.stdout).hashes);
  });

  it("learns the 8-Gaussian ring: ≥ 6 of 8 modes covered, ≥ 50% of samples within 3σ of a mode", async () => {
    const dir = tempDir();
    const cfgPath = join(dir, "ring.yaml");
    writeFileSync(
      cfgPath,
      readFileSync(join(import.meta.dirname, "../docs/examples/ring.yaml"), "utf8"),
    );
    const r = await runAgon(["train", "-c", cfgPath, "--run-dir", join(dir, "run"), "--json"], {
      timeoutMs: 290_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const { step } = summary(r.stdout);
    const ckpt = await readCheckpoint(join(dir, "run", `ckpt-${String(step).padStart(8, "0")}`));
    const cfg = ckpt.manifest.config;
    if (cfg.dataset.name !== "ring") throw new Error("expected the ring config");
    const model = buildModel(cfg.model, [2]);
    // Fresh noise, not the noise it trained on.
    const n = 2000;
    const samples = await generateSamples(model, ckpt.data.weights.G, 4242, n);
    const modes = ringModes(cfg.dataset.modes, cfg.dataset.radius);
    const perMode = new Array(modes.length).fill(0);
    let near = 0;
    for (let i = 0; i < n; i++) {
      const dists = modes.map(([mx, my]) =>
        Math.hypot(samples[2 * i] - mx, samples[2 * i + 1] - my),
      );
      const best = Math.min(...dists);
      if (best <= 3 * cfg.dataset.std) {
        near += 1;
        perMode[dists.indexOf(best)] += 1;
      }
    }
    // A mode counts as covered when it holds at least a fifth of its fair share.
    const covered = perMode.filter((c) => c >= n / modes.length / 5).length;
    expect(covered).toBeGreaterThanOrEqual(6);
    expect(near / n).toBeGreaterThanOrEqual(0.5);
    expect(existsSync(join(dir, "run", "samples", "latest.png"))).toBe(true);
  }, 300_000); // 5000 steps: ~40 s alone, several times that on a loaded 2-core machine

  it("trains a DCGAN on MNIST and writes sample grids, metrics and a checkpoint", async () => {
    const dir = tempDir();
    const r = await runAgon([
      "train",
      "--dataset",
      "mnist",
      "--model",
      "dcgan",
      "--set",
      "model.gFilters=8",
      "model.dFilters=8",
      "dataset.limit=512",
      "samples.every=2",
      "samples.count=16",
      "--steps",
      "4",
      "--batch",
      "16",
      "--shards",
      "2",
      "--run-dir",
      dir,
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const png = PNG.sync.read(readFileSync(join(dir, "samples", "step-00000004.png")));
    expect(png.width).toBeGreaterThanOrEqual(4 * 28);
    expect(png.height).toBeGreaterThanOrEqual(4 * 28);
    const metrics = readFileSync(join(dir, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(metrics.map((m) => `${m.step}${m.kind}`)).toEqual([
      "0D",
      "0G",
      "1D",
      "1G",
      "2D",
      "2G",
      "3D",
      "3G",
    ]);
    for (const m of metrics) expect(Number.isFinite(m.gLoss)).toBe(true);
    const ckpt = await readCheckpoint(join(dir, "ckpt-00000004"));
    expect(weightsHash(ckpt.data.weights.G)).toBe(summary(r.stdout).hashes.G);
  });
});

describe("agon train rejects bad input with one clear line", () => {
  const cases: Array<[string, string[], RegExp]> = [
    ["an unknown model", ["--model", "stylegan", "--dataset", "ring"], /model.*mlp, dcgan, resnet/],
    ["an unknown loss", ["--model", "mlp", "--dataset", "ring", "--loss", "l2"], /loss\.name/],
    [
      "an unknown dataset",
      ["--model", "mlp", "--dataset", "cifar"],
      /dataset.*mnist, fashion-mnist, folder, prepared, ring/,
    ],
    ["a negative batch", ["--model", "mlp", "--dataset", "ring", "--batch=-8"], /batch/],
    [
      "a missing folder",
      ["--model", "mlp", "--dataset", "folder", "--data-path", "/nonexistent/agon-images"],
      /\/nonexistent\/agon-images/,
    ],
    ["a missing config file", ["-c", "/nonexistent/run.yaml"], /\/nonexistent\/run\.yaml/],
    ["a misspelt flag", ["--stepz", "10"], /unknown option '--stepz' \(Did you mean --steps\?\)/],
    [
      "a backend that does not exist",
      ["--backend", "gpu"],
      /^agon: error: --backend "gpu": allowed choices are .*wasm, cpu; see --help$/,
    ],
  ];
  for (const [what, args, pattern] of cases) {
    it(`${what}`, async () => {
      const r = await runAgon(["train", "--steps", "1", "--run-dir", tempDir(), ...args]);
      expect(r.code).not.toBe(0);
      const lines = r.stderr.trim().split("\n");
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^agon: error: /);
      expect(lines[0]).toMatch(pattern);
    });
  }
});

function devNull(): NodeJS.WriteStream {
  return { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
}
