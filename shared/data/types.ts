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
  /** Class labels, only for the IDX datasets (mnist, fashion-mnist). */
  labels?: Uint8Array;
}

/** Every accepted DatasetSpec name, in the order error messages list them. */
export const DATASET_NAMES: readonly string[] = ["mnist", "fashion-mnist", "folder", "ring"];
