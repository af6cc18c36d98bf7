// `agon sample` and `agon export`: what a checkpoint's generator makes, as a
// PNG grid, and the generator itself as a TensorFlow.js Layers model
// (model.json + weights.bin) that `tf.loadLayersModel` loads in a browser.
import { existsSync, statSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, extname, join, resolve } from "node:path";
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";
import { type BackendName, initBackend } from "../shared/backend.js";
import { parseConfig, type RunConfig } from "../shared/config.js";
import { readManifest } from "../shared/data/index.js";
import { fileErrorCause } from "../shared/errno.js";
import { latentNoise } from "../shared/microtask.js";
import { buildModel, dcganLayout, type GanModel, resnetLayout } from "../shared/models/index.js";
import { BN_EPS, BN_MOMENTUM, LEAK } from "../shared/models/layers.js";
import { BLUR_TAPS } from "../shared/models/resnet.js";
import { hashSeed, SeedDomain } from "../shared/rng.js";
import { generateSamples, sampleClasses, samplesPng } from "../shared/runner.js";
import { type Manifest, readCheckpointOrNewest, rejectionLine } from "./checkpoint.js";

/** The image format `agon sample` writes for a file name: png (the run's own grid, exactly), jpeg or webp. */
function sampleFormat(out: string): "png" | "jpeg" | "webp" {
  const ext = extname(out).toLowerCase();
  if (ext === ".png") return "png";
  if (ext === ".jpg" || ext === ".jpeg") return "jpeg";
  if (ext === ".webp") return "webp";
  throw new ExportError(
    `--out ${out}: name the file .png, .jpg or .webp (the image format to write)`,
  );
}

/** Runs a write to `out`; a file-system error becomes one ExportError line naming the path. */
async function writeOut(out: string, write: () => Promise<unknown>): Promise<void> {
  try {
    await write();
  } catch (err) {
    throw new ExportError(`--out ${out}: cannot write (${fileErrorCause(err)})`);
  }
}

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
  /** The checkpoint read (a run dir given resolves to its newest valid checkpoint). */
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
  log: (line: string) => void = () => {},
): Promise<LoadedGenerator> {
  // A run dir resolves to its newest valid checkpoint, which every line then names.
  const found = await readCheckpointOrNewest(resolve(checkpointDir), (rejected, reason) =>
    log(rejectionLine(rejected, reason)),
  );
  const { dir, manifest, data } = found;
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
  /**
   * Conditional models: every sample of this class (0..classes−1). Default: the
   * run's grid, one row per class (sampleClasses). ExportError for an
   * unconditional model or a class out of range.
   */
  classIndex?: number;
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
  /** A conditional model's class of each sample; null for an unconditional one. */
  classes: Int32Array | null;
}

/**
 * Writes a PNG of G's output on fixed noise: `latentNoise(hashSeed(seed,
 * SeedDomain.sampleNoise), n, latentDim)`, as the run's own sample grids. With
 * the defaults (the run's seed and samples.count, the run's backend) the file
 * is the same as the run's `samples/step-<step>.png`.
 */
