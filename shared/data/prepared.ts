// The prepared dataset format (`agon data prepare` writes it, training reads it):
// a manifest.json, uint8 HWC rows in fixed-size chunk files, and a labels file.
// Readers touch only the rows a microtask needs, through a bounded chunk cache,
// and check every chunk's sha256 before using its bytes.

import { closeSync, openSync, readdirSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { canonicalJson } from "../config.js";
import { fileErrorCause } from "../errno.js";
import { sha256 } from "../hash.js";
import { DatasetError } from "./errors.js";
import type { SampleSource } from "./types.js";

/** Format name and version written into and required from every manifest. */
export const PREPARED_FORMAT = "agon-prepared-dataset";
export const PREPARED_VERSION = 1;
/** Target chunk size; a chunk holds whole rows, so it is at most this many bytes. */
export const DEFAULT_CHUNK_BYTES = 1 << 20;
export const MANIFEST_FILE = "manifest.json";
export const LABELS_FILE = "labels.u32";

export interface ChunkInfo {
  file: string;
  /** Rows in this chunk (rowsPerChunk, fewer in the last). */
  rows: number;
  /** sha256 (hex) of the chunk file's bytes. */
  sha256: string;
}

/** One skipped source file and why (hidden, not an image, empty, undecodable, ...). */
export interface SkippedFile {
  file: string;
  reason: string;
}

export interface PreparedManifest {
  format: typeof PREPARED_FORMAT;
  version: number;
  /** Number of rows (images). */
  count: number;
  /** Images are resolution × resolution pixels. */
  resolution: number;
  channels: 1 | 3;
  /** Bytes per row: resolution² × channels, uint8, HWC. */
  rowBytes: number;
  rowsPerChunk: number;
  chunks: ChunkInfo[];
  /** Class names by label; empty for an unlabelled dataset. */
  classes: string[];
  /** Rows per class, by label. */
  classCounts: number[];
  /** The labels file (uint32 little-endian per row), absent when unlabelled. */
  labels: { file: string; sha256: string } | null;
  /**
   * sha256 over the content (shape, class names, chunk and label checksums):
   * equal fingerprints mean equal data. The same source and options give the same one.
   */
  fingerprint: string;
  /** Where the rows came from and how they were transformed (informational). */
  source: Record<string, unknown>;
  options: Record<string, unknown>;
  skipped: SkippedFile[];
}

/** The fingerprint of a manifest's content: everything that decides the rows and labels. */
export function manifestFingerprint(
  m: Pick<
    PreparedManifest,
    | "version"
    | "count"
    | "resolution"
    | "channels"
    | "rowsPerChunk"
    | "chunks"
    | "classes"
    | "labels"
  >,
): string {
  const content = {
    format: PREPARED_FORMAT,
    version: m.version,
    count: m.count,
    resolution: m.resolution,
    channels: m.channels,
    rowsPerChunk: m.rowsPerChunk,
    chunks: m.chunks.map((c) => c.sha256),
    classes: m.classes,
    labels: m.labels?.sha256 ?? null,
  };
  return sha256(new TextEncoder().encode(canonicalJson(content)));
}

/**
 * Writes rows in order into chunk files of `rowsPerChunk` rows, then the labels
 * and manifest. Memory: one chunk. Callers add rows with `add` and end with `finish`.
 */
export class PreparedWriter {
  readonly rowBytes: number;
  readonly rowsPerChunk: number;
  private readonly chunk: Uint8Array;
  private inChunk = 0;
  private readonly chunks: ChunkInfo[] = [];
  private readonly labels: number[] = [];
  private count = 0;

  constructor(
    private readonly dir: string,
    readonly resolution: number,
    readonly channels: 1 | 3,
    chunkBytes = DEFAULT_CHUNK_BYTES,
  ) {
    this.rowBytes = resolution * resolution * channels;
    this.rowsPerChunk = Math.max(1, Math.floor(chunkBytes / this.rowBytes));
    this.chunk = new Uint8Array(this.rowsPerChunk * this.rowBytes);
  }

  /** Appends one row (rowBytes uint8, HWC) with its label (-1 when unlabelled). */
  add(row: Uint8Array, label: number): void {
    if (row.length !== this.rowBytes) {
      throw new RangeError(`PreparedWriter: row has ${row.length} bytes, need ${this.rowBytes}`);
    }
    this.chunk.set(row, this.inChunk * this.rowBytes);
    this.inChunk++;
    this.labels.push(label);
    this.count++;
    if (this.inChunk === this.rowsPerChunk) this.flush();
  }

  private flush(): void {
    if (this.inChunk === 0) return;
    const bytes = this.chunk.subarray(0, this.inChunk * this.rowBytes);
    const file = `chunk-${String(this.chunks.length).padStart(6, "0")}.bin`;
    writeFileSync(join(this.dir, file), bytes);
    this.chunks.push({ file, rows: this.inChunk, sha256: sha256(bytes) });
    this.inChunk = 0;
  }

  /** Writes the last chunk, the labels file (when classes are given) and manifest.json. */
  finish(
    classes: string[],
    meta: { source: Record<string, unknown>; options: Record<string, unknown> },
    skipped: SkippedFile[],
  ): PreparedManifest {
    this.flush();
    if (this.count === 0) {
      const first = skipped[0];
      throw new DatasetError(
        `${String(meta.source.path ?? "the source")}: no usable images, all ${skipped.length} files were skipped${first ? ` (first: ${first.file}: ${first.reason})` : ""}; fix or remove them (the manifest of a run with one good image lists every reason)`,
      );
    }
    let labels: PreparedManifest["labels"] = null;
    const classCounts = classes.map(() => 0);
    if (classes.length > 0) {
      const buf = Buffer.alloc(4 * this.count);
      this.labels.forEach((l, i) => {
        buf.writeUInt32LE(l, 4 * i);
        classCounts[l]++;
      });
      writeFileSync(join(this.dir, LABELS_FILE), buf);
      labels = { file: LABELS_FILE, sha256: sha256(buf) };
    }
    const base = {
      format: PREPARED_FORMAT,
      version: PREPARED_VERSION,
      count: this.count,
      resolution: this.resolution,
      channels: this.channels,
      rowBytes: this.rowBytes,
      rowsPerChunk: this.rowsPerChunk,
      chunks: this.chunks,
      classes,
      classCounts,
      labels,
    } as const;
    const manifest: PreparedManifest = {
      ...base,
      fingerprint: manifestFingerprint(base),
      source: meta.source,
      options: meta.options,
      skipped,
    };
    writeFileSync(join(this.dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 1)}\n`);
    return manifest;
  }
}

/** Reads and validates dir/manifest.json; every problem is one DatasetError line. */
export function readManifest(dir: string): PreparedManifest {
  const file = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && holdsImages(dir)) {
      throw new DatasetError(
        `prepared dataset: ${dir} is an image folder, not a prepared dataset (no ${MANIFEST_FILE}); run \`agon data prepare ${dir} --out ${dir.replace(/\/+$/, "")}-prepared\` and use that directory`,
      );
    }
    throw new DatasetError(
      `prepared dataset: cannot read ${file} (${fileErrorCause(err)}); run \`agon data prepare SOURCE --out ${dir}\` or fix the path`,
    );
  }
  let m: PreparedManifest;
  try {
    m = JSON.parse(text);
  } catch {
    throw new DatasetError(
      `prepared dataset: ${file} is not valid JSON; prepare the dataset again`,
    );
  }
  const bad = (what: string) =>
    new DatasetError(`prepared dataset: ${file}: ${what}; prepare the dataset again`);
  if (m?.format !== PREPARED_FORMAT) throw bad(`format is not ${PREPARED_FORMAT}`);
  if (m.version !== PREPARED_VERSION) throw bad(`version ${m.version} is not ${PREPARED_VERSION}`);
  const posInt = (v: unknown) => Number.isSafeInteger(v) && (v as number) > 0;
  if (!posInt(m.count) || !posInt(m.resolution) || !posInt(m.rowsPerChunk))
    throw bad("count, resolution and rowsPerChunk must be positive integers");
  if (m.channels !== 1 && m.channels !== 3) throw bad("channels must be 1 or 3");
  if (m.rowBytes !== m.resolution * m.resolution * m.channels) throw bad("rowBytes does not match");
  if (!Array.isArray(m.chunks) || m.chunks.length !== Math.ceil(m.count / m.rowsPerChunk))
    throw bad("the chunk list does not match count / rowsPerChunk");
  for (const [i, c] of m.chunks.entries()) {
    const rows = i === m.chunks.length - 1 ? m.count - i * m.rowsPerChunk : m.rowsPerChunk;
    if (
      typeof c?.file !== "string" ||
      !/^[\w.-]+$/.test(c.file) ||
      c.rows !== rows ||
      !/^[0-9a-f]{64}$/.test(c.sha256)
    )
      throw bad(`chunk ${i} is malformed`);
  }
  if (!Array.isArray(m.classes) || !m.classes.every((c) => typeof c === "string"))
    throw bad("classes must be a list of names");
  if (m.classes.length > 0 !== (m.labels !== null && m.labels !== undefined))
    throw bad("a labels file goes with classes, and only with them");
  if (m.fingerprint !== manifestFingerprint(m))
    throw bad("the fingerprint does not match the content it describes (edited manifest?)");
  return m;
}

