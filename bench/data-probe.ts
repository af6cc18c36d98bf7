// One worker-like process for `npm run bench -- data`: opens a prepared dataset
// streamed (what workers do) or in memory (every row as float32), builds the
// microtask runner, runs D microtasks round-robin over the shards, and prints
// its start-up time (process start to first gradient) and peak RSS as JSON.
// Usage: tsx bench/data-probe.ts stream|memory DIR MICROTASKS
import { initBackend } from "../shared/backend.js";
import { parseConfig } from "../shared/config.js";
import { loadDataset, openDataset } from "../shared/data/index.js";
import { MicrotaskRunner } from "../shared/runner.js";
import { datasetSpec, microtaskSpec, withDatasetIdentity } from "../shared/schedule.js";

const [mode, dir, n] = process.argv.slice(2);
const cfg = withDatasetIdentity(
  parseConfig({
    model: { name: "mlp", latentDim: 16, gHidden: [32], dHidden: [32] },
    dataset: { name: "prepared", path: dir, xflip: true, cacheMB: 16 },
    shards: 8,
    batch: 128,
    steps: 1000,
  }),
);
await initBackend("cpu", () => {});
const spec = datasetSpec(cfg);
const data = mode === "memory" ? await loadDataset(spec) : await openDataset(spec);
const runner = new MicrotaskRunner(cfg, data);
const g = new Float32Array(runner.model.g.size).fill(0.01);
const d = new Float32Array(runner.model.d.size).fill(0.01);
let startupMs = 0;
const microtasks = Number(n);
const t0 = performance.now();
for (let i = 0; i < microtasks; i++) {
  runner.run(microtaskSpec(cfg, Math.floor(i / cfg.shards), 0, i % cfg.shards), g, d);
  if (i === 0) startupMs = performance.now(); // since process start (performance.timeOrigin)
}
const ms = (performance.now() - t0) / microtasks;
process.stdout.write(
  `${JSON.stringify({
    mode,
    count: runner.dataset.count,
    startupMs,
    maxRssMB: process.resourceUsage().maxRSS / 1024,
    microtasks,
    msPerMicrotask: ms,
  })}\n`,
);