export async function runSample(opts: SampleOptions): Promise<SampleResult> {
  const log = opts.log ?? (() => {});
  const out = resolve(opts.out);
  const format = sampleFormat(out);
  const gen = await loadGenerator(opts.checkpoint, opts.weights, log);
  const k = gen.model.classes;
  if (opts.classIndex !== undefined && k === 0) {
    throw new ExportError(`--class: ${gen.dir}'s model is not conditional (model.conditional)`);
  }
  if (opts.classIndex !== undefined && !(opts.classIndex >= 0 && opts.classIndex < k)) {
    throw new ExportError(
      `--class ${opts.classIndex}: ${gen.dir}'s model has ${k} classes (0..${k - 1})`,
    );
  }
  const backend = await initBackend(opts.backend ?? "auto", log);
  const count = opts.n ?? gen.cfg.samples.count;
  const seed = opts.seed ?? gen.cfg.seed;
  const cfg: RunConfig = { ...gen.cfg, seed, samples: { ...gen.cfg.samples, count } };
  const classes =
    opts.classIndex !== undefined
      ? new Int32Array(count).fill(opts.classIndex)
      : sampleClasses(count, k);
  const custom = opts.classIndex !== undefined ? classes! : undefined;
  const png = await samplesPng(cfg, gen.model, gen.gWeights, custom);
  const samples = await generateSamples(gen.model, gen.gWeights, seed, count, custom);
  const bytes = format === "png" ? png : await sharp(png).toFormat(format).toBuffer();
  await writeOut(out, async () => {
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, bytes);
  });
  log(
    `sample: wrote ${out}: ${count} samples of shape ${gen.model.sampleShape.join("×")}${opts.classIndex !== undefined ? ` of class ${opts.classIndex}` : k > 0 ? gridClasses(count, k) : ""} from ${gen.dir} (step ${gen.manifest.step}, ${gen.weights} weights, seed ${seed}, ${backend})`,
  );
  return { out, count, seed, step: gen.manifest.step, backend, samples, classes };
}

/** How sample's line describes a conditional grid's rows (sampleClasses): all classes or which. */
function gridClasses(count: number, k: number): string {
  if (count >= k) return `, one row per class (${k})`;
  const which = count === 1 ? "class 0" : `classes 0–${count - 1}`;
  return `, one row per class: ${which} of ${k} (--n ${k} or more shows every class)`;
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
    /** Images: mlp and dcgan end in tanh, [-1, 1]; resnet is linear (as R3GAN; clip to [-1, 1] to show); ring points are unbounded. */
    output: "image" | "points";
    seed: number;
    step: number;
    /** "ema": the EMA generator; "raw": G as trained. */
    weights: GeneratorWeights;
    configHash: string;
    /** How to make the run's own fixed-noise grid in JS: see docs. */
    sampleNoise: string;
    /**
     * Conditional models: the class count; the model then takes two inputs,
     * z [n, latentDim] and the class [n, 1] (int32, 0..classes−1). 0: one input, z.
     */
    classes: number;
  };
}

/** A G tensor's values: `data` row-major in `shape`. */
interface NamedValues {
  shape: number[];
  data: Float32Array;
}

/**
 * The generator as a tf.layers model with the same computation as
 * `model.g.apply` in eval mode (batch norm with its running statistics):
 * MLP: dense(relu)… → dense(tanh for images, linear for points) → reshape;
 * DCGAN: dense → reshape → [batchNorm] → relu → per doubling
 * conv2dTranspose(4, 2, same) → [batchNorm] → relu, the last → tanh;
 * resnet: see resnetGenerator (a functional model: residual adds, fixed
 * resampling filters).
 * A conditional model has two inputs, z [n, latentDim] and the class [n, 1]
 * (int32): embedding(class) → flatten → concatenate with z → the network above.
 * Layer and weight names follow our parameter names (g.bn0.mean →
 * g_bn0/moving_mean), and the weights are set by those names.
 * Throws ExportError when gWeights does not fit the model.
 */
export function generatorLayersModel(
  cfg: RunConfig["model"],
  model: GanModel,
  gWeights: Float32Array,
): tf.LayersModel {
  if (gWeights.length !== model.g.size) {
    throw new ExportError(`G weights: expected ${model.g.size} values, got ${gWeights.length}`);
  }
  // Our parameter and state names → their values.
  const ours = new Map<string, NamedValues>();
  let offset = 0;
  for (const p of [...model.g.params, ...model.g.state]) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    ours.set(p.name, { shape: p.shape, data: gWeights.subarray(offset, offset + n) });
    offset += n;
  }
  const { net, values } =
    cfg.name === "resnet"
      ? resnetGenerator(cfg, model, ours)
      : sequentialGenerator(cfg, model, ours);
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

