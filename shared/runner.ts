// Runs microtasks given their spec and the weights they need: the piece a
// worker and the single-process trainer share, so both compute the same bits.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import type { RunConfig } from "./config.js";
import {
  type Dataset,
  drawIndices,
  imageGridPng,
  memorySource,
  ringModes,
  type SampleSource,
  type ShardPlan,
  scatterPng,
} from "./data/index.js";
import { type GanLoss, selectLoss } from "./losses.js";
import {
  computeMicrotask,
  computeMicrotaskAsync,
  latentNoise,
  type MicrotaskResult,
} from "./microtask.js";
import { buildModel, type GanModel, ModelError, toTensors } from "./models/index.js";
import { roundValues } from "./precision.js";
import { hashSeed, Rng, SeedDomain } from "./rng.js";
import type { MicrotaskSpec } from "./schedule.js";

/**
 * Names the version of each network's weights a call passes (e.g. their
 * sha256): equal keys promise equal values, so the runner keeps that version's
 * weights on the device and uploads them once, not once per microtask.
 */
export interface WeightKeys {
  G: string;
  D: string;
}

export class MicrotaskRunner {
  readonly model: GanModel;
  /** Each network's weights on the device, for the last key seen. */
  private readonly resident: Partial<Record<"G" | "D", { key: string; tensors: tf.Tensor[] }>> = {};
  readonly loss: GanLoss;
  readonly plan: ShardPlan;
  /** Where real samples come from (in memory, or a prepared dataset read on demand). */
  readonly dataset: SampleSource;
  private readonly realBuffer: Float32Array;
  private readonly labelBuffer: Int32Array;
  private readonly flipBuffer: Uint8Array;

  constructor(
    readonly cfg: RunConfig,
    data: Dataset | SampleSource,
  ) {
    const dataset = "data" in data ? memorySource(data) : data;
    this.dataset = dataset;
    this.model = buildModel(cfg.model, dataset.sampleShape);
    if (this.model.classes > 0 && dataset.classes.length === 0) {
      throw new ModelError(
        `model.conditional needs a labelled dataset; ${dataset.name} has no classes`,
      );
    }
    if (dataset.classes.length > this.model.classes && this.model.classes > 0) {
      throw new ModelError(
        `the model has ${this.model.classes} classes but ${dataset.name} has ${dataset.classes.length}`,
      );
    }
    this.loss = selectLoss(cfg.loss);
    if (cfg.shards > dataset.count) {
      throw new RangeError(`shards (${cfg.shards}) exceeds the dataset's ${dataset.count} samples`);
    }
    this.plan = { count: dataset.count, shards: cfg.shards, seed: cfg.seed };
    const b = cfg.batch / cfg.shards;
    this.realBuffer = new Float32Array(b * dataset.sampleSize);
    this.labelBuffer = new Int32Array(b);
    this.flipBuffer = new Uint8Array(b);
  }

  /**
   * The microtask's result, its gradient rounded to transport.gradients (what
   * the coordinator decodes from the wire). The weights must already be as
   * transport.params carries them (see transportWeights).
   */
  run(
    spec: MicrotaskSpec,
    gWeights: Float32Array,
    dWeights: Float32Array,
    keys?: WeightKeys,
  ): MicrotaskResult {
    return this.rounded(
      computeMicrotask(this.model, this.loss, this.input(spec, gWeights, dWeights, keys)),
    );
  }

  /**
   * The same bits as run(), for callers that can wait: backends without a
   * synchronous readback (webgpu in Node) read back asynchronously in one
   * transfer; the others take run()'s direct path (no extra device copy).
   */
  async runAsync(
    spec: MicrotaskSpec,
    gWeights: Float32Array,
    dWeights: Float32Array,
    keys?: WeightKeys,
  ): Promise<MicrotaskResult> {
    if (tf.getBackend() !== "webgpu") return this.run(spec, gWeights, dWeights, keys);
    return this.rounded(
      await computeMicrotaskAsync(
        this.model,
        this.loss,
        this.input(spec, gWeights, dWeights, keys),
      ),
    );
  }

  /** Frees the weights kept on the device. */
  release(): void {
    for (const held of Object.values(this.resident)) tf.dispose(held.tensors);
    delete this.resident.G;
    delete this.resident.D;
  }

  /** `net`'s weights on the device for `key`: uploaded when the key changes, the old ones freed. */
  private onDevice(net: "G" | "D", key: string, weights: Float32Array): tf.Tensor[] {
    const held = this.resident[net];
    if (held?.key === key) return held.tensors;
    if (held) tf.dispose(held.tensors);
    const tensors = toTensors(net === "G" ? this.model.g : this.model.d, weights);
    this.resident[net] = { key, tensors };
    return tensors;
  }

  private rounded(result: MicrotaskResult): MicrotaskResult {
    return { ...result, grad: roundValues(this.cfg.transport.gradients, result.grad) };
  }

  private input(
    spec: MicrotaskSpec,
    gWeights: Float32Array,
    dWeights: Float32Array,
    keys: WeightKeys | undefined,
  ) {
    let real: Float32Array | undefined;
    let labels: Int32Array | undefined;
    if (spec.draw !== null) {
      const indices = drawIndices(this.plan, spec.shard, spec.draw, spec.batch);
      const flip = xflipMask(this.cfg, spec.noiseSeed, this.flipBuffer);
      this.dataset.gather(indices, this.realBuffer, this.labelBuffer, flip);
      real = this.realBuffer;
      labels = this.labelBuffer;
    }
    return {
      phase: spec.kind,
      gWeights,
      dWeights,
      real,
      labels,
      batch: spec.batch,
      noiseSeed: spec.noiseSeed,
      regularize: spec.regularize,
      augment: this.cfg.augment?.policy,
      augmentP: this.cfg.augment?.p,
      microbatch: this.cfg.microbatch,
      resident: keys && {
        g: this.onDevice("G", keys.G, gWeights),
        d: this.onDevice("D", keys.D, dWeights),
      },
    };
  }
}

