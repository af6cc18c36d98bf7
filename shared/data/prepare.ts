// `agon data prepare`: turns a source (an image folder, MNIST / Fashion-MNIST, or
// another prepared dataset) into a prepared dataset once. Decoding, EXIF
// orientation, colour conversion and resizing are sharp's (libvips); this file
// walks the source, orders and labels the rows and writes them.

import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { basename, dirname, extname, join, relative, resolve, sep } from "node:path";
import { parse as parseCsv } from "csv-parse/sync";
import sharp from "sharp";
import { fileErrorCause } from "../errno.js";
import { DatasetError } from "./errors.js";
import { readIdxRaw } from "./idx-datasets.js";
import { decoderFailure } from "./image.js";
import {
  DEFAULT_CHUNK_BYTES,
  MANIFEST_FILE,
  PreparedDataset,
  type PreparedManifest,
  PreparedWriter,
  type SkippedFile,
} from "./prepared.js";

/** File extensions read as images (decoded by content, so a misnamed file still fails clearly). */
export const IMAGE_EXTENSIONS = [
  ".png",
  ".jpg",
  ".jpeg",
  ".webp",
  ".gif",
  ".tif",
  ".tiff",
  ".avif",
];

export interface PrepareOptions {
  /** Output directory; must not exist or be empty. */
  out: string;
  /** Side of the square output images, 8–512; default: the source's (28 for MNIST), 64 for folders. */
  resolution?: number;
  /** 1 (gray) or 3 (RGB); default: the source's, 3 for folders. */
  channels?: 1 | 3;
  /** center: center-crop to a square, then resize; none: resize the whole image (aspect not kept). */
  crop: "center" | "none";
  /** What transparent pixels become. */
  background: "white" | "black";
  /** skip: list bad files in the manifest and go on; fail: stop at the first. */
  onError: "skip" | "fail";
  /**
   * Folder sources: "folders" (first-level subfolder = class, the ImageFolder
   * layout), "none", or a .csv / .json file mapping relative path → label.
   * Default: folders when every image is in a subfolder, else none.
   */
  labels?: string;
  /** Images decoded at once. */
  jobs: number;
  /** mnist / fashion-mnist: which split. */
  split: "train" | "test";
  /** Keep at most this many images (the first in row order). */
  limit?: number;
  chunkBytes?: number;
  /** Called as images are done (for a progress bar). */
  onProgress?: (done: number, total: number) => void;
}

/** One row to produce: where its pixels come from and its label (-1: unlabelled). */
interface Item {
  /** Relative path (folders), or the row number (mnist / prepared). */
  name: string;
  label: number;
  read: () => Promise<Buffer | RawInput>;
}

interface RawInput {
  raw: Buffer;
  width: number;
  height: number;
  channels: 1 | 3;
}

interface Plan {
  kind: string;
  items: Item[];
  classes: string[];
  skipped: SkippedFile[];
  defaults: { resolution: number; channels: 1 | 3 };
}

/**
 * Prepares `source` into opts.out (written to a temporary sibling and renamed
 * into place, so a failure changes nothing). Returns the manifest.
 * Throws DatasetError for a bad source, options, or (onError fail) image.
 */
