// Entry point of the data layer: loadDataset turns a DatasetSpec into an in-memory
// Float32Array dataset; sharding, sample selection and PNG writers are re-exported.

import { DatasetError } from "./errors.js";
import { loadFolderDataset } from "./folder.js";
import { loadIdxDataset } from "./idx-datasets.js";
import { PreparedDataset } from "./prepared.js";
import { loadRingDataset } from "./ring.js";
import { openDataset as openSource } from "./source.js";
import { DATASET_NAMES, type Dataset, type DatasetSpec, type SampleSource } from "./types.js";

export { DatasetError } from "./errors.js";
export { listFolderDataset } from "./folder.js";
export { encodePng, imageGridPng, scatterPng } from "./png.js";
export { PreparedDataset, readManifest } from "./prepared.js";
export { ringModes } from "./ring.js";
export { drawIndices, gatherSamples, type ShardPlan, shardRange } from "./shard.js";
export { memorySource } from "./source.js";
export {
  DATASET_NAMES,
  type Dataset,
  type DatasetSpec,
  type SampleSource,
} from "./types.js";

/**
 * The samples a spec names, ready for training: a prepared dataset is read from
 * disk on demand (memory bounded by its cacheMB); the others are loaded into memory.
 */
export function openDataset(spec: DatasetSpec): Promise<SampleSource> {
  return openSource(spec, loadDataset);
}

function requireInt(dataset: string, field: string, value: unknown, min: number): void {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new DatasetError(
      `${dataset} dataset: ${field} must be an integer >= ${min}, got ${JSON.stringify(value)}`,
    );
  }
}

function requireNumber(dataset: string, field: string, value: unknown): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new DatasetError(
      `${dataset} dataset: ${field} must be a finite number >= 0, got ${JSON.stringify(value)}`,
    );
  }
}

function requireSplit(dataset: string, split: unknown): void {
  if (split !== "train" && split !== "test") {
    throw new DatasetError(
      `${dataset} dataset: split must be "train" or "test", got ${JSON.stringify(split)}`,
    );
  }
}

/**
 * Loads a dataset fully into memory. Specs often come from user config, so fields
 * are re-checked at run time and every failure is a single-line DatasetError.
 */
export async function loadDataset(spec: DatasetSpec): Promise<Dataset> {
  const name = (spec as { name?: unknown }).name;
  const limit = (spec as { limit?: unknown }).limit;
  if (limit !== undefined) requireInt(String(name), "limit", limit, 1);
  switch (spec.name) {
    case "mnist":
    case "fashion-mnist":
      requireSplit(spec.name, spec.split);
      return loadIdxDataset(spec.name, spec.split, spec.limit);
    case "folder":
      if (typeof spec.path !== "string" || spec.path === "") {
        throw new DatasetError("folder dataset: path must be a non-empty string");
      }
      if (spec.channels !== 1 && spec.channels !== 3) {
        throw new DatasetError(
          `folder dataset: channels must be 1 or 3, got ${JSON.stringify(spec.channels)}`,
        );
      }
      requireInt("folder", "size", spec.size, 1);
      return loadFolderDataset(spec.path, spec.channels, spec.size, spec.limit);
    case "prepared":
      return loadPreparedInMemory(spec.path, spec.limit);
    case "ring":
      requireInt("ring", "size", spec.size, 1);
      requireInt("ring", "modes", spec.modes, 1);
      requireNumber("ring", "radius", spec.radius);
      requireNumber("ring", "std", spec.std);
      requireInt("ring", "seed", spec.seed, 0);
      return loadRingDataset(spec.size, spec.modes, spec.radius, spec.std, spec.seed);
    default:
      throw new DatasetError(
        `unknown dataset ${JSON.stringify(name)}; valid names: ${DATASET_NAMES.join(", ")}`,
      );
  }
}

/** Every row of a prepared dataset as floats in memory (the in-RAM path; training streams instead). */
function loadPreparedInMemory(path: string, limit: number | undefined): Dataset {
  if (typeof path !== "string" || path === "")
    throw new DatasetError("prepared dataset: path must be a non-empty string");
  const ds = PreparedDataset.open(path, { cacheMB: 0, limit });
  const data = new Float32Array(ds.count * ds.sampleSize);
  const labels = ds.classes.length > 0 ? new Uint8Array(ds.count) : undefined;
  const all = new Int32Array(ds.count);
  for (let i = 0; i < ds.count; i++) all[i] = i;
  const lab = new Int32Array(ds.count);
  ds.gather(all, data, lab);
  ds.close();
  if (labels) for (let i = 0; i < ds.count; i++) labels[i] = lab[i];
  return {
    name: "prepared",
    sampleShape: [...ds.sampleShape],
    sampleSize: ds.sampleSize,
    count: ds.count,
    data,
    labels,
    classes: ds.classes.length > 0 ? ds.classes : undefined,
  };
}
