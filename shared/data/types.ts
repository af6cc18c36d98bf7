// Shared types for the data layer: dataset specs as written in configs, and the
// in-memory dataset every loader produces.

export type DatasetSpec =
  | { name: "mnist"; split: "train" | "test"; limit?: number }
  | { name: "fashion-mnist"; split: "train" | "test"; limit?: number }
  | {
      name: "folder";
      path: string;
      channels: 1 | 3;
      /** Square side in pixels, e.g. 28. */
      size: number;
      limit?: number;
    }
  | {
      name: "prepared";
      /** Directory written by `agon data prepare`. */
      path: string;
      /** Chunk cache bound in MiB. */
      cacheMB: number;
      limit?: number;
    }
  | {
      name: "ring";
      /** Number of samples. */
      size: number;
      modes: number;
      radius: number;
      std: number;
      seed: number;
    };

export interface Dataset {
  name: string;
  /** [h, w, c] for images, [2] for the ring. */
  sampleShape: number[];
  /** Product of sampleShape. */
  sampleSize: number;
  count: number;
  /** count * sampleSize values; images are NHWC per sample and scaled to [-1, 1]. */
  data: Float32Array;
  /** Class label per sample (mnist, fashion-mnist, folder with class subfolders). */
  labels?: Uint8Array;
  /** Class names by label, when labelled. */
  classes?: string[];
}

/**
 * Where a microtask's real samples come from: an in-memory Dataset (see
 * memorySource) or a prepared dataset read from disk (PreparedDataset).
 */
export interface SampleSource {
  readonly name: string;
  /** [h, w, c] for images, [2] for the ring. */
  readonly sampleShape: number[];
  readonly sampleSize: number;
  readonly count: number;
  /** Class names by label; empty when unlabelled. */
  readonly classes: string[];
  /** sha256 (hex) of the samples and labels: equal fingerprints, equal data. */
  readonly fingerprint: string;
  /**
   * Fills `out` (indices.length × sampleSize floats, HWC images in [-1, 1]) with the
   * samples at `indices`, mirrored left-right where flip[k] is 1 (images only), and
   * `labels` (when given) with their labels (0 when unlabelled).
   */
  gather(indices: Int32Array, out: Float32Array, labels?: Int32Array, flip?: Uint8Array): void;
}

/** Every accepted DatasetSpec name, in the order error messages list them. */
export const DATASET_NAMES: readonly string[] = [
  "mnist",
  "fashion-mnist",
  "folder",
  "prepared",
  "ring",
];
