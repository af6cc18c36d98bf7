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
  loadGenerator,
  runExport,
  runSample,
  sampleNoise,
} from "../coordinator/export.js";
import { train } from "../coordinator/train.js";
import { initBackend } from "../shared/backend.js";
import { registerExportCommand, registerSampleCommand } from "../shared/cli/commands/export.js";
import { parseConfig } from "../shared/config.js";
import { generateSamples } from "../shared/runner.js";
import { tempDir } from "./helpers/cli.js";

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
} as const;

const ckpts: Record<keyof typeof runs, string> = {
  ring: "",
  mlpMnist: "",
  dcgan: "",
  dcganPlain: "",
};

beforeAll(async () => {
  for (const name of Object.keys(runs) as Array<keyof typeof runs>) {
    ckpts[name] = await trainRun(runs[name]);
  }
  await initBackend(BACKEND);
}, 120_000);

describe("agon sample", () => {
  for (const name of ["ring", "dcgan"] as const) {
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

describe("agon export", () => {
  for (const [name, weights] of [
    ["ring", undefined],
    ["mlpMnist", undefined],
    ["dcgan", undefined],
    ["dcgan", "raw"],
    ["dcganPlain", undefined],
  ] as const) {
    it(`writes a Layers model that loads back and matches generateSamples within 1e-5 (${name}, ${weights ?? "default"} weights)`, async () => {
      const out = join(tempDir(), "model");
      const r = await runExport({ checkpoint: ckpts[name], out, backend: BACKEND, weights });
      expect(existsSync(join(out, "model.json"))).toBe(true);
      expect(existsSync(join(out, "weights.bin"))).toBe(true);

      const json = JSON.parse(readFileSync(join(out, "model.json"), "utf8"));
      expect(json.format).toBe("layers-model");
      expect(json.weightsManifest[0].paths).toEqual(["weights.bin"]);
      const gen = await loadGenerator(ckpts[name], weights);
      // What is exported: every parameter, and G's batch-norm running statistics.
      expect(readFileSync(join(out, "weights.bin")).byteLength).toBe(4 * gen.model.g.size);
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
