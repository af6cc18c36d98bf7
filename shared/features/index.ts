// The feature extractors an evaluation measures in, by name: one file each, one interface.
//   classifier  the shipped MNIST / Fashion-MNIST classifiers (classifier.ts), 64-d
//   fitted      the project's classifier recipe fitted to a prepared dataset (fitted.ts), 64-d
//   inception   pytorch-fid's Inception-v3 port (inception.ts), 2048-d: the standard FID
import { readFileSync } from "node:fs";
import { fileErrorCause } from "../errno.js";
import { sha256 } from "../hash.js";
import { FEATURE_DIM, type FidDataset, loadClassifier } from "./classifier.js";
import { loadFittedFeatures } from "./fitted.js";
import {
  INCEPTION_DIM,
  INCEPTION_WEIGHTS_HINT,
  InceptionV3,
  InceptionWeightsError,
} from "./inception.js";

/** The names of the feature extractors. */
export const FEATURE_NAMES = ["classifier", "fitted", "inception"] as const;
export type FeatureName = (typeof FEATURE_NAMES)[number];

/**
 * A loaded feature extractor: n images (flat, HWC, values in [-1, 1], as generators and
 * datasets hold them) to n rows of `dim` float32 features, on the active tfjs backend.
 */
export interface FeatureExtractor {
  readonly name: FeatureName;
  /** Features per image. */
  readonly dim: number;
  /** sha256 (hex) of the weights file (inception; the classifiers are checked by their manifests). */
  readonly sha256?: string;
  /**
   * n × dim float32 rows (row-major) of n images of `shape` ([h, w, c]). Throws RangeError
   * when the images do not fit the extractor (see FEATURES[name].input). A slow extractor
   * (inception) serves the event loop as it goes and throws `signal.reason` (AbortError)
   * once `signal` is aborted; the fast ones ignore it.
   */
  extract(
    images: Float32Array,
    n: number,
    shape: readonly number[],
    signal?: AbortSignal,
  ): Promise<Float32Array>;
  /** Frees its tensors (made again on the next use). */
  dispose(): void;
}

/** Where an extractor's weights come from. */
export type FeatureSource =
  | { name: "classifier"; dataset: FidDataset }
  | { name: "fitted"; dir: string; fingerprint?: string }
  /** `sha256`: the file must hash to it (the run's copy), else InceptionWeightsError. */
  | { name: "inception"; path: string; sha256?: string };

/** What the registry knows of each extractor before loading it. */
export interface FeatureInfo {
  dim: number;
  /** Which images it takes and how their size is handled. */
  input: string;
  /** Where its weights come from. */
  weights: string;
}

export const FEATURES: Readonly<Record<FeatureName, FeatureInfo>> = {
  classifier: {
    dim: FEATURE_DIM,
    input: "28×28×1 images as they are (784 values, no resize)",
    weights: "shipped in shared/assets/, checked against the recipe hash",
  },
  fitted: {
    dim: FEATURE_DIM,
    input: "the prepared dataset's own sample shape (no resize)",
    weights: "DIR/features/ written by `agon eval fit-features --dataset DIR`",
  },
  inception: {
    dim: INCEPTION_DIM,
    input: "any h×w×1 or ×3 image, bilinearly resized to 299×299 (grey repeated to RGB)",
    weights: "a file the user supplies (--inception FILE; bench/convert_inception.py)",
  },
};

/** A classifier's features behind the common interface (its input width is fixed). */
function classifierExtractor(
  name: "classifier" | "fitted",
  classifier: ReturnType<typeof loadClassifier>,
): FeatureExtractor {
  return {
    name,
    dim: FEATURE_DIM,
    extract: (images, n, shape) => {
      const size = shape.reduce((a, b) => a * b, 1);
      if (size !== classifier.widths[0])
        throw new RangeError(
          `the ${name} features take ${classifier.widths[0]} values per image, got [${shape}]`,
        );
      // One forward pass for the whole set, as the recorded numbers were measured.
      return classifier.features(images, n, n);
    },
    dispose: () => classifier.dispose(),
  };
}

/** Inception-v3 behind the common interface. */
function inceptionExtractor(net: InceptionV3, sha256: string): FeatureExtractor {
  return {
    name: "inception",
    dim: INCEPTION_DIM,
    sha256,
    // One image per pass, the event loop served between them; `signal` stops it there.
    extract: (images, n, shape, signal) => net.features(images, n, shape, 1, signal),
    dispose: () => net.dispose(),
  };
}

/** sha256 (hex) of a file's bytes; throws InceptionWeightsError naming it when unreadable. */
export function fileSha256(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new InceptionWeightsError(
      `cannot read ${path}: ${fileErrorCause(err)}; ${INCEPTION_WEIGHTS_HINT}`,
    );
  }
  return sha256(bytes);
}

/**
 * Loads an extractor. Throws ClassifierError (classifier, fitted: missing, damaged or
 * another recipe) or InceptionWeightsError (inception: unreadable, not Inception weights,
 * or another file than `sha256` says), each one line with the fix.
 */
export function loadFeatures(source: FeatureSource): FeatureExtractor {
  switch (source.name) {
    case "classifier":
      return classifierExtractor("classifier", loadClassifier(source.dataset));
    case "fitted":
      return classifierExtractor(
        "fitted",
        loadFittedFeatures(source.dir, source.fingerprint).classifier,
      );
    case "inception": {
      const actual = fileSha256(source.path);
      if (source.sha256 !== undefined && actual !== source.sha256)
        throw new InceptionWeightsError(
          `${source.path} has sha256 ${actual.slice(0, 16)}…, the run's Inception weights ${source.sha256.slice(0, 16)}…: give this host the same file (--inception FILE)`,
        );
      return inceptionExtractor(InceptionV3.load(source.path), actual);
    }
  }
}