/** Chunks larger than this share of the cache are not cached (their rows are read one by one). */
const MIN_CACHE_CHUNKS = 2;

/**
 * A prepared dataset opened for training. Nothing but the manifest and labels
 * is read at open; rows are read on demand. Each chunk is read whole and its
 * sha256 checked the first time it is touched (a mismatch throws a DatasetError
 * naming the chunk, and the bytes are never used); checked chunks stay in an
 * LRU cache of at most cacheMB, and rows of an evicted, already-checked chunk
 * are read back with one positional read each. Memory: cacheMB + 4 bytes per
 * label + one bit per chunk, whatever the dataset's size.
 */
export class PreparedDataset implements SampleSource {
  readonly name = "prepared";
  readonly sampleShape: [number, number, number];
  readonly sampleSize: number;
  readonly count: number;
  readonly classes: string[];
  readonly fingerprint: string;
  private readonly labels: Uint32Array | null;
  private readonly verified: Uint8Array;
  private readonly cache = new Map<number, Uint8Array>();
  private readonly maxCached: number;
  private readonly fds = new Map<number, number>();
  private readonly row: Uint8Array;
  /** Without a cache: the last chunk buffer, reused for the next whole-chunk read. */
  private spare: Uint8Array | undefined;
  /** uint8 → [-1, 1], the same table the IDX loader uses. */
  private static readonly unit = (() => {
    const t = new Float32Array(256);
    for (let v = 0; v < 256; v++) t[v] = v / 127.5 - 1;
    return t;
  })();