/**
 * Which of a D microtask's real samples are mirrored (dataset.xflip): each with
 * probability 1/2, from the microtask's noise seed, so every process flips the
 * same samples. Undefined when xflip is off.
 */
function xflipMask(cfg: RunConfig, seed: number, out: Uint8Array): Uint8Array | undefined {
  if (!("xflip" in cfg.dataset) || !cfg.dataset.xflip) return undefined;
  const rng = new Rng(hashSeed(seed, SeedDomain.xflip));
  for (let i = 0; i < out.length; i++) out[i] = rng.nextU32() >>> 31;
  return out;
}

/**
 * Weights as workers receive them: rounded to transport.params (the master
 * weights stay float32). `agon train` computes its microtasks with these, so
 * it matches a distributed run bit for bit. fp32: the same array.
 */
export function transportWeights(cfg: RunConfig, weights: Float32Array): Float32Array {
  return roundValues(cfg.transport.params, weights);
}

/**
 * The classes of the run's fixed samples for a conditional model with
 * `classes` classes, in class order and spread evenly so that every class
 * appears when count >= classes: class c has floor(count / classes) samples,
 * one more for c < count mod classes (a multiple of classes: sample i has class
 * floor(i / (count / classes))). count < classes: sample i has class i (classes
 * 0..count−1). Null: unconditional.
 */
export function sampleClasses(count: number, classes: number): Int32Array | null {
  if (classes <= 0) return null;
  const base = Math.floor(count / classes);
  const extra = count % classes;
  const out = new Int32Array(count);
  let i = 0;
  for (let c = 0; c < classes && i < count; c++) {
    const m = base + (c < extra ? 1 : 0);
    out.fill(c, i, i + m);
    i += m;
  }
  return out;
}

/**
 * The grid cell of each of sampleClasses' samples in a grid of ceil(count / classes)
 * columns: one row per class, its samples from the left, short rows ending gray.
 */
export function sampleGridCells(labels: Int32Array, classes: number): Int32Array {
  const cols = Math.ceil(labels.length / classes);
  const cells = new Int32Array(labels.length);
  for (let i = 0; i < labels.length; i++) {
    const row = labels[i];
    cells[i] = i > 0 && labels[i - 1] === row ? cells[i - 1] + 1 : row * cols;
  }
  return cells;
}

/**
 * G's output on the run's fixed sample noise (the same every time, so grids are
 * comparable). A conditional G makes the classes `labels` (default
 * sampleClasses: one row per class); `agon sample --class N` passes N for all.
 * Read back asynchronously, which every backend supports (webgpu in Node has
 * no synchronous readback).
 */
export async function generateSamples(
  model: GanModel,
  gWeights: Float32Array,
  seed: number,
  count: number,
  labels?: Int32Array,
): Promise<Float32Array> {
  const z = latentNoise(hashSeed(seed, SeedDomain.sampleNoise), count, model.latentDim);
  const y = model.classes > 0 ? (labels ?? sampleClasses(count, model.classes)!) : null;
  if (y && (y.length !== count || y.some((c) => c < 0 || c >= model.classes))) {
    throw new RangeError(`expected ${count} classes in [0, ${model.classes})`);
  }
  const out = tf.tidy(() =>
    model.g.apply(toTensors(model.g, gWeights), tf.tensor2d(z, [count, model.latentDim]), {
      training: false,
      labels: y ? tf.tensor1d(y, "int32") : undefined,
    }),
  );
  const data = (await out.data()) as Float32Array;
  out.dispose();
  return data;
}

/** Writes a sample grid as samples/step-NNNNNNNN.png and samples/latest.png in the run dir. */
export function writeSampleGrid(runDir: string, step: number, png: Buffer): void {
  writeFileSync(join(runDir, "samples", `step-${String(step).padStart(8, "0")}.png`), png);
  writeFileSync(join(runDir, "samples", "latest.png"), png);
}

/** A PNG of the fixed-noise samples: an image grid, or a dot plot for 2-D points. */
export async function samplesPng(
  cfg: RunConfig,
  model: GanModel,
  gWeights: Float32Array,
  labels?: Int32Array,
): Promise<Buffer> {
  const samples = await generateSamples(model, gWeights, cfg.seed, cfg.samples.count, labels);
  return samplesGridPng(cfg, model, samples, labels !== undefined);
}

/**
 * The PNG for samples already generated (count = cfg.samples.count): a
 * conditional model's default classes (sampleClasses) give one row per class;
 * otherwise (and with `customClasses`) a square-ish grid.
 */
export function samplesGridPng(
  cfg: RunConfig,
  model: GanModel,
  samples: Float32Array,
  customClasses = false,
): Buffer {
  const count = cfg.samples.count;
  if (model.sampleShape.length === 3) {
    const shape = model.sampleShape as [number, number, number];
    if (model.classes > 0 && !customClasses) {
      const labels = sampleClasses(count, model.classes)!;
      const cols = Math.ceil(count / model.classes);
      return imageGridPng(samples, count, shape, cols, sampleGridCells(labels, model.classes));
    }
    return imageGridPng(samples, count, shape, Math.ceil(Math.sqrt(count)));
  }
  const ring = cfg.dataset.name === "ring" ? cfg.dataset : null;
  return scatterPng(samples, count, {
    size: 256,
    extent: ring ? ring.radius * 1.6 : 3,
    reference: ring ? ringModes(ring.modes, ring.radius) : undefined,
  });
}
