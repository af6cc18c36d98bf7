// `agon sample` and `agon export`: what a checkpoint's generator makes, as a
// PNG grid, and the generator itself as a TensorFlow.js Layers model
// (model.json + weights.bin) that `tf.loadLayersModel` loads in a browser.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { type BackendName, initBackend } from "../shared/backend.js";
import { parseConfig, type RunConfig } from "../shared/config.js";
import { readManifest } from "../shared/data/index.js";
import { latentNoise } from "../shared/microtask.js";
import { buildModel, dcganLayout, type GanModel } from "../shared/models/index.js";
import { BN_EPS, BN_MOMENTUM } from "../shared/models/layers.js";
import { hashSeed, SeedDomain } from "../shared/rng.js";
import { generateSamples, samplesPng } from "../shared/runner.js";
import { type Manifest, readCheckpointOrNewest } from "./checkpoint.js";

/** `agon sample` / `agon export` failed; the message is the one line shown to the user. */
export class ExportError extends Error {
  override name = "ExportError";
}

/** The shape of one sample, from the config alone (no need to load the dataset). */
export function sampleShapeOf(cfg: RunConfig): number[] {
  const ds = cfg.dataset;
  switch (ds.name) {
    case "ring":
      return [2];
    case "mnist":
    case "fashion-mnist":
      return [28, 28, 1];
    case "folder":
      return [ds.size, ds.size, ds.channels];
    case "prepared":
      if (ds.resolution === undefined || ds.channels === undefined) {
        const m = readManifest(ds.path);
        return [m.resolution, m.resolution, m.channels];
      }
      return [ds.resolution, ds.resolution, ds.channels];
  }
}

export interface LoadedGenerator {
  dir: string;
  manifest: Manifest;
  cfg: RunConfig;
  model: GanModel;
  gWeights: Float32Array;
  /** Which weights gWeights are: the EMA generator or G as trained. */
  weights: GeneratorWeights;
}

export const GENERATOR_WEIGHTS = ["ema", "raw"] as const;
/** `--weights`: the EMA generator (config `ema`) or G's own weights. */
export type GeneratorWeights = (typeof GENERATOR_WEIGHTS)[number];

/**
 * Reads a checkpoint (verifying its checksums) and builds its model. `weights`:
 * "ema" (the default when the checkpoint has an EMA generator, an error when
 * asked for and absent) or "raw".
 */
export async function loadGenerator(
  checkpointDir: string,
  weights?: GeneratorWeights,
): Promise<LoadedGenerator> {
  const dir = resolve(checkpointDir);
  const { manifest, data } = await readCheckpointOrNewest(dir);
  const cfg = parseConfig(manifest.config, `${dir}/manifest.json config`);
  let model: GanModel;
  try {
    model = buildModel(cfg.model, sampleShapeOf(cfg));
  } catch (err) {
    throw new ExportError(`${dir}: ${(err as Error).message}`);
  }
  if (data.weights.G.length !== model.g.size) {
    throw new ExportError(
      `${dir}: G has ${data.weights.G.length} weights, but its config's model needs ${model.g.size}`,
    );
  }
  const chosen = weights ?? (data.ema ? "ema" : "raw");
  if (chosen === "ema" && !data.ema) {
    throw new ExportError(
      `${dir} has no EMA generator (the run had ema: false); use --weights raw`,
    );
  }
  const gWeights = chosen === "ema" ? data.ema! : data.weights.G;
  return { dir, manifest, cfg, model, gWeights, weights: chosen };
}

// ---------------------------------------------------------------------------
// agon sample

export interface SampleOptions {
  checkpoint: string;
  out: string;
  /** Number of samples; default the run's samples.count (so the grid matches the run's own). */
  n?: number;
  /** Seed of the fixed noise; default the run's seed. */
  seed?: number;
  backend?: BackendName;
  /** Default: "ema" when the checkpoint has one, else "raw". */
  weights?: GeneratorWeights;
  log?: (line: string) => void;
}

export interface SampleResult {
  out: string;
  count: number;
  seed: number;
  step: number;
  backend: string;
  /** The generated samples, [count, ...sampleShape] row-major. */
  samples: Float32Array;
}

/**
 * Writes a PNG of G's output on fixed noise: `latentNoise(hashSeed(seed,
 * SeedDomain.sampleNoise), n, latentDim)`, as the run's own sample grids. With
 * the defaults (the run's seed and samples.count, the run's backend) the file
 * is the same as the run's `samples/step-<step>.png`.
 */