export async function prepareDataset(
  source: string,
  opts: PrepareOptions,
): Promise<PreparedManifest> {
  const out = resolve(opts.out);
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) {
    throw new DatasetError(
      `--out ${opts.out} exists and is not an empty directory; choose another or remove it`,
    );
  }
  if (!Number.isInteger(opts.jobs) || opts.jobs < 1)
    throw new DatasetError(`--jobs must be an integer >= 1, got ${opts.jobs}`);
  const plan = planSource(source, opts);
  const resolution = opts.resolution ?? plan.defaults.resolution;
  const channels = opts.channels ?? plan.defaults.channels;
  if (!Number.isInteger(resolution) || resolution < 8 || resolution > 512) {
    throw new DatasetError(`--resolution must be an integer from 8 to 512, got ${resolution}`);
  }
  if (channels !== 1 && channels !== 3)
    throw new DatasetError(`--channels must be 1 or 3, got ${channels}`);
  const items = opts.limit === undefined ? plan.items : plan.items.slice(0, opts.limit);
  if (items.length === 0) {
    throw new DatasetError(`${source}: no images found (${plan.skipped.length} files skipped)`);
  }

  const tmp = join(dirname(out), `.${basename(out)}.partial-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const writer = new PreparedWriter(
      tmp,
      resolution,
      channels,
      opts.chunkBytes ?? DEFAULT_CHUNK_BYTES,
    );
    const skipped = [...plan.skipped];
    const transform = { resolution, channels, crop: opts.crop, background: opts.background };
    sharp.concurrency(1); // one libvips thread per image; --jobs images run at once
    const window = opts.jobs * 4;
    let done = 0;
    for (let start = 0; start < items.length; start += window) {
      const batch = items.slice(start, start + window);
      const rows = await mapLimit(batch, opts.jobs, async (item) => {
        try {
          return { row: await toRow(await item.read(), transform) };
        } catch (err) {
          return { error: reasonOf(err) };
        } finally {
          opts.onProgress?.(++done, items.length);
        }
      });
      rows.forEach((r, i) => {
        const item = batch[i];
        if (r.row) writer.add(r.row, item.label);
        else if (opts.onError === "fail") {
          throw new DatasetError(
            `${join(source, item.name)}: ${r.error}; fix or remove the file, or use --on-error skip`,
          );
        } else skipped.push({ file: item.name, reason: r.error });
      });
    }
    // Classes left without rows still keep their label numbers (names come from the source).
    const manifest = writer.finish(
      plan.classes,
      {
        source: {
          kind: plan.kind,
          path: source,
          ...(plan.kind === "idx" ? { split: opts.split } : {}),
        },
        options: {
          resolution,
          channels,
          crop: opts.crop,
          background: opts.background,
          onError: opts.onError,
          labels: opts.labels ?? "auto",
          limit: opts.limit ?? null,
        },
      },
      skipped,
    );
    rmSync(out, { recursive: true, force: true });
    renameSync(tmp, out);
    return manifest;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** sharp's message, first line, without its "Input buffer" boilerplate where it adds nothing. */
function reasonOf(err: unknown): string {
  return decoderFailure(err);
}

/** Runs fn over items with at most `limit` at once; results in input order. */
async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

interface Transform {
  resolution: number;
  channels: 1 | 3;
  crop: "center" | "none";
  background: "white" | "black";
}

/**
 * One image to one uint8 HWC row: EXIF orientation applied, transparency flattened
 * onto the background, center-cropped or stretched to resolution², converted to
 * gray or sRGB (palette, 16-bit, CMYK included). Throws on empty, truncated or
 * undecodable input.
 */
export async function toRow(input: Buffer | RawInput, t: Transform): Promise<Uint8Array> {
  if (Buffer.isBuffer(input) && input.length === 0) throw new Error("empty file");
  const img = Buffer.isBuffer(input)
    ? sharp(input, { failOn: "warning" }).autoOrient()
    : sharp(input.raw, {
        raw: { width: input.width, height: input.height, channels: input.channels },
      });
  const bg = t.background === "white" ? "#ffffff" : "#000000";
  let pipeline = img.flatten({ background: bg }).resize(t.resolution, t.resolution, {
    fit: t.crop === "center" ? "cover" : "fill",
    position: "centre",
  });
  pipeline = t.channels === 1 ? pipeline.grayscale() : pipeline.toColourspace("srgb");
  const { data, info } = await pipeline
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
  const want = t.resolution * t.resolution * t.channels;
  if (info.channels !== t.channels || data.length !== want) {
    throw new Error(
      `decoded to ${info.width}x${info.height}x${info.channels}, expected ${t.resolution}x${t.resolution}x${t.channels}`,
    );
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

function planSource(source: string, opts: PrepareOptions): Plan {
  if (source === "mnist" || source === "fashion-mnist") return planIdx(source, opts.split);
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(source);
  } catch {
    throw new DatasetError(
      `${source} does not exist; give an image folder, a prepared dataset, mnist or fashion-mnist`,
    );
  }
  if (!st.isDirectory())
    throw new DatasetError(
      `${source} is not a directory; give an image folder, a prepared dataset, mnist or fashion-mnist`,
    );
  if (existsSync(join(source, MANIFEST_FILE))) return planPrepared(source);
  return planFolder(source, opts.labels);
}

function planIdx(name: "mnist" | "fashion-mnist", split: "train" | "test"): Plan {
  const raw = readIdxRaw(name, split);
  const size = raw.rows * raw.cols;
  const items: Item[] = [];
  for (let i = 0; i < raw.count; i++) {
    const pixels = Buffer.from(raw.pixels.buffer, raw.pixels.byteOffset + i * size, size);
    items.push({
      name: `#${i}`,
      label: raw.labels[i],
      read: async () => ({ raw: pixels, width: raw.cols, height: raw.rows, channels: 1 }),
    });
  }
  const names =
    name === "mnist"
      ? ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
      : [
          "T-shirt/top",
          "Trouser",
          "Pullover",
          "Dress",
          "Coat",
          "Sandal",
          "Shirt",
          "Sneaker",
          "Bag",
          "Ankle boot",
        ];
  return {
    kind: "idx",
    items,
    classes: names,
    skipped: [],
    defaults: { resolution: raw.rows, channels: 1 },
  };
}

