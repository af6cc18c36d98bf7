// Agon from a program (docs/API.md): train a small GAN, stop, resume it,
// check that the resumed run has the weights of one uninterrupted run, load
// its checkpoint and write a sample grid. Run it from a directory where the
// package is installed (`npm install agon-*.tgz`):
//   npx tsc && node api.js /tmp/agon-api-example
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadCheckpoint, type RunConfigInput, sample, train, weightsHash } from "agon";

const work = process.argv[2] ?? mkdtempSync(join(tmpdir(), "agon-api-"));
const quiet = { backend: "cpu" as const, log: () => {} };

// A config is a typed object; what it leaves out gets the defaults of docs/CONFIG.md.
const config: RunConfigInput = {
  run: { id: "api", dir: join(work, "interrupted") },
  seed: 7,
  model: { name: "mlp", latentDim: 4, gHidden: [16, 16], dHidden: [16, 16] },
  dataset: { name: "ring", size: 512 },
  shards: 4,
  batch: 32,
  steps: 10,
  checkpoint: { every: 5, keep: 2 },
  samples: { every: 10, count: 16 },
};

// 10 steps, then the same run extended to 20: it resumes from the step-10 checkpoint.
const first = await train(config, quiet);
const resumed = await train({ ...config, steps: 20 }, quiet);
// 20 steps in one go, in another run dir: the same weights, bit for bit.
const straight = await train(
  { ...config, steps: 20, run: { id: "api", dir: join(work, "straight") } },
  quiet,
);
if (resumed.resumedFrom !== first.step) throw new Error("the second run did not resume");
if (resumed.hashes.G !== straight.hashes.G || resumed.hashes.D !== straight.hashes.D) {
  throw new Error("a resumed run must end with the weights of an uninterrupted one");
}

// The newest checkpoint of the run dir, verified against its sha256 sums.
const checkpoint = await loadCheckpoint(join(work, "interrupted"));
if (weightsHash(checkpoint.weights.G) !== resumed.hashes.G) {
  throw new Error("the checkpoint holds other weights than the run ended with");
}

// G on the run's fixed noise, as a PNG grid (the run's own samples/step-20.png).
const grid = await sample({
  checkpoint: checkpoint.dir,
  out: join(work, "samples.png"),
  n: 16,
  backend: "cpu",
});

console.log(
  JSON.stringify({
    steps: [first.step, resumed.step],
    resumedFrom: resumed.resumedFrom,
    hashes: resumed.hashes,
    checkpoint: { dir: checkpoint.dir, step: checkpoint.step, model: checkpoint.config.model.name },
    sample: { out: grid.out, count: grid.count, step: grid.step },
  }),
);