/**
 * The mlp and dcgan generators (a chain of layers, after the class input when
 * conditional) and the Layers weight name of each of our tensors (g.bn0.mean →
 * g_bn0/moving_mean).
 */
function sequentialGenerator(
  cfg: Exclude<RunConfig["model"], { name: "resnet" }>,
  model: GanModel,
  ours: Map<string, NamedValues>,
): { net: tf.LayersModel; values: Map<string, NamedValues> } {
  const shape = model.sampleShape;
  const isImage = shape.length === 3;
  const zeros = "zeros" as const;
  const layers: tf.layers.Layer[] = [];
  const conditional = model.classes > 0;
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
  } else if (conditional && cfg.conditionalNorm) {
    // A scale and shift per class has no tf.layers batchNormalization form.
    throw new ExportError(
      "agon export does not support model.conditionalNorm (conditional batch norm) yet (agon sample does)",
    );
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
        ...(conditional ? {} : { inputShape: [model.latentDim] }),
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
          kernelSize: cfg.kernel,
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
  const net = conditional
    ? conditionalGenerator(model, layers)
    : tf.sequential({ name: "agon_generator", layers });
  const values = new Map<string, NamedValues>();
  for (const [name, v] of ours) {
    const [, layer, weight] = name.split(".");
    const tfName = { mean: "moving_mean", var: "moving_variance" }[weight] ?? weight;
    values.set(`g_${layer}/${tfName}`, v);
  }
  return { net, values };
}

/**
 * The resnet generator (shared/models/resnet.ts) in standard tf.layers, as a
 * functional model, so a page needs no custom layer:
 * [class → embedding → flatten, concatenated to z] → dense (no bias, g.basis.linear)
 * → reshape [1, 1, W₀] → zeroPadding2d(base − 1) → depthwiseConv2d(base, valid),
 * whose kernel is g.basis.const flipped in both axes: the padded map is zero
 * but for its centre, so each output is exactly code[c]·basis[i, j, c] (R3GAN's
 * GenerativeBasis) → per stage [conv2d 1×1 when the width changes,
 * upSampling2d(2, nearest) → depthwiseConv2d(3, same) with the fixed,
 * non-trainable [1, 2, 1]⊗[1, 2, 1]/16 blur,] residual blocks x + f(x) as
 * add([x, f]) with f = conv2d 1×1 (+ bias) → leakyReLU(0.2) → conv2d 3×3 (+ bias)
 * → leakyReLU(0.2) → conv2d 1×1 → conv2d 1×1 to the image's channels (no tanh).
 * The ops are those of model.g.apply, so the outputs agree to float rounding
 * (fused bias adds); the blur filters are the only weights that are not G's
 * parameters (9·C values per upsampling).
 */
