// Loads a directory of PNG/JPEG images into memory as a dataset, sorted by file
// name: flat (unlabelled) or class subfolders (labelled, the ImageFolder layout).
// Large image sets go through `agon data prepare` instead.

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
  const names = imagesIn(dir);
  if (names.length === 0) {
    throw new DatasetError(
      `folder dataset: ${dir} contains no .png, .jpg or .jpeg files (nor class subfolders holding them)`,
    );
  }
  return names.map((name) => join(dir, name));
}

const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Image file names directly in dir (no hidden ones), by code point. */
function imagesIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => {
      if (name.startsWith(".") || !IMAGE_EXT.test(name)) return false;
      try {
        return statSync(join(dir, name)).isFile(); // follows symlinks
      } catch {
        return false; // dangling symlink
      }
    })
    .sort(byCodePoint);
}

/** Image files under dir at any depth (relative paths, '/'-separated, by code point). */
function imagesBelow(dir: string, prefix = ""): string[] {
  const out = imagesIn(dir).map((n) => prefix + n);
  for (const name of readdirSync(dir).sort(byCodePoint)) {
    if (name.startsWith(".")) continue;
    try {
      if (statSync(join(dir, name)).isDirectory())
        out.push(...imagesBelow(join(dir, name), `${prefix}${name}/`));
    } catch {
      // dangling symlink
    }
  }
  return out.sort(byCodePoint);
}

/**
 * The images of a folder dataset and their labels. Images directly in dir: all
 * of them, unlabelled. None there but subfolders holding images (the ImageFolder
 * layout): every image below them, labelled by its first-level subfolder, classes
 * in code-point order.
 */
export function listFolderDataset(dir: string): {
  files: string[];
  labels?: Uint8Array;
  classes?: string[];
} {
  let flat: string[] = [];
  try {
    flat = listImageFiles(dir);
  } catch (err) {
    if (!statSafeIsDir(dir)) throw err;
    const rel = imagesBelow(dir);
    if (rel.length === 0) throw err;
    const classes = [...new Set(rel.map((r) => r.slice(0, r.indexOf("/"))))].sort(byCodePoint);
    if (classes.length > 256) {
      throw new DatasetError(
        `folder dataset: ${dir} has ${classes.length} class folders; the in-memory loader takes at most 256 (use agon data prepare)`,
      );
    }
    const index = new Map(classes.map((c, i) => [c, i]));
    const labels = Uint8Array.from(rel, (r) => index.get(r.slice(0, r.indexOf("/")))!);
    return { files: rel.map((r) => join(dir, r)), labels, classes };
  }
  return { files: flat };
}

function statSafeIsDir(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
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
  const listed = listFolderDataset(dir);
  const all = listed.files;
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
    labels: listed.labels?.slice(0, files.length),
    classes: listed.classes,
  };
}
