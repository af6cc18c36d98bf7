// The contract for state beyond weights: batch-norm running statistics,
// spectral-norm vectors and the EMA generator come out bit for bit the same
// from `agon train`, `agon local --workers 1` and `--workers 3` (K = 6), and
// a resumed run equals an uninterrupted one.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import { shapeImage } from "../bench/shapes.js";
import { Rng } from "../shared/rng.js";
import { contractRuns, runAgon, tempDir, tinyMnistK6 } from "./helpers/cli.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

/** A tiny DCGAN on 120 MNIST digits, K = 6 shards of batch 2. */
function dcganFlags(steps: number, sets: string[]): string[] {
  return tinyMnistK6("dcgan", steps, [
    "model.gFilters=2",
    "model.dFilters=2",
    "ema.halfLifeImages=24",
    ...sets,
  ]);
}

const { hashesOf, local } = contractRuns(nats);

describe("network state is deterministic", () => {
  for (const [what, sets, workers] of [
    ["batch norm in G, spectral norm in D, EMA", ["model.dNorm=spectral"], [1, 3]],
    ["batch norm in G and D (the default), EMA", [], [3]],
    [
      "batch norm in G and D, G phases on the D phase's fakes (schedule.reuseFakes=true)",
      ["schedule.reuseFakes=true"],
      [3],
    ],
  ] as const) {
    it(`agon train = agon local --workers ${workers.join(" = --workers ")} (K=6): ${what}`, async () => {
      const flags = dcganFlags(2, [...sets]);
      const reference = await hashesOf(["train", ...flags, "--run-dir", tempDir()]);
      expect(reference.ema).toMatch(/^[0-9a-f]{64}$/);
      for (const n of workers) expect(await local(flags, n)).toEqual(reference);
    }, 600_000);
  }

  it("a resumed run equals an uninterrupted one: running statistics, spectral vectors and EMA included", async () => {
    const sets = ["model.dNorm=spectral", "checkpoint.every=2"];
    const straight = await hashesOf(["train", ...dcganFlags(4, sets), "--run-dir", tempDir()]);
    const dir = tempDir();
    const first = await hashesOf(["train", ...dcganFlags(2, sets), "--run-dir", dir]);
    expect(first).not.toEqual(straight);
    const resumed = await hashesOf(["train", ...dcganFlags(4, sets), "--run-dir", dir]);
    expect(resumed).toEqual(straight);
  }, 300_000);
});

describe("other sizes and colour", () => {
  it("trains a 32×32 RGB dcgan on a generated folder of coloured shapes and samples its EMA generator", async () => {
    const data = join(tempDir(), "shapes");
    mkdirSync(data);
    const rng = new Rng(3);
    for (let i = 0; i < 24; i++) writeFileSync(join(data, `s${i}.png`), shapeImage(rng, 32));
    const dir = tempDir();
    const flags = [
      "--dataset",
      "folder",
      "--data-path",
      data,
      "--model",
      "dcgan",
      "--set",
      "dataset.channels=3",
      "dataset.size=32",
      "model.latentDim=4",
      "model.gFilters=2",
      "model.dFilters=2",
      "--steps",
      "2",
      "--shards",
      "2",
      "--batch",
      "8",
      "--run-dir",
      dir,
    ];
    const hashes = await hashesOf(["train", ...flags]);
    expect(hashes.ema).toMatch(/^[0-9a-f]{64}$/);
    const out = join(dir, "grid.png");
    const r = await runAgon([
      "sample",
      "--checkpoint",
      join(dir, "ckpt-00000002"),
      "--n",
      "4",
      "--out",
      out,
      "--backend",
      "wasm",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/4 samples of shape 32×32×3 .*ema weights/);
    const png = PNG.sync.read(readFileSync(out));
    expect([png.width, png.height]).toEqual([2 * 32 + 1, 2 * 32 + 1]);
  }, 180_000);
});
