// `npx tsx bench/fd-modes.ts CKPT...`: `agon eval`'s FD (n 2000, latent seed 1133) of a
// checkpoint's raw and EMA G, sampled in eval mode (running statistics, as agon eval) and in
// train mode (each 500-sample chunk's own batch statistics, as PyTorch's dcgan example samples).
import * as tf from "@tensorflow/tfjs-core";
import { readCheckpointOrNewest } from "../coordinator/checkpoint.js";
import { initBackend } from "../shared/backend.js";
import { parseConfig } from "../shared/config.js";
import { computeFd } from "../shared/fid.js";
import { latentNoise } from "../shared/microtask.js";
import { buildModel, toTensors } from "../shared/models/index.js";
import { hashSeed, SeedDomain } from "../shared/rng.js";

await initBackend("wasm", () => {});
for (const dir of process.argv.slice(2)) {
  const found = await readCheckpointOrNewest(dir, () => {});
  const cfg = parseConfig(found.manifest.config);
  const model = buildModel(cfg.model, [28, 28, 1]);
  const n = 2000;
  const z = latentNoise(hashSeed(1133, SeedDomain.sampleNoise), n, model.latentDim);
  const parts: string[] = [];
  for (const [name, w] of [
    ["raw", found.data.weights.G],
    ["ema", found.data.ema],
  ] as const) {
    if (!w) continue;
    for (const training of [false, true]) {
      const images = new Float32Array(n * 784);
      for (let s = 0; s < n; s += 500) {
        const out = tf.tidy(() =>
          model.g.apply(
            toTensors(model.g, w),
            tf.tensor2d(z.subarray(s * model.latentDim, (s + 500) * model.latentDim), [
              500,
              model.latentDim,
            ]),
            { training },
          ),
        );
        images.set(out.dataSync(), s * 784);
        out.dispose();
      }
      parts.push(
        `${name}/${training ? "train" : "eval"} ${(await computeFd("mnist", images, n)).toFixed(2)}`,
      );
    }
  }
  process.stdout.write(`${dir} step ${found.manifest.step}: ${parts.join("  ")}\n`);
}
