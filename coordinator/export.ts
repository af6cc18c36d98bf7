// `agon sample` and `agon export`: what a checkpoint's generator makes, as a
// PNG grid, and the generator itself as a TensorFlow.js Layers model
// (model.json + weights.bin) that `tf.loadLayersModel` loads in a browser.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { type BackendName, initBackend } from "../shared/backend.js";
import { parseConfig, type RunConfig } from "../shared/config.js";
import { latentNoise } from "../shared/microtask.js";
import { buildModel, type GanModel } from "../shared/models.js";
import { hashSeed, SeedDomain } from "../shared/rng.js";
import { generateSamples, samplesPng } from "../shared/runner.js";
import { type Manifest, readCheckpoint } from "./checkpoint.js";

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
  }
}

export interface LoadedGenerator {
  dir: string;
  manifest: Manifest;
  cfg: RunConfig;
  model: GanModel;
  gWeights: Float32Array;
}

/** Reads a checkpoint (verifying its checksums) and builds its model. */
export async function loadGenerator(checkpointDir: string): Promise<LoadedGenerator> {
  const dir = resolve(checkpointDir);
  const { manifest, data } = await readCheckpoint(dir);
  const cfg = parseConfig(manifest.config, `${dir}/manifest.json config`);
  const model = buildModel(cfg.model, sampleShapeOf(cfg));
  if (data.weights.G.length !== model.g.size) {
    throw new ExportError(
      `${dir}: G has ${data.weights.G.length} weights, but its config's model needs ${model.g.size}`,
    );
  }
  return { dir, manifest, cfg, model, gWeights: data.weights.G };
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
  const gen = await loadGenerator(opts.checkpoint);
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
    `sample: wrote ${out}: ${count} samples of shape ${gen.model.sampleShape.join("×")} from ${gen.dir} (step ${gen.manifest.step}, seed ${seed}, ${backend})`,
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
    configHash: string;
    /** How to make the run's own fixed-noise grid in JS: see docs. */
    sampleNoise: string;
  };
}

/**
 * The generator as a tf.layers model with the same computation as `model.g.apply`:
 * MLP: dense(relu)… → dense(tanh for images, linear for points) → reshape;
 * DCGAN: dense(relu) → reshape [7,7,2f] → conv2dTranspose(f, 5, 2, same, relu)
 * → conv2dTranspose(C, 5, 2, same, tanh). Weights are set from the flat array
 * in the documented parameter order (tfjs layers use the same shapes).
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
    const f = cfg.gFilters;
    const channels = shape[2];
    layers.push(
      tf.layers.dense({
        name: "g_dense0",
        units: 7 * 7 * 2 * f,
        activation: "relu",
        kernelInitializer: zeros,
        inputShape: [model.latentDim],
      }),
      tf.layers.reshape({ name: "g_reshape", targetShape: [7, 7, 2 * f] }),
      tf.layers.conv2dTranspose({
        name: "g_convT1",
        filters: f,
        kernelSize: 5,
        strides: 2,
        padding: "same",
        activation: "relu",
        kernelInitializer: zeros,
      }),
      tf.layers.conv2dTranspose({
        name: "g_convT2",
        filters: channels,
        kernelSize: 5,
        strides: 2,
        padding: "same",
        activation: "tanh",
        kernelInitializer: zeros,
      }),
    );
  }
  const net = tf.sequential({ name: "agon_generator", layers });
  const specs = model.g.params;
  if (net.weights.length !== specs.length) {
    net.dispose();
    throw new ExportError(
      `layers model has ${net.weights.length} weights, the generator ${specs.length}`,
    );
  }
  let offset = 0;
  const tensors = specs.map((p, i) => {
    const expected = net.weights[i].shape;
    if (expected.join(",") !== p.shape.join(",")) {
      throw new ExportError(
        `${p.name}: layers weight ${net.weights[i].name} has shape [${expected}], ours [${p.shape}]`,
      );
    }
    const n = p.shape.reduce((a, b) => a * b, 1);
    const t = tf.tensor(gWeights.subarray(offset, offset + n), p.shape, "float32");
    offset += n;
    return t;
  });
  net.setWeights(tensors);
  tf.dispose(tensors);
  return net;
}

export interface ExportOptions {
  checkpoint: string;
  out: string;
  backend?: BackendName;
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
  const gen = await loadGenerator(opts.checkpoint);
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
    `export: wrote ${jsonPath} and weights.bin (${gen.model.g.size} parameters, step ${gen.manifest.step}); load it with tf.loadLayersModel("…/model.json")`,
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