function planPrepared(dir: string): Plan {
  const ds = PreparedDataset.open(dir, { cacheMB: 0 });
  const [h, w, c] = ds.sampleShape;
  const items: Item[] = [];
  for (let i = 0; i < ds.count; i++) {
    items.push({
      name: `#${i}`,
      label: ds.classes.length > 0 ? ds.label(i) : -1,
      read: async () => ({
        raw: Buffer.from(ds.rowBytes(i)),
        width: w,
        height: h,
        channels: c as 1 | 3,
      }),
    });
  }
  return {
    kind: "prepared",
    items,
    classes: ds.classes,
    skipped: [],
    defaults: { resolution: h, channels: c as 1 | 3 },
  };
}

/** Every file under dir (relative, '/'-separated, sorted by code point); hidden entries listed apart. */
function walk(dir: string): { files: string[]; hidden: string[] } {
  const files: string[] = [];
  const hidden: string[] = [];
  const visit = (abs: string) => {
    for (const entry of readdirSync(abs, { withFileTypes: true })) {
      const path = join(abs, entry.name);
      const rel = relative(dir, path).split(sep).join("/");
      if (entry.name.startsWith(".")) {
        hidden.push(entry.isDirectory() ? `${rel}/` : rel);
        continue;
      }
      let st: ReturnType<typeof statSync>;
      try {
        st = statSync(path); // follows symlinks
      } catch {
        files.push(rel); // dangling link: reported when read
        continue;
      }
      if (st.isDirectory()) visit(path);
      else if (st.isFile()) files.push(rel);
    }
  };
  visit(dir);
  const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return { files: files.sort(byCodePoint), hidden: hidden.sort(byCodePoint) };
}

