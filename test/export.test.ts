// `agon sample` and `agon export` on real checkpoints of real (tiny) runs: the
// grid reproduces the run's own, and the exported tfjs Layers model, loaded
// back from its files, computes what our generator computes.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { Command } from "commander";
import { PNG } from "pngjs";
import { beforeAll, describe, expect, it } from "vitest";
import { CheckpointError } from "../coordinator/checkpoint.js";
import {
  exportedModelFiles,
  generatorLayersModel,
  loadGenerator,
  runExport,
  runSample,
  sampleNoise,
} from "../coordinator/export.js";
import { train } from "../coordinator/train.js";
import { initBackend } from "../shared/backend.js";
import { registerExportCommand, registerSampleCommand } from "../shared/cli/commands/export.js";
import { parseConfig } from "../shared/config.js";
import { buildModel, initWeights, toTensors } from "../shared/models/index.js";
import { Rng } from "../shared/rng.js";
import { generateSamples } from "../shared/runner.js";
import { tempDir } from "./helpers/cli.js";
import { imageFolder } from "./helpers/images.js";

const quiet = () => {};
const BACKEND = "cpu" as const;

/** A sink for train()'s progress line. */
const nullOut = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;

async function trainRun(raw: Record<string, unknown>): Promise<string> {
  const dir = tempDir("agon-export-");
  const cfg = parseConfig({ ...raw, run: { id: "export", dir } });
  const result = await train(cfg, {
    backend: BACKEND,
    fresh: true,
    log: quiet,
    progressOut: nullOut,
  });
  return join(dir, `ckpt-${String(result.step).padStart(8, "0")}`);
}

const runs = {
  ring: {
    seed: 7,
    model: { name: "mlp", latentDim: 4, gHidden: [16, 16], dHidden: [16, 16] },
    dataset: { name: "ring", size: 256 },
    shards: 4,
    batch: 32,
    steps: 30,
    samples: { every: 10, count: 50 },
  },
  mlpMnist: {
    seed: 3,
    model: { name: "mlp", latentDim: 8, gHidden: [32], dHidden: [32] },
    dataset: { name: "mnist", limit: 64 },
    shards: 2,
    batch: 8,
    steps: 2,
    samples: { every: 1, count: 9 },
  },
  // Batch norm in G (running statistics exported), an EMA that differs visibly from G.
  dcgan: {
    seed: 11,
    model: { name: "dcgan", latentDim: 8, gFilters: 4, dFilters: 4 },
    dataset: { name: "mnist", limit: 64 },
    ema: { halfLifeImages: 16, rampup: null },
    shards: 2,
    batch: 8,
    steps: 3,
    samples: { every: 1, count: 16 },
  },
  dcganPlain: {
    seed: 12,
    model: {
      name: "dcgan",
      latentDim: 8,
      gFilters: 4,
      dFilters: 4,
      gNorm: "none",
      dNorm: "spectral",
    },
    dataset: { name: "mnist", limit: 64 },
    ema: false,
    shards: 2,
    batch: 8,
    steps: 2,
    samples: { every: 1, count: 16 },
  },
  // Class-conditional (10 MNIST classes): the grid has a row per class, two samples each.
  cond: {
    seed: 13,
    model: { name: "dcgan", latentDim: 8, gFilters: 4, dFilters: 4, conditional: true },
    dataset: { name: "mnist", limit: 64 },
    ema: { halfLifeImages: 16, rampup: null },
    shards: 2,
    batch: 8,
    steps: 2,
    samples: { every: 1, count: 20 },
  },
  // R3GAN-style resnet, 16×16 RGB: stages 4, 8, 16 with changing widths (1×1 convs between).
  resnet: {
    seed: 14,
    model: { name: "resnet", latentDim: 6, channels: [4, 3, 2], expansion: 1.5 },
    dataset: { name: "folder", path: imageFolder(16, 16), size: 16, channels: 3 },
    ema: { halfLifeImages: 16, rampup: null },
    shards: 2,
    batch: 8,
    steps: 3,
    samples: { every: 1, count: 8 },
  },
  // Class-conditional resnet, 32×32 grey, 3 classes, 2 blocks per stage.
  resnetCond: {
    seed: 15,
    model: {
      name: "resnet",
      latentDim: 6,
      channels: [4, 4, 3, 2],
      blocks: 2,
      conditional: true,
    },
    dataset: { name: "folder", path: imageFolder(32, 8, 3), size: 32, channels: 1 },
    ema: { halfLifeImages: 16, rampup: null },
    shards: 2,
    batch: 8,
    steps: 3,
    samples: { every: 1, count: 6 },
  },
} as const;

