// Sample sources for training: openDataset turns a DatasetSpec into a
// SampleSource, in memory for the small named sets and read from disk in
// pieces for a prepared dataset, each with a fingerprint of its content.

import { createHash } from "node:crypto";
import { DatasetError } from "./errors.js";
import { PreparedDataset } from "./prepared.js";
import { gatherSamples } from "./shard.js";
import type { Dataset, DatasetSpec, SampleSource } from "./types.js";

/** sha256 of an in-memory dataset: shape, sample values (float32 LE), labels and class names. */
export function datasetFingerprint(ds: Dataset): string {
  const h = createHash("sha256");
  h.update(JSON.stringify({ shape: ds.sampleShape, count: ds.count, classes: ds.classes ?? [] }));
  h.update(new Uint8Array(ds.data.buffer, ds.data.byteOffset, ds.count * ds.sampleSize * 4));
  if (ds.labels) h.update(ds.labels.subarray(0, ds.count));
  return h.digest("hex");
}

/** An in-memory Dataset as a SampleSource; the fingerprint is computed on first use. */
export function memorySource(ds: Dataset): SampleSource {
  let fingerprint: string | undefined;
  const image = ds.sampleShape.length === 3;
  const [, w, c] = ds.sampleShape;
  return {
    name: ds.name,
    sampleShape: ds.sampleShape,
    sampleSize: ds.sampleSize,
    count: ds.count,
    classes: ds.classes ?? (ds.labels ? labelNames(ds.labels, ds.count) : []),
    get fingerprint() {
      fingerprint ??= datasetFingerprint(ds);
      return fingerprint;
    },
    gather(indices, out, labels, flip) {
      gatherSamples(ds, indices, out);
      for (let k = 0; k < indices.length; k++) {
        if (labels) labels[k] = ds.labels ? ds.labels[indices[k]] : 0;
        if (flip?.[k] && image) mirrorRows(out, k * ds.sampleSize, ds.sampleSize, w, c);
      }
    },
  };
}

/** Class names "0".."max" for datasets whose labels are digits (MNIST-style). */
function labelNames(labels: Uint8Array, count: number): string[] {
  let max = 0;
  for (let i = 0; i < count; i++) if (labels[i] > max) max = labels[i];
  return Array.from({ length: max + 1 }, (_, i) => String(i));
}

/** Mirrors an HWC image left-right in place. */
function mirrorRows(a: Float32Array, base: number, size: number, w: number, c: number): void {
  for (let p = base; p < base + size; p += w * c) {
    for (let x = 0; x < w >> 1; x++) {
      const l = p + x * c;
      const r = p + (w - 1 - x) * c;
      for (let ch = 0; ch < c; ch++) {
        const t = a[l + ch];
        a[l + ch] = a[r + ch];
        a[r + ch] = t;
      }
    }
  }
}

/**
 * The samples a spec names, ready for training: a prepared dataset is opened
 * (manifest and labels only); the other names are loaded into memory by `load`.
 */
export async function openDataset(
  spec: DatasetSpec,
  load: (spec: DatasetSpec) => Promise<Dataset>,
): Promise<SampleSource> {
  if (spec.name === "prepared") {
    if (typeof spec.path !== "string" || spec.path === "")
      throw new DatasetError("prepared dataset: path must be a non-empty string");
    return PreparedDataset.open(spec.path, { cacheMB: spec.cacheMB, limit: spec.limit });
  }
  return memorySource(await load(spec));
}
