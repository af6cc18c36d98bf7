// The modern recipe (rpgan with R1/R2 and lazy regularisation, DiffAugment) keeps the
// determinism contract: `agon train` = `agon local --workers 1` = `--workers 3`
// (K = 6), bit for bit, and a resumed run equals an uninterrupted one.
import { describe, expect, it } from "vitest";
import { contractRuns, tempDir, tinyMnistK6 } from "./helpers/cli.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

const DCGAN = ["dcgan", "model.gFilters=2", "model.dFilters=2", "model.dNorm=none"];
/** R3GAN's residual G and D (stages at 7, 14, 28 px), tiny widths, a 1.5× branch, class-conditional. */
const RESNET = [
  "resnet",
  "model.channels=[4,3,2]",
  "model.expansion=1.5",
  "model.conditional=true",
];

/** A tiny model on 120 MNIST digits, K = 6 shards of batch 2, trained with rpgan + R1/R2. */
function recipeFlags(steps: number, sets: string[], model = DCGAN): string[] {
  return tinyMnistK6(
    model[0],
    steps,
    [
      ...model.slice(1),
      "loss.r1=0.5",
      "loss.r2=0.5",
      "loss.regEvery=2",
      "schedule.kD=2",
      "augment.policy=[color,translation,cutout]",
      ...sets,
    ],
    ["--loss", "rpgan"],
  );
}

const { hashesOf, local } = contractRuns(nats);

describe("the modern recipe is deterministic", () => {
  it("rpgan + R1/R2 (lazy) + DiffAugment: agon train = agon local --workers 1 = --workers 3 (K=6)", async () => {
    const flags = recipeFlags(2, []);
    const reference = await hashesOf(["train", ...flags, "--run-dir", tempDir()]);
    // The penalties and the G phase's reals change the trajectory.
    const noPenalty = await hashesOf([
      "train",
      ...recipeFlags(2, ["loss.r1=0", "loss.r2=0"]),
      "--run-dir",
      tempDir(),
    ]);
    expect(noPenalty.D).not.toEqual(reference.D);
    const noAugment = await hashesOf([
      "train",
      ...recipeFlags(2, ["augment.policy=[color]"]),
      "--run-dir",
      tempDir(),
    ]);
    expect(noAugment.D).not.toEqual(reference.D);
    for (const n of [1, 3]) expect(await local(flags, n)).toEqual(reference);
  }, 600_000);

  it("rpgan + R1/R2 + DiffAugment: a resumed run equals an uninterrupted one", async () => {
    const sets = ["checkpoint.every=2"];
    const straight = await hashesOf(["train", ...recipeFlags(4, sets), "--run-dir", tempDir()]);
    const dir = tempDir();
    const first = await hashesOf(["train", ...recipeFlags(2, sets), "--run-dir", dir]);
    expect(first).not.toEqual(straight);
    const resumed = await hashesOf(["train", ...recipeFlags(4, sets), "--run-dir", dir]);
    expect(resumed).toEqual(straight);
  }, 300_000);

  it("resnet × conditional × rpgan + R1/R2 + DiffAugment: agon train = agon local --workers 1 = --workers 3 (K=6); a resumed run equals an uninterrupted one", async () => {
    const sets = ["checkpoint.every=2"];
    const straight = await hashesOf([
      "train",
      ...recipeFlags(4, sets, RESNET),
      "--run-dir",
      tempDir(),
    ]);
    for (const n of [1, 3]) expect(await local(recipeFlags(4, sets, RESNET), n)).toEqual(straight);
    const dir = tempDir();
    const first = await hashesOf(["train", ...recipeFlags(2, sets, RESNET), "--run-dir", dir]);
    expect(first).not.toEqual(straight);
    const resumed = await hashesOf(["train", ...recipeFlags(4, sets, RESNET), "--run-dir", dir]);
    expect(resumed).toEqual(straight);
  }, 600_000);
});