const ckpts: Record<keyof typeof runs, string> = {
  ring: "",
  mlpMnist: "",
  dcgan: "",
  dcganPlain: "",
  cond: "",
  resnet: "",
  resnetCond: "",
};

beforeAll(async () => {
  for (const name of Object.keys(runs) as Array<keyof typeof runs>) {
    ckpts[name] = await trainRun(runs[name]);
  }
  await initBackend(BACKEND);
}, 120_000);

describe("agon sample", () => {
  for (const name of ["ring", "dcgan", "cond"] as const) {
    it(`with the defaults reproduces the run's own grid byte for byte (${name})`, async () => {
      const out = join(tempDir(), "grid.png");
      const r = await runSample({ checkpoint: ckpts[name], out, backend: BACKEND });
      expect(r.count).toBe(runs[name].samples.count);
      expect(r.seed).toBe(runs[name].seed);
      const runDir = join(ckpts[name], "..");
      const own = join(runDir, "samples", `step-${String(r.step).padStart(8, "0")}.png`);
      expect(readFileSync(out).equals(readFileSync(own))).toBe(true);
    });
  }

  it("--n and --seed change the count and the noise; the same seed gives the same samples", async () => {
    const dir = tempDir();
    const a = await runSample({ checkpoint: ckpts.dcgan, out: join(dir, "a.png"), n: 64, seed: 5 });
    const b = await runSample({ checkpoint: ckpts.dcgan, out: join(dir, "b.png"), n: 64, seed: 5 });
    const c = await runSample({ checkpoint: ckpts.dcgan, out: join(dir, "c.png"), n: 64, seed: 6 });
    expect(a.samples.length).toBe(64 * 28 * 28);
    expect(b.samples).toEqual(a.samples);
    expect(c.samples).not.toEqual(a.samples);
    // A run dir stands for its newest valid checkpoint, as in agon eval.
    const fromRunDir = await runSample({
      checkpoint: join(ckpts.dcgan, ".."),
      out: join(dir, "d.png"),
      n: 64,
      seed: 5,
    });
    expect(fromRunDir.samples).toEqual(a.samples);
    const png = PNG.sync.read(readFileSync(join(dir, "a.png")));
    // 8×8 tiles of 28 px with 1 px gaps.
    expect([png.width, png.height]).toEqual([8 * 28 + 7, 8 * 28 + 7]);
  });
});