function resnetGenerator(
  cfg: Extract<RunConfig["model"], { name: "resnet" }>,
  model: GanModel,
  ours: Map<string, NamedValues>,
): { net: tf.LayersModel; values: Map<string, NamedValues> } {
  const { channels, sides, widths } = resnetLayout(cfg, model.sampleShape);
  const base = sides[0];
  const values = new Map<string, NamedValues>();
  const param = (name: string): NamedValues => {
    const v = ours.get(name);
    if (!v) throw new ExportError(`the resnet generator has no parameter ${name}`);
    return v;
  };
  const layerName = (ourName: string) => ourName.replaceAll(".", "_");
  type T = tf.SymbolicTensor;
  const apply = (layer: tf.layers.Layer, x: T | T[]) => layer.apply(x) as T;
  /** A stride-1 "same" conv2d with our kernel `<name>.kernel` and, when given, a bias parameter. */
  const conv = (x: T, name: string, bias?: string): T => {
    const kernel = param(`${name}.kernel`);
    const layer = layerName(name);
    values.set(`${layer}/kernel`, kernel);
    if (bias) values.set(`${layer}/bias`, param(bias));
    return apply(
      tf.layers.conv2d({
        name: layer,
        filters: kernel.shape[3],
        kernelSize: kernel.shape[0],
        padding: "same",
        useBias: bias !== undefined,
        kernelInitializer: "zeros",
      }),
      x,
    );
  };
  const leaky = (x: T, name: string) =>
    apply(tf.layers.leakyReLU({ name: `${layerName(name)}_lrelu`, alpha: LEAK }), x);
  /** x + conv3(lrelu(conv2(lrelu(conv1(x) + b1)) + b2)): residualBlock. */
  const block = (x: T, name: string): T => {
    let f = leaky(conv(x, `${name}.conv1`, `${name}.act1.bias`), `${name}.act1`);
    f = leaky(conv(f, `${name}.conv2`, `${name}.act2.bias`), `${name}.act2`);
    f = conv(f, `${name}.conv3`);
    return apply(tf.layers.add({ name: `${layerName(name)}_add` }), [x, f]);
  };
  /** nearest 2× then the fixed [1, 2, 1] blur: resnet.ts's upsample. */
  const upsample = (x: T, stage: number, c: number): T => {
    const up = apply(
      tf.layers.upSampling2d({
        name: `g_s${stage}_nearest`,
        size: [2, 2],
        interpolation: "nearest",
      }),
      x,
    );
    const name = `g_s${stage}_blur`;
    const taps = BLUR_TAPS.flatMap((a) => BLUR_TAPS.map((b) => (a * b) / 16));
    const kernel = new Float32Array(9 * c);
    for (const [k, t] of taps.entries()) kernel.fill(t, k * c, (k + 1) * c);
    values.set(`${name}/depthwise_kernel`, { shape: [3, 3, c, 1], data: kernel });
    return apply(
      tf.layers.depthwiseConv2d({
        name,
        kernelSize: 3,
        padding: "same",
        useBias: false,
        trainable: false,
        depthwiseInitializer: "zeros",
      }),
      up,
    );
  };

  const z = tf.input({ name: "z", shape: [model.latentDim] });
  const y = model.classes > 0 ? tf.input({ name: "class", shape: [1], dtype: "int32" }) : null;
  let h: T = z;
  if (y) {
    values.set("g_embed/embeddings", param("g.embed.embeddings"));
    const embed = tf.layers.embedding({
      name: "g_embed",
      inputDim: model.classes,
      outputDim: model.latentDim,
      embeddingsInitializer: "zeros",
    });
    const e = apply(tf.layers.flatten({ name: "g_embed_flat" }), apply(embed, y));
    h = apply(tf.layers.concatenate({ name: "g_input", axis: -1 }), [z, e]);
  }
  const w0 = widths[0];
  values.set("g_basis_linear/kernel", param("g.basis.linear"));
  h = apply(
    tf.layers.dense({
      name: "g_basis_linear",
      units: w0,
      useBias: false,
      kernelInitializer: "zeros",
    }),
    h,
  );
  h = apply(tf.layers.reshape({ name: "g_basis_code", targetShape: [1, 1, w0] }), h);
  h = apply(tf.layers.zeroPadding2d({ name: "g_basis_pad", padding: base - 1 }), h);
  // depthwise kernel[a, b, c] = basis[base−1−a, base−1−b, c].
  const basis = param("g.basis.const").data;
  const flipped = new Float32Array(basis.length);
  for (let a = 0; a < base; a++) {
    for (let b = 0; b < base; b++) {
      const from = ((base - 1 - a) * base + (base - 1 - b)) * w0;
      flipped.set(basis.subarray(from, from + w0), (a * base + b) * w0);
    }
  }
  values.set("g_basis/depthwise_kernel", { shape: [base, base, w0, 1], data: flipped });
  h = apply(
    tf.layers.depthwiseConv2d({
      name: "g_basis",
      kernelSize: base,
      padding: "valid",
      useBias: false,
      depthwiseInitializer: "zeros",
    }),
    h,
  );
  sides.forEach((_side, i) => {
    if (i > 0) {
      if (widths[i] !== widths[i - 1]) h = conv(h, `g.s${i}.up`);
      h = upsample(h, i, widths[i]);
    }
    for (let j = 0; j < cfg.blocks; j++) h = block(h, `g.s${i}.block${j}`);
  });
  h = conv(h, "g.out");
  if (h.shape[3] !== channels) {
    throw new ExportError(
      `resnet export: ${h.shape[3]} output channels, the images have ${channels}`,
    );
  }
  const net = tf.model({ name: "agon_generator", inputs: y ? [z, y] : [z], outputs: h });
  return { net, values };
}