  private constructor(
    readonly dir: string,
    readonly manifest: PreparedManifest,
    cacheMB: number,
    limit: number | undefined,
  ) {
    const m = manifest;
    this.sampleShape = [m.resolution, m.resolution, m.channels];
    this.sampleSize = m.rowBytes;
    this.count = limit === undefined ? m.count : Math.min(limit, m.count);
    this.classes = m.classes;
    this.fingerprint =
      limit === undefined || limit >= m.count
        ? m.fingerprint
        : sha256(new TextEncoder().encode(`${m.fingerprint}:first:${this.count}`));
    this.verified = new Uint8Array(m.chunks.length);
    const chunkBytes = m.rowsPerChunk * m.rowBytes;
    this.maxCached = Math.floor((cacheMB * 1024 * 1024) / chunkBytes);
    if (this.maxCached < MIN_CACHE_CHUNKS) this.maxCached = 0;
    this.row = new Uint8Array(m.rowBytes);
    this.labels = m.labels ? this.readLabels(m.labels) : null;
  }

  /**
   * Opens dir (manifest and labels only). Throws DatasetError when the
   * manifest or labels are missing, malformed or fail their checksum.
   * `limit` keeps the first rows only.
   */
  static open(dir: string, opts: { cacheMB?: number; limit?: number } = {}): PreparedDataset {
    return new PreparedDataset(dir, readManifest(dir), opts.cacheMB ?? 256, opts.limit);
  }

