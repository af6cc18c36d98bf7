// augment.p keeps the determinism contract: with p = 0.5 (each DiffAugment op on
// each image by a Bernoulli draw from the microtask's seed) `agon train` equals
// `agon local --workers 3` (K = 6) bit for bit, and p = 1 is the run without p.
import { describe, expect, it } from "vitest";
import { contractRuns, runAgon, tempDir, tinyMnistK6 } from "./helpers/cli.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();
const { hashesOf, local } = contractRuns(nats);

/** A tiny dcgan on 120 MNIST digits, K = 6 shards of batch 2, all three DiffAugment ops. */
function flags(sets: string[], steps = 2): string[] {
  return tinyMnistK6("dcgan", steps, [
    "model.gFilters=2",
    "model.dFilters=2",
    "model.dNorm=none",
    "augment.policy=[color,translation,cutout]",
    ...sets,
  ]);
}

const train = (sets: string[]) => hashesOf(["train", ...flags(sets), "--run-dir", tempDir()]);

describe("augment.p is deterministic", () => {
  it("p = 0.5: agon train = agon local --workers 3 (K=6); p = 1 = no p; p changes the run", async () => {
    const half = await train(["augment.p=0.5"]);
    const withoutP = await train([]);
    expect(half.D).not.toEqual(withoutP.D);
    expect(await train(["augment.p=1"])).toEqual(withoutP);
    expect(await local(flags(["augment.p=0.5"]), 3)).toEqual(half);
  }, 600_000);

  it("a checkpoint written before augment.p existed (no p) resumes under augment.p=1 to the uninterrupted run", async () => {
    const sets = ["checkpoint.every=2"];
    const straight = await hashesOf(["train", ...flags(sets, 4), "--run-dir", tempDir()]);
    const dir = tempDir();
    await hashesOf(["train", ...flags(sets, 2), "--run-dir", dir]);
    // Another p is another config: the checkpoint is refused, in one line.
    const other = await runAgon(
      ["train", ...flags([...sets, "augment.p=0.5"], 4), "--run-dir", dir, "--backend", "wasm"],
      { timeoutMs: 170_000 },
    );
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/different config \(augment\.p/);
    const r = await runAgon(
      [
        "train",
        ...flags([...sets, "augment.p=1"], 4),
        "--run-dir",
        dir,
        "--backend",
        "wasm",
        "--json",
      ],
      { timeoutMs: 170_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    expect(summary.resumedFrom).toBe(2);
    expect(summary.hashes).toEqual(straight);
  }, 600_000);
});