/** Inputs z and class → embedding(class) ⧺ z → `layers`: a conditional G as a functional model. */
function conditionalGenerator(model: GanModel, layers: tf.layers.Layer[]): tf.LayersModel {
  const z = tf.input({ name: "z", shape: [model.latentDim] });
  const y = tf.input({ name: "class", shape: [1], dtype: "int32" });
  const embed = tf.layers.embedding({
    name: "g_embed",
    inputDim: model.classes,
    outputDim: model.latentDim,
    embeddingsInitializer: "zeros",
  });
  const e = tf.layers.flatten({ name: "g_embed_flat" }).apply(embed.apply(y));
  let h = tf.layers
    .concatenate({ name: "g_input", axis: -1 })
    .apply([z, e as tf.SymbolicTensor]) as tf.SymbolicTensor;
  for (const layer of layers) h = layer.apply(h) as tf.SymbolicTensor;
  return tf.model({ name: "agon_generator", inputs: [z, y], outputs: h });
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
  const out = resolve(opts.out);
  if (existsSync(out) && !statSync(out).isDirectory()) {
    throw new ExportError(
      `--out ${out}: is a file; give a directory (export writes model.json and weights.bin into it)`,
    );
  }
  const gen = await loadGenerator(opts.checkpoint, opts.weights, log);
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
      classes: gen.model.classes,
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
  await writeOut(out, () => mkdir(out, { recursive: true }));
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
  await writeOut(out, async () => {
    await writeFile(binPath, new Uint8Array(weightData));
    await writeFile(jsonPath, `${JSON.stringify(modelJson)}\n`);
  });
  // weights.bin also holds what the Layers model needs besides G's parameters: resnet's
  // fixed blur filters (constant kernels of its resampling layers).
  const stored = artifacts.weightSpecs.reduce(
    (sum, spec) => sum + spec.shape.reduce((a, b) => a * b, 1),
    0,
  );
  const fixed = stored - gen.model.g.size;
  log(
    `export: wrote ${jsonPath} and weights.bin (${gen.model.g.size} parameters${fixed > 0 ? ` + ${fixed} fixed filter taps` : ""}, ${gen.weights} weights of ${gen.dir}, step ${gen.manifest.step}); load it with tf.loadLayersModel(exportedModelFiles(dir)) from "agon" in Node, tf.loadLayersModel(".../model.json") in a browser (docs/API.md)`,
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
 * A tfjs IOHandler that reads an export (`dir`/model.json and the weight files it names) from
 * disk in Node, where the plain @tensorflow/tfjs package has no file:// handler:
 * `tf.loadLayersModel(exportedModelFiles(dir))`. Reading fails with Node's file error when
 * model.json or a weight file is missing.
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

/**
 * The latent vectors `agon sample` feeds G for `seed` (default: the run's seed, the export's
 * `userDefinedMetadata.agon.seed`): `count` × `latentDim` floats, row-major, N(0, 1) from
 * agon's sfc32 stream `hashSeed(seed, SeedDomain.sampleNoise)`. Feeding them to an export
 * reproduces `agon sample --seed seed --n count` within float rounding (1e-5).
 */
export function sampleNoise(seed: number, count: number, latentDim: number): Float32Array {
  return latentNoise(hashSeed(seed, SeedDomain.sampleNoise), count, latentDim);
}