  private readLabels(info: { file: string; sha256: string }): Uint32Array {
    const file = join(this.dir, info.file);
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (err) {
      throw new DatasetError(
        `prepared dataset: cannot read ${file} (${fileErrorCause(err)}); copy the whole dataset directory`,
      );
    }
    if (bytes.length !== 4 * this.manifest.count || sha256(bytes) !== info.sha256) {
      throw new DatasetError(
        `prepared dataset: ${file} is damaged (sha256 does not match the manifest); copy it again or prepare again`,
      );
    }
    const out = new Uint32Array(this.manifest.count);
    for (let i = 0; i < out.length; i++) {
      out[i] = bytes.readUInt32LE(4 * i);
      if (out[i] >= this.classes.length)
        throw new DatasetError(`prepared dataset: ${file}: label ${out[i]} has no class name`);
    }
    return out;
  }

  /** The label of row i (0 when unlabelled). */
  label(i: number): number {
    return this.labels ? this.labels[i] : 0;
  }

  /**
   * Fills `out` (indices.length × sampleSize floats in [-1, 1], HWC) with the rows
   * at `indices`, mirrored left-right where flip[k] is 1, and `labels` (when given)
   * with their labels. Throws DatasetError for a damaged or unreadable chunk.
   */
  gather(indices: Int32Array, out: Float32Array, labels?: Int32Array, flip?: Uint8Array): void {
    const size = this.sampleSize;
    const unit = PreparedDataset.unit;
    const [, w, c] = this.sampleShape;
    for (let k = 0; k < indices.length; k++) {
      const idx = indices[k];
      if (!(idx >= 0 && idx < this.count))
        throw new RangeError(`gather: index ${idx} outside prepared dataset of ${this.count}`);
      const row = this.rowBytes(idx);
      const base = k * size;
      if (flip?.[k]) {
        for (let p = 0; p < size; p += w * c) {
          for (let x = 0; x < w; x++) {
            const src = p + (w - 1 - x) * c;
            const dst = base + p + x * c;
            for (let ch = 0; ch < c; ch++) out[dst + ch] = unit[row[src + ch]];
          }
        }
      } else {
        for (let i = 0; i < size; i++) out[base + i] = unit[row[i]];
      }
      if (labels) labels[k] = this.label(idx);
    }
  }

  /** Row i's bytes; valid until the next call. */
  rowBytes(i: number): Uint8Array {
    const m = this.manifest;
    const chunk = Math.floor(i / m.rowsPerChunk);
    const offset = (i - chunk * m.rowsPerChunk) * m.rowBytes;
    const cached = this.cache.get(chunk);
    if (cached) {
      this.cache.delete(chunk);
      this.cache.set(chunk, cached);
      return cached.subarray(offset, offset + m.rowBytes);
    }
    if (!this.verified[chunk] || this.maxCached > 0) {
      // A full cache gives up its oldest chunk's buffer for this one, so memory stays put.
      let reuse: Uint8Array | undefined;
      if (this.maxCached > 0 && this.cache.size >= this.maxCached) {
        const oldest = this.cache.keys().next().value as number;
        reuse = this.cache.get(oldest);
        this.cache.delete(oldest);
      }
      const bytes = this.readChunk(chunk, reuse ?? this.spare);
      if (this.maxCached > 0) this.cache.set(chunk, bytes);
      else this.spare = bytes;
      return bytes.subarray(offset, offset + m.rowBytes);
    }
    // Checked before, evicted since (or no cache): one positional read of the row.
    const fd = this.fd(chunk);
    const n = readSync(fd, this.row, 0, m.rowBytes, offset);
    if (n !== m.rowBytes) throw this.damaged(chunk, "shorter than the manifest says");
    return this.row;
  }