export async function runSample(opts: SampleOptions): Promise<SampleResult> {
  const log = opts.log ?? (() => {});
  const gen = await loadGenerator(opts.checkpoint, opts.weights);
  const backend = await initBackend(opts.backend ?? "auto", log);
  const count = opts.n ?? gen.cfg.samples.count;
  const seed = opts.seed ?? gen.cfg.seed;
  const cfg: RunConfig = { ...gen.cfg, seed, samples: { ...gen.cfg.samples, count } };
  const png = await samplesPng(cfg, gen.model, gen.gWeights);
  const samples = await generateSamples(gen.model, gen.gWeights, seed, count);
  const out = resolve(opts.out);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, png);
  log(
    `sample: wrote ${out}: ${count} samples of shape ${gen.model.sampleShape.join("×")} from ${gen.dir} (step ${gen.manifest.step}, ${gen.weights} weights, seed ${seed}, ${backend})`,
  );
  return { out, count, seed, step: gen.manifest.step, backend, samples };
}

// ---------------------------------------------------------------------------
// agon export

/** What export writes next to the model in model.json's userDefinedMetadata. */
export interface ExportMetadata {
  agon: {
    format: 1;
    model: RunConfig["model"];
    latentDim: number;
    sampleShape: number[];
    /** Images come out in [-1, 1] (tanh); ring points are unbounded. */
    output: "image" | "points";
    seed: number;
    step: number;
    /** "ema": the EMA generator; "raw": G as trained. */
    weights: GeneratorWeights;
    configHash: string;
    /** How to make the run's own fixed-noise grid in JS: see docs. */
    sampleNoise: string;
  };
}

/**
 * The generator as a tf.layers model with the same computation as
 * `model.g.apply` in eval mode (batch norm with its running statistics):
 * MLP: dense(relu)… → dense(tanh for images, linear for points) → reshape;
 * DCGAN: dense → reshape → [batchNorm] → relu → per doubling
 * conv2dTranspose(4, 2, same) → [batchNorm] → relu, the last → tanh.
 * Layer and weight names follow our parameter names (g.bn0.mean →
 * g_bn0/moving_mean), and the weights are set by those names.
 */
export function generatorLayersModel(
  cfg: RunConfig["model"],
  model: GanModel,
  gWeights: Float32Array,
): tf.LayersModel {
  if (gWeights.length !== model.g.size) {
    throw new ExportError(`G weights: expected ${model.g.size} values, got ${gWeights.length}`);
  }
  const shape = model.sampleShape;
  const isImage = shape.length === 3;
  const zeros = "zeros" as const;
  const layers: tf.layers.Layer[] = [];
  if (cfg.name === "mlp") {
    const widths = [...cfg.gHidden, shape.reduce((a, b) => a * b, 1)];
    widths.forEach((units, i) => {
      const last = i === widths.length - 1;
      layers.push(
        tf.layers.dense({
          name: `g_dense${i}`,
          units,
          activation: last ? (isImage ? "tanh" : "linear") : "relu",
          kernelInitializer: zeros,
          ...(i === 0 ? { inputShape: [model.latentDim] } : {}),
        }),
      );
    });
    layers.push(tf.layers.reshape({ name: "g_reshape", targetShape: shape }));
  } else {
    const { res, sides, widthAt } = dcganLayout(cfg, shape);
    const bn = cfg.gNorm === "batch";
    const base = sides[0];
    const w0 = widthAt(cfg.gFilters, base);
    const norm = (name: string) =>
      tf.layers.batchNormalization({ name, axis: -1, epsilon: BN_EPS, momentum: 1 - BN_MOMENTUM });
    layers.push(
      tf.layers.dense({
        name: "g_dense0",
        units: base * base * w0,
        useBias: !bn,
        kernelInitializer: zeros,
        inputShape: [model.latentDim],
      }),
      tf.layers.reshape({ name: "g_reshape", targetShape: [base, base, w0] }),
    );
    if (bn) layers.push(norm("g_bn0"));
    layers.push(tf.layers.activation({ name: "g_relu0", activation: "relu" }));
    sides.slice(1).forEach((side, i) => {
      const last = side === res;
      layers.push(
        tf.layers.conv2dTranspose({
          name: `g_convT${i + 1}`,
          filters: last ? shape[2] : widthAt(cfg.gFilters, side),
          kernelSize: 4,
          strides: 2,
          padding: "same",
          useBias: last || !bn,
          activation: last ? "tanh" : "linear",
          kernelInitializer: zeros,
        }),
      );
      if (!last) {
        if (bn) layers.push(norm(`g_bn${i + 1}`));
        layers.push(tf.layers.activation({ name: `g_relu${i + 1}`, activation: "relu" }));
      }
    });
  }
  const net = tf.sequential({ name: "agon_generator", layers });
  // Our parameter and state names → the Layers weights' original names.
  const values = new Map<string, { shape: number[]; data: Float32Array }>();
  let offset = 0;
  for (const p of [...model.g.params, ...model.g.state]) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const [, layer, weight] = p.name.split(".");
    const tfName = { mean: "moving_mean", var: "moving_variance" }[weight] ?? weight;
    values.set(`g_${layer}/${tfName}`, {
      shape: p.shape,
      data: gWeights.subarray(offset, offset + n),
    });
    offset += n;
  }
  const tensors: tf.Tensor[] = [];
  try {
    if (net.weights.length !== values.size) {
      throw new ExportError(
        `layers model has ${net.weights.length} weights, the generator ${values.size}`,
      );
    }
    for (const w of net.weights) {
      const v = values.get(w.originalName);
      if (!v) throw new ExportError(`layers weight ${w.originalName} has no generator parameter`);
      if (w.shape.join(",") !== v.shape.join(",")) {
        throw new ExportError(`${w.originalName}: layers shape [${w.shape}], ours [${v.shape}]`);
      }
      tensors.push(tf.tensor(v.data, v.shape, "float32"));
    }
    net.setWeights(tensors);
  } catch (err) {
    net.dispose();
    throw err;
  } finally {
    tf.dispose(tensors);
  }
  return net;
}

