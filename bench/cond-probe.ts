// `npx tsx bench/cond-probe.ts CKPT...`: within-class diversity of MNIST generators, the
// signal that FD sees and class accuracy does not (issue 15's intra-class collapse).
//
// For each checkpoint and its EMA and raw G: per class c, CLASS_SAMPLES samples of class c
// (the run's fixed noise, eval mode), the share the FD classifier labels c, and their mean
// per-pixel standard deviation across samples (pixels in [-1, 1]). An unconditional G's
// 2000 samples are grouped by the classifier's prediction instead. The same deviation of
// CLASS_SAMPLES real training digits per class is printed first: a G that makes the same
// digit for every z of a class scores near 0, real digits about 0.19–0.37. Their class
// accuracy (the classifier's ceiling, 94.5–100 % per class) is printed beside it.
import { loadGenerator } from "../coordinator/export.js";
import { initBackend } from "../shared/backend.js";
import { loadDataset } from "../shared/data/index.js";
import { loadClassifier } from "../shared/features/classifier.js";
import { generateSamples } from "../shared/runner.js";
import { CLASS_SAMPLES, realClassAccuracy } from "./quality.js";

/** Mean over pixels of the standard deviation across the rows `rows` of `x` (`size` values each). */
function pixelStd(x: ArrayLike<number>, rows: number[], size: number): number {
  let total = 0;
  for (let p = 0; p < size; p++) {
    let s = 0;
    let s2 = 0;
    for (const r of rows) {
      const v = x[r * size + p];
      s += v;
      s2 += v * v;
    }
    const m = s / rows.length;
    total += Math.sqrt(Math.max(0, s2 / rows.length - m * m));
  }
  return total / size;
}

const fmt = (xs: number[], digits = 3) => xs.map((v) => v.toFixed(digits)).join(" ");
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

await initBackend("wasm", () => {});
const classifier = loadClassifier("mnist");
const real = await loadDataset({ name: "mnist", split: "train", limit: 10000 });
const size = real.sampleSize;
const realStd: number[] = [];
for (let c = 0; c < 10; c++) {
  const rows: number[] = [];
  for (let i = 0; i < real.count && rows.length < CLASS_SAMPLES; i++) {
    if (real.labels?.[i] === c) rows.push(i);
  }
  realStd.push(pixelStd(real.data, rows, size));
}
const realAcc = await realClassAccuracy("train", "wasm");
console.log(
  `real digits: accuracy min ${Math.min(...realAcc).toFixed(3)} mean ${mean(realAcc).toFixed(3)} (${fmt(realAcc, 3)}); std per class ${fmt(realStd)}`,
);

for (const ckpt of process.argv.slice(2)) {
  for (const weights of ["ema", "raw"] as const) {
    const gen = await loadGenerator(ckpt, weights);
    if (gen.model.classes === 0) {
      const n = 2000;
      const x = await generateSamples(gen.model, gen.gWeights, gen.cfg.seed, n);
      const pred = await classifier.predict(x, n);
      const std: string[] = [];
      for (let c = 0; c < 10; c++) {
        const rows = [...pred.keys()].filter((i) => pred[i] === c);
        std.push(rows.length > 1 ? `${rows.length}:${pixelStd(x, rows, size).toFixed(3)}` : "-");
      }
      console.log(
        `${ckpt} ${weights} (unconditional; count:std per predicted class) ${std.join(" ")}`,
      );
      continue;
    }
    const acc: number[] = [];
    const std: number[] = [];
    const all = Array.from({ length: CLASS_SAMPLES }, (_, i) => i);
    for (let c = 0; c < gen.model.classes; c++) {
      const labels = new Int32Array(CLASS_SAMPLES).fill(c);
      const x = await generateSamples(gen.model, gen.gWeights, gen.cfg.seed, CLASS_SAMPLES, labels);
      acc.push(await classifier.accuracy(x, new Uint8Array(CLASS_SAMPLES).fill(c), CLASS_SAMPLES));
      std.push(pixelStd(x, all, size));
    }
    console.log(
      `${ckpt} ${weights}: accuracy min ${Math.min(...acc).toFixed(3)} mean ${mean(acc).toFixed(3)} (${fmt(acc, 2)}); std mean ${mean(std).toFixed(3)} (${fmt(std)})`,
    );
  }
}