  /**
   * Reads a whole chunk (into `into` when it is big enough) and checks it against
   * the manifest, every time it is read whole.
   */
  private readChunk(chunk: number, into?: Uint8Array): Uint8Array {
    const info = this.manifest.chunks[chunk];
    const want = info.rows * this.manifest.rowBytes;
    const fd = this.fd(chunk);
    const full = into && into.buffer.byteLength - into.byteOffset >= want ? into : undefined;
    const bytes = full ? new Uint8Array(full.buffer, full.byteOffset, want) : new Uint8Array(want);
    let got = 0;
    for (let n = -1; got < want && n !== 0; got += n) {
      n = readSync(fd, bytes, got, want - got, got);
    }
    if (got !== want) throw this.damaged(chunk, `${got} bytes, the manifest says ${want}`);
    const extra = readSync(fd, new Uint8Array(1), 0, 1, want);
    if (extra !== 0) throw this.damaged(chunk, `longer than the manifest's ${want} bytes`);
    const digest = sha256(bytes);
    if (digest !== info.sha256) {
      throw this.damaged(
        chunk,
        `sha256 ${digest.slice(0, 12)}… but the manifest says ${info.sha256.slice(0, 12)}…`,
      );
    }
    this.verified[chunk] = 1;
    return bytes;
  }

  private fd(chunk: number): number {
    let fd = this.fds.get(chunk);
    if (fd === undefined) {
      const file = join(this.dir, this.manifest.chunks[chunk].file);
      try {
        fd = openSync(file, "r");
      } catch (err) {
        throw this.damaged(chunk, `cannot be opened (${fileErrorCause(err)})`);
      }
      // Keep few descriptors open: a big dataset has thousands of chunks.
      if (this.fds.size >= 64) {
        const [oldChunk, oldFd] = this.fds.entries().next().value as [number, number];
        closeSync(oldFd);
        this.fds.delete(oldChunk);
      }
      this.fds.set(chunk, fd);
    }
    return fd;
  }

  private damaged(chunk: number, why: string): DatasetError {
    const file = join(this.dir, this.manifest.chunks[chunk].file);
    return new DatasetError(
      `prepared dataset: chunk ${file} is damaged (${why}); copy it again from an intact copy or prepare the dataset again`,
    );
  }

  /** Closes open chunk files and empties the cache. */
  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
    this.cache.clear();
  }

  /** Checks every chunk's sha256 (agon data inspect --verify); returns the damaged ones' messages. */
  verifyAll(onChunk?: (done: number, total: number) => void): string[] {
    const problems: string[] = [];
    for (let i = 0; i < this.manifest.chunks.length; i++) {
      try {
        this.readChunk(i);
      } catch (err) {
        problems.push((err as Error).message);
      }
      onChunk?.(i + 1, this.manifest.chunks.length);
    }
    return problems;
  }
}

/** Whether dir looks like an image folder (.png/.jpg files in it or in its subfolders, one level). */
function holdsImages(dir: string): boolean {
  const image = /\.(png|jpe?g)$/i;
  try {
    return readdirSync(dir, { withFileTypes: true }).some(
      (e) =>
        (e.isFile() && image.test(e.name)) ||
        (e.isDirectory() && readdirSync(join(dir, e.name)).some((n) => image.test(n))),
    );
  } catch {
    return false;
  }
}