describe("agon sample on a conditional model", () => {
  it("draws one row per class by default and every sample of class N with --class N", async () => {
    const dir = tempDir();
    const grid = await runSample({ checkpoint: ckpts.cond, out: join(dir, "grid.png") });
    expect(Array.from(grid.classes!)).toEqual(Array.from({ length: 20 }, (_, i) => i >> 1));
    const png = PNG.sync.read(readFileSync(join(dir, "grid.png")));
    expect([png.width, png.height]).toEqual([2 * 28 + 1, 10 * 28 + 9]);
    const size = 28 * 28;
    const sevens = await runSample({
      checkpoint: ckpts.cond,
      out: join(dir, "7.png"),
      classIndex: 7,
    });
    expect(Array.from(sevens.classes!)).toEqual(new Array(20).fill(7));
    // Same noise: sample 14 of the grid is class 7 on the 15th latent, as in the --class 7 run.
    expect(sevens.samples.subarray(14 * size, 15 * size)).toEqual(
      grid.samples.subarray(14 * size, 15 * size),
    );
    // The class changes what G makes from the same latent.
    expect(sevens.samples.subarray(0, size)).not.toEqual(grid.samples.subarray(0, size));
    await expect(
      runSample({ checkpoint: ckpts.cond, out: join(dir, "x.png"), classIndex: 10 }),
    ).rejects.toThrow(/--class 10: .* has 10 classes \(0\.\.9\)/);
    await expect(
      runSample({ checkpoint: ckpts.dcgan, out: join(dir, "x.png"), classIndex: 0 }),
    ).rejects.toThrow(/--class: .* not conditional/);
  });

  it("shows every class when n >= classes (short rows end gray) and names the classes when n < classes", async () => {
    const dir = tempDir();
    const lines: string[] = [];
    const grid = await runSample({
      checkpoint: ckpts.cond,
      out: join(dir, "16.png"),
      n: 16,
      log: (l) => lines.push(l),
    });
    // 16 samples over 10 classes: classes 0–5 twice, 6–9 once; one row per class, 2 columns.
    expect(Array.from(grid.classes!)).toEqual([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9]);
    const png = PNG.sync.read(readFileSync(join(dir, "16.png")));
    expect([png.width, png.height]).toEqual([2 * 28 + 1, 10 * 28 + 9]);
    // Row 6 (class 6) has one sample; its second cell is padding gray.
    const at = (x: number, y: number) => png.data[(y * png.width + x) * 4];
    const y6 = 6 * 29;
    for (let y = y6; y < y6 + 28; y += 7)
      for (let x = 29; x < 57; x += 7) expect(at(x, y)).toBe(128);
    expect(lines.at(-1)).toMatch(/16 samples of shape 28×28×1, one row per class \(10\) from /);
    const few = await runSample({
      checkpoint: ckpts.cond,
      out: join(dir, "4.png"),
      n: 4,
      log: (l) => lines.push(l),
    });
    expect(Array.from(few.classes!)).toEqual([0, 1, 2, 3]);
    expect(lines.at(-1)).toMatch(
      /4 samples of shape 28×28×1, one row per class: classes 0–3 of 10 \(--n 10 or more shows every class\) from /,
    );
  });
});