function planFolder(dir: string, labelsOpt: string | undefined): Plan {
  const { files, hidden } = walk(dir);
  const skipped: SkippedFile[] = hidden.map((file) => ({
    file,
    reason: file.endsWith("/") ? "hidden folder (not searched)" : "hidden file",
  }));
  const images: string[] = [];
  for (const file of files) {
    if (IMAGE_EXTENSIONS.includes(extname(file).toLowerCase())) images.push(file);
    else skipped.push({ file, reason: `not an image (extension ${extname(file) || "none"})` });
  }
  let mode = labelsOpt ?? "auto";
  if (mode === "auto")
    mode = images.length > 0 && images.every((f) => f.includes("/")) ? "folders" : "none";
  let labelOf: (file: string) => string | null;
  if (mode === "none") labelOf = () => null;
  else if (mode === "folders")
    labelOf = (f) => (f.includes("/") ? f.slice(0, f.indexOf("/")) : null);
  else labelOf = labelFile(mode);

  const kept: Array<{ file: string; name: string | null }> = [];
  for (const file of images) {
    const name = labelOf(file);
    if (mode !== "none" && name === null) {
      skipped.push({
        file,
        reason: mode === "folders" ? "not in a class folder" : `no label in ${mode}`,
      });
    } else kept.push({ file, name });
  }
  const classes =
    mode === "none"
      ? []
      : [...new Set(kept.map((k) => k.name as string))].sort((a, b) =>
          a < b ? -1 : a > b ? 1 : 0,
        );
  const index = new Map(classes.map((c, i) => [c, i]));
  const items = kept.map(({ file, name }) => ({
    name: file,
    label: name === null ? -1 : (index.get(name) as number),
    read: async () => readFileSync(join(dir, file)),
  }));
  return {
    kind: "folder",
    items,
    classes,
    skipped,
    defaults: { resolution: 64, channels: 3 as const },
  };
}

/** Reads a CSV (path,label rows; a header row is allowed) or JSON ({"path": "label"}) label file. */
function labelFile(file: string): (rel: string) => string | null {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new DatasetError(
      `--labels ${file} cannot be read (${fileErrorCause(err)}); give folders, none, or a .csv/.json file`,
    );
  }
  const map = new Map<string, string>();
  if (file.toLowerCase().endsWith(".json")) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new DatasetError(
        `--labels ${file} is not valid JSON; expected {"relative/path.jpg": "label", ...}`,
      );
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new DatasetError(
        `--labels ${file}: expected an object {"relative/path.jpg": "label", ...}`,
      );
    }
    for (const [k, v] of Object.entries(value)) map.set(k, String(v));
  } else {
    let rows: string[][];
    try {
      rows = parseCsv(text, { skip_empty_lines: true, trim: true, relax_column_count: false });
    } catch (err) {
      throw new DatasetError(
        `--labels ${file} is not valid CSV (${reasonOf(err)}); expected rows of path,label`,
      );
    }
    for (const [i, row] of rows.entries()) {
      if (row.length < 2) throw new DatasetError(`--labels ${file}: row ${i + 1} needs path,label`);
      if (i === 0 && /^(path|file|filename|image)$/i.test(row[0])) continue;
      map.set(row[0], row[1]);
    }
  }
  return (rel) => map.get(rel) ?? null;
}

/** One line: what was written and what was skipped (by reason kind). */
export function prepareSummary(m: PreparedManifest, out: string, seconds: number): string {
  const mb = (m.count * m.rowBytes) / 1024 / 1024;
  const classes = m.classes.length > 0 ? `, ${m.classes.length} classes` : ", unlabelled";
  let skipped = "";
  if (m.skipped.length > 0) {
    const kinds = new Map<string, number>();
    for (const s of m.skipped) {
      const kind =
        /^(hidden|not an image|not in a class folder|no label|empty file)/.exec(s.reason)?.[1] ??
        "undecodable";
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    skipped = `; skipped ${m.skipped.length} files (${[...kinds].map(([k, n]) => `${n} ${k}`).join(", ")}; see ${join(out, MANIFEST_FILE)})`;
  }
  const rate = seconds > 0 ? `, ${(m.count / seconds).toFixed(0)} images/s` : "";
  return `prepared ${m.count} images of ${m.resolution}x${m.resolution}x${m.channels}${classes} in ${m.chunks.length} chunks (${mb.toFixed(1)} MiB) at ${out}${rate}, fingerprint ${m.fingerprint.slice(0, 16)}${skipped}`;
}
