// A class-conditional dcgan as a user runs it: `agon train` = `agon local
// --workers 1` = `--workers 3` (K = 6) bit for bit, a resumed run equals an
// uninterrupted one (class embeddings, EMA and running statistics included; also with
// conditional batch norm in G),
// grids hold one row per class, and a dataset without classes is refused in one line.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import { encodePng } from "../shared/data/index.js";
import { contractRuns, runAgon, tempDir, tinyMnistK6 } from "./helpers/cli.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

/** A tiny conditional DCGAN on 120 MNIST digits (10 classes), K = 6 shards of batch 2. */
function condFlags(steps: number, sets: string[]): string[] {
  return tinyMnistK6("dcgan", steps, [
    "model.conditional=true",
    "model.gFilters=2",
    "model.dFilters=2",
    "ema.halfLifeImages=24",
    "samples.count=20",
    ...sets,
  ]);
}

const { hashesOf, local } = contractRuns(nats);

describe("a conditional dcgan keeps the determinism contract", () => {
  it("agon train = agon local --workers 1 = --workers 3 (K=6); the grid has a row per class", async () => {
    const flags = condFlags(2, []);
    const dir = tempDir();
    const reference = await hashesOf(["train", ...flags, "--run-dir", dir]);
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(config.model).toMatchObject({ conditional: true, classes: 10 });
    // 20 samples of 10 classes: 10 rows of 2 tiles of 28 px with 1 px gaps.
    const png = PNG.sync.read(readFileSync(join(dir, "samples", "latest.png")));
    expect([png.width, png.height]).toEqual([2 * 28 + 1, 10 * 28 + 9]);
    for (const n of [1, 3]) expect(await local(flags, n)).toEqual(reference);
  }, 600_000);

  it("a resumed run equals an uninterrupted one (rpgan + R1: the G phase's reals carry labels too)", async () => {
    const sets = ["checkpoint.every=2", "loss.name=rpgan", "loss.r1=1", "model.dNorm=spectral"];
    const straight = await hashesOf(["train", ...condFlags(4, sets), "--run-dir", tempDir()]);
    expect(straight.ema).toBeDefined();
    const dir = tempDir();
    const first = await hashesOf(["train", ...condFlags(2, sets), "--run-dir", dir]);
    expect(first).not.toEqual(straight);
    const resumed = await hashesOf(["train", ...condFlags(4, sets), "--run-dir", dir]);
    expect(resumed).toEqual(straight);
  }, 300_000);
});

describe("conditional batch norm in G (model.conditionalNorm) keeps the determinism contract", () => {
  const sets = ["model.conditionalNorm=true", "checkpoint.every=2"];
  it("agon train = agon local --workers 1 = --workers 3 (K=6); resumed = uninterrupted", async () => {
    const dir = tempDir();
    const straight = await hashesOf(["train", ...condFlags(4, sets), "--run-dir", tempDir()]);
    const first = await hashesOf(["train", ...condFlags(2, sets), "--run-dir", dir]);
    expect(first).not.toEqual(straight);
    expect(await hashesOf(["train", ...condFlags(4, sets), "--run-dir", dir])).toEqual(straight);
    for (const n of [1, 3]) expect(await local(condFlags(4, sets), n)).toEqual(straight);
  }, 600_000);
});

describe("a conditional model needs a labelled dataset", () => {
  it("refuses an unlabelled folder and a wrong model.classes in one line, exit 2", async () => {
    const flat = tempDir();
    const pixels = new Uint8Array(16 * 16).fill(128);
    for (let i = 0; i < 4; i++) writeFileSync(join(flat, `${i}.png`), encodePng(16, 16, 1, pixels));
    const cases: [string[], RegExp][] = [
      [
        ["--dataset", "folder", "--set", `dataset.path=${flat}`, "dataset.size=16"],
        /model\.conditional needs a labelled dataset, but the folder dataset .* has no classes/,
      ],
      [["--set", "model.classes=3"], /model\.classes is 3, but the mnist dataset has 10 classes/],
      [
        ["--set", "model.gNorm=none", "model.conditionalNorm=true"],
        /model\.conditionalNorm.*only goes with model\.conditional: true and model\.gNorm: batch/,
      ],
    ];
    for (const [extra, message] of cases) {
      const dir = tempDir();
      const r = await runAgon(["train", ...condFlags(1, []), ...extra, "--run-dir", dir]);
      expect(r.code).toBe(2);
      const lines = r.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^agon: error: /);
      expect(lines[0]).toMatch(message);
    }
  }, 120_000);
});