describe("agon export", () => {
  for (const [name, weights] of [
    ["ring", undefined],
    ["mlpMnist", undefined],
    ["dcgan", undefined],
    ["dcgan", "raw"],
    ["dcganPlain", undefined],
    ["resnet", undefined],
    ["resnet", "raw"],
  ] as const) {
    it(`writes a Layers model that loads back and matches generateSamples within 1e-5 (${name}, ${weights ?? "default"} weights)`, async () => {
      const out = join(tempDir(), "model");
      const lines: string[] = [];
      const r = await runExport({
        checkpoint: ckpts[name],
        out,
        backend: BACKEND,
        weights,
        log: (l) => lines.push(l),
      });
      expect(existsSync(join(out, "model.json"))).toBe(true);
      expect(existsSync(join(out, "weights.bin"))).toBe(true);

      const json = JSON.parse(readFileSync(join(out, "model.json"), "utf8"));
      expect(json.format).toBe("layers-model");
      expect(json.weightsManifest[0].paths).toEqual(["weights.bin"]);
      const gen = await loadGenerator(ckpts[name], weights);
      // What is exported: every parameter, and G's batch-norm running statistics; a
      // resnet also the fixed 3×3 blur of each upsampling (9 values per channel).
      const blur = name === "resnet" ? 9 * (3 + 2) : 0;
      expect(readFileSync(join(out, "weights.bin")).byteLength).toBe(4 * (gen.model.g.size + blur));
      // Its line counts both, so they add up to weights.bin's floats.
      expect(lines.at(-1)).toContain(
        `(${gen.model.g.size} parameters${blur ? ` + ${blur} fixed filter taps` : ""}, `,
      );
      expect(r.metadata.agon.weights).toBe(
        weights ?? ("ema" in runs[name] && runs[name].ema === false ? "raw" : "ema"),
      );
      expect(json.userDefinedMetadata.agon).toMatchObject({
        latentDim: gen.model.latentDim,
        sampleShape: gen.model.sampleShape,
        seed: runs[name].seed,
        step: r.step,
      });

      const net = await tf.loadLayersModel(exportedModelFiles(out));
      const n = 20;
      const z = sampleNoise(gen.cfg.seed, n, gen.model.latentDim);
      const y = net.predict(tf.tensor2d(z, [n, gen.model.latentDim])) as tf.Tensor;
      expect(y.shape).toEqual([n, ...gen.model.sampleShape]);
      const got = y.dataSync() as Float32Array;
      y.dispose();
      net.dispose();
      const want = await generateSamples(gen.model, gen.gWeights, gen.cfg.seed, n);
      let maxDiff = 0;
      for (let i = 0; i < want.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
      }
      expect(maxDiff).toBeLessThanOrEqual(1e-5);
      // Not trivially zero: the generator makes varied output.
      expect(Math.max(...want) - Math.min(...want)).toBeGreaterThan(1e-3);
    });
  }

  for (const [name, classes] of [
    ["cond", [0, 3, 9]],
    ["resnetCond", [0, 1, 2]],
  ] as const) {
    it(`a conditional generator takes the class as a second input and reproduces agon sample --class N within 1e-5 (${name})`, async () => {
      const out = join(tempDir(), "model");
      const r = await runExport({ checkpoint: ckpts[name], out, backend: BACKEND });
      const gen = await loadGenerator(ckpts[name]);
      expect(r.metadata.agon.classes).toBe(gen.model.classes);
      expect(r.metadata.agon.weights).toBe("ema");
      const net = await tf.loadLayersModel(exportedModelFiles(out));
      const dim = gen.model.latentDim;
      expect(net.inputs.map((i) => i.shape)).toEqual([
        [null, dim],
        [null, 1],
      ]);
      const n = 6;
      const z = tf.tensor2d(sampleNoise(gen.cfg.seed, n, dim), [n, dim]);
      const outputs: Float32Array[] = [];
      for (const c of classes) {
        const want = await runSample({
          checkpoint: ckpts[name],
          out: join(tempDir(), "s.png"),
          n,
          classIndex: c,
          backend: BACKEND,
        });
        const y = net.predict([z, tf.fill([n, 1], c, "int32")]) as tf.Tensor;
        const got = y.dataSync() as Float32Array;
        y.dispose();
        let maxDiff = 0;
        for (let i = 0; i < got.length; i++)
          maxDiff = Math.max(maxDiff, Math.abs(got[i] - want.samples[i]));
        expect(maxDiff).toBeLessThanOrEqual(1e-5);
        outputs.push(got);
      }
      // The class input matters.
      expect(outputs[1]).not.toEqual(outputs[0]);
      z.dispose();
      net.dispose();
    });
  }

  // Trained for a few steps, a resnet's residual branches are still near zero (their last
  // conv starts at zero): these weights are perturbed so every branch and filter counts.
  for (const [size, channels, conditional] of [
    [16, 3, false],
    [32, 1, true],
    [28, 1, false],
  ] as const) {
    it(`a resnet generator with arbitrary weights (${size}×${size}×${channels}${conditional ? ", conditional" : ""}) exports to standard layers computing model.g.apply within 1e-5`, () => {
      const cfg = parseConfig({
        model: {
          name: "resnet",
          latentDim: 5,
          channels: size === 32 ? [4, 4, 3, 2] : [4, 3, 2],
          blocks: 2,
          expansion: 1.5,
          ...(conditional ? { conditional: true, classes: 3 } : {}),
        },
        dataset: { name: "folder", path: "unused", size, channels },
        steps: 1,
      }).model;
      const model = buildModel(cfg, [size, size, channels]);
      const w = initWeights(model.g, 1);
      const noise = new Rng(2).normalArray(w.length);
      for (let i = 0; i < w.length; i++) w[i] += 0.3 * noise[i];
      const n = 4;
      const z = new Rng(3).normalArray(n * 5);
      const labels = new Int32Array([0, 1, 2, 1]);
      const want = tf.tidy(() =>
        model.g
          .apply(toTensors(model.g, w), tf.tensor2d(z, [n, 5]), {
            training: false,
            labels: conditional ? tf.tensor1d(labels, "int32") : undefined,
          })
          .dataSync(),
      );
      const net = generatorLayersModel(cfg, model, w);
      // Only standard layers: the page needs no registration.
      const kinds = new Set(net.layers.map((l) => l.getClassName()));
      for (const k of kinds) {
        expect([
          "InputLayer",
          "Embedding",
          "Flatten",
          "Concatenate",
          "Dense",
          "Reshape",
          "ZeroPadding2D",
          "DepthwiseConv2D",
          "Conv2D",
          "LeakyReLU",
          "Add",
          "UpSampling2D",
        ]).toContain(k);
      }
      const got = tf.tidy(() => {
        const zT = tf.tensor2d(z, [n, 5]);
        const input = conditional ? [zT, tf.tensor2d(labels, [n, 1], "int32")] : zT;
        return (net.predict(input) as tf.Tensor).dataSync();
      });
      net.dispose();
      expect(got.length).toBe(n * size * size * channels);
      let maxDiff = 0;
      for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
      expect(maxDiff).toBeLessThanOrEqual(1e-5);
      expect(Math.max(...want) - Math.min(...want)).toBeGreaterThan(1);
    });
  }

  it("exports the EMA generator by default, G as trained with --weights raw; ema absent is an error", async () => {
    const ema = await loadGenerator(ckpts.dcgan);
    const raw = await loadGenerator(ckpts.dcgan, "raw");
    expect(ema.weights).toBe("ema");
    expect(raw.weights).toBe("raw");
    expect(ema.gWeights).not.toEqual(raw.gWeights);
    // The EMA copies G's state (batch-norm statistics) and averages only the parameters.
    const n = ema.model.g.trainableSize;
    expect(ema.gWeights.subarray(n)).toEqual(raw.gWeights.subarray(n));
    expect((await loadGenerator(ckpts.dcganPlain)).weights).toBe("raw");
    await expect(loadGenerator(ckpts.dcganPlain, "ema")).rejects.toThrow(/no EMA generator/);
  });

  it("loads from memory as a browser would (fetch model.json, then weights.bin)", async () => {
    const out = join(tempDir(), "model");
    await runExport({ checkpoint: ckpts.dcgan, out, backend: BACKEND });
    const json = JSON.parse(readFileSync(join(out, "model.json"), "utf8"));
    const bin = readFileSync(join(out, "weights.bin"));
    const net = await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json.modelTopology,
        weightSpecs: json.weightsManifest[0].weights,
        weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
      }),
    );
    expect(net.inputs[0].shape).toEqual([null, 8]);
    expect(net.outputs[0].shape).toEqual([null, 28, 28, 1]);
    net.dispose();
  });
});