export interface ExportOptions {
  checkpoint: string;
  out: string;
  backend?: BackendName;
  /** Default: "ema" when the checkpoint has one, else "raw". */
  weights?: GeneratorWeights;
  log?: (line: string) => void;
}

export interface ExportResult {
  out: string;
  modelJson: string;
  weightsBin: string;
  step: number;
  params: number;
  metadata: ExportMetadata;
}

/** Writes `<out>/model.json` and `<out>/weights.bin` (the tfjs Layers format). */
export async function runExport(opts: ExportOptions): Promise<ExportResult> {
  const log = opts.log ?? (() => {});
  const gen = await loadGenerator(opts.checkpoint, opts.weights);
  await initBackend(opts.backend ?? "cpu", log);
  const metadata: ExportMetadata = {
    agon: {
      format: 1,
      model: gen.cfg.model,
      latentDim: gen.model.latentDim,
      sampleShape: gen.model.sampleShape,
      output: gen.model.sampleShape.length === 3 ? "image" : "points",
      seed: gen.cfg.seed,
      step: gen.manifest.step,
      weights: gen.weights,
      configHash: gen.manifest.configHash,
      sampleNoise:
        "z ~ N(0,1), shape [n, latentDim]; the run's grids use agon's sfc32 noise from hashSeed(seed, 6)",
    },
  };
  const net = generatorLayersModel(gen.cfg.model, gen.model, gen.gWeights);
  let artifacts: tf.io.ModelArtifacts | undefined;
  try {
    await net.save(
      tf.io.withSaveHandler(async (a) => {
        artifacts = a;
        return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(a) };
      }),
      { includeOptimizer: false },
    );
  } finally {
    net.dispose();
  }
  if (!artifacts?.modelTopology || !artifacts.weightSpecs || !artifacts.weightData) {
    throw new ExportError("tfjs returned no model topology or weights to save");
  }
  const out = resolve(opts.out);
  await mkdir(out, { recursive: true });
  const weightData = tf.io.CompositeArrayBuffer.join(artifacts.weightData);
  const modelJson: tf.io.ModelJSON = {
    modelTopology: artifacts.modelTopology,
    format: artifacts.format ?? "layers-model",
    generatedBy: artifacts.generatedBy,
    convertedBy: "agon export",
    weightsManifest: [{ paths: ["weights.bin"], weights: artifacts.weightSpecs }],
    userDefinedMetadata: metadata as unknown as Record<string, object>,
  };
  const jsonPath = join(out, "model.json");
  const binPath = join(out, "weights.bin");
  await writeFile(binPath, new Uint8Array(weightData));
  await writeFile(jsonPath, `${JSON.stringify(modelJson)}\n`);
  log(
    `export: wrote ${jsonPath} and weights.bin (${gen.model.g.size} values, ${gen.weights} weights, step ${gen.manifest.step}); load it with tf.loadLayersModel("…/model.json")`,
  );
  return {
    out,
    modelJson: jsonPath,
    weightsBin: binPath,
    step: gen.manifest.step,
    params: gen.model.g.size,
    metadata,
  };
}

/**
 * A tfjs IOHandler that reads an exported model from disk in Node (the pure
 * @tensorflow/tfjs package has no file:// handler): `tf.loadLayersModel(exportedModelFiles(dir))`.
 */
export function exportedModelFiles(dir: string): tf.io.IOHandler {
  return {
    load: async () => {
      const json = JSON.parse(await readFile(join(dir, "model.json"), "utf8")) as tf.io.ModelJSON;
      return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const specs = manifest.flatMap((group) => group.weights);
        const buffers = await Promise.all(
          manifest.flatMap((group) => group.paths).map((p) => readFile(join(dir, p))),
        );
        const data = tf.io.CompositeArrayBuffer.join(
          buffers.map((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)),
        );
        return [specs, data];
      });
    },
  };
}

/** The latent vectors `agon sample` feeds G for this seed: for checking an export. */
export function sampleNoise(seed: number, count: number, latentDim: number): Float32Array {
  return latentNoise(hashSeed(seed, SeedDomain.sampleNoise), count, latentDim);
}
