// Loads a flat directory of PNG/JPEG images into memory as a dataset, sorted by
// file name. Large or nested image sets go through `agon data prepare` instead.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { DatasetError } from "./errors.js";
import { decodeImage, resize, toChannels } from "./image.js";
import type { Dataset } from "./types.js";

const IMAGE_EXT = /\.(png|jpe?g)$/i;

/** Image files directly in dir, ordered by code point (not locale) so every machine agrees. */
export function listImageFiles(dir: string): string[] {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new DatasetError(
      `folder dataset: ${dir} does not exist; set the dataset path to a directory of .png/.jpg images`,
    );
  }
  if (!isDir) {
    throw new DatasetError(
      `folder dataset: ${dir} is not a directory; set the dataset path to a directory of .png/.jpg images`,
    );
  }
  const names = readdirSync(dir).filter((name) => {
    if (!IMAGE_EXT.test(name)) return false;
    try {
      return statSync(join(dir, name)).isFile(); // follows symlinks
    } catch {
      return false; // dangling symlink
    }
  });
  if (names.length === 0) {
    throw new DatasetError(
      `folder dataset: ${dir} contains no .png, .jpg or .jpeg files (subdirectories are not searched)`,
    );
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return names.map((name) => join(dir, name));
}

/**
 * Every image of dir, decoded (EXIF orientation applied), converted to 1 or 3
 * channels (alpha over black), resized to size×size and scaled to [-1, 1].
 * Throws DatasetError naming the folder or file.
 */
export async function loadFolderDataset(
  dir: string,
  channels: 1 | 3,
  size: number,
  limit: number | undefined,
): Promise<Dataset> {
  const all = listImageFiles(dir);
  const files = limit === undefined ? all : all.slice(0, limit);
  const sampleSize = size * size * channels;
  const data = new Float32Array(files.length * sampleSize);
  for (const [n, file] of files.entries()) {
    const img = await decodeImage(readFileSync(file), file);
    const pixels = resize(toChannels(img, channels), img.width, img.height, channels, size, size);
    const base = n * sampleSize;
    for (let i = 0; i < sampleSize; i++) {
      // Clamp: float rounding in the resampler can step a hair outside [0, 255].
      data[base + i] = Math.min(1, Math.max(-1, pixels[i] / 127.5 - 1));
    }
  }
  return {
    name: "folder",
    sampleShape: [size, size, channels],
    sampleSize,
    count: files.length,
    data,
  };
}