describe("the commands", () => {
  const cli = () => {
    const program = new Command("agon").exitOverride().configureOutput({
      writeErr: () => {},
      writeOut: () => {},
    });
    registerSampleCommand(program);
    registerExportCommand(program);
    return program;
  };

  it("parse their flags and write their files", async () => {
    const dir = tempDir();
    await cli().parseAsync(
      [
        "sample",
        "--checkpoint",
        ckpts.ring,
        "--out",
        join(dir, "g.png"),
        "--n",
        "12",
        "--seed",
        "3",
        "--backend",
        BACKEND,
      ],
      { from: "user" },
    );
    expect(existsSync(join(dir, "g.png"))).toBe(true);
    await cli().parseAsync(["export", "--checkpoint", ckpts.ring, "--out", join(dir, "m")], {
      from: "user",
    });
    expect(existsSync(join(dir, "m", "model.json"))).toBe(true);
  });

  it("reject bad input with one line", async () => {
    await expect(
      cli().parseAsync(["sample", "--checkpoint", ckpts.ring, "--out", "x.png", "--n", "0"], {
        from: "user",
      }),
    ).rejects.toThrow(/--n.*expected an integer ≥ 1/);
    await expect(
      cli().parseAsync(["sample", "--checkpoint", ckpts.cond, "--out", "x.png", "--class", "x"], {
        from: "user",
      }),
    ).rejects.toThrow(/--class.*expected an integer ≥ 0/);
    await expect(cli().parseAsync(["export", "--out", "x"], { from: "user" })).rejects.toThrow(
      /--checkpoint/,
    );
    const missing = join(tempDir(), "ckpt-00000001");
    await expect(runSample({ checkpoint: missing, out: join(tempDir(), "x.png") })).rejects.toThrow(
      CheckpointError,
    );
    await expect(runExport({ checkpoint: missing, out: tempDir() })).rejects.toThrow(
      /ckpt-00000001: does not exist/,
    );
  });
});
