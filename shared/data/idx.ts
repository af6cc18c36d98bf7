// Parser for the IDX format of MNIST and Fashion-MNIST (plain or gzipped). It is
// strict about magic, dims and exact length so a damaged file fails loudly.

import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { DatasetError } from "./errors.js";

/** IDX magic: two zero bytes, element type 0x08 (ubyte), number of dims. */
const IMAGE_MAGIC = 0x00000803; // 2051
const LABEL_MAGIC = 0x00000801; // 2049

export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  /** count*rows*cols bytes, row-major; a view into the file bytes, not a copy. */
  pixels: Uint8Array;
}

/** Reads a file, gunzipping it when the name ends in .gz. `fix` ends every error message. */
export function readIdxBytes(path: string, fix: string): Uint8Array {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (err) {
    throw new DatasetError(`${path} could not be read (${(err as Error).message}); ${fix}`);
  }
  if (!path.endsWith(".gz")) return raw;
  try {
    return gunzipSync(raw);
  } catch (err) {
    throw new DatasetError(`${path} is not a valid gzip file (${(err as Error).message}); ${fix}`);
  }
}

/** Validates magic and length, returning the dims and the payload offset. */
function parseHeader(
  bytes: Uint8Array,
  file: string,
  magic: number,
  kind: string,
  fix: string,
): { dims: number[]; offset: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4) {
    throw new DatasetError(
      `${file} is truncated: expected at least 4 bytes, found ${bytes.length}; ${fix}`,
    );
  }
  const found = view.getUint32(0);
  if (found !== magic) {
    const hex = found.toString(16).padStart(8, "0");
    throw new DatasetError(`${file} is not an IDX ${kind} file (magic 0x${hex}); ${fix}`);
  }
  const ndims = magic & 0xff;
  const offset = 4 + 4 * ndims;
  if (bytes.length < offset) {
    throw new DatasetError(
      `${file} is truncated: expected at least ${offset} bytes, found ${bytes.length}; ${fix}`,
    );
  }
  const dims: number[] = [];
  for (let d = 0; d < ndims; d++) dims.push(view.getUint32(4 + 4 * d));
  const expected = offset + dims.reduce((a, b) => a * b, 1);
  if (bytes.length < expected) {
    throw new DatasetError(
      `${file} is truncated: expected ${expected} bytes, found ${bytes.length}; ${fix}`,
    );
  }
  if (bytes.length > expected) {
    throw new DatasetError(
      `${file} has the wrong length: expected ${expected} bytes, found ${bytes.length}; ${fix}`,
    );
  }
  return { dims, offset };
}

export function parseIdxImages(bytes: Uint8Array, file: string, fix: string): IdxImages {
  const { dims, offset } = parseHeader(bytes, file, IMAGE_MAGIC, "image", fix);
  const [count, rows, cols] = dims;
  if (rows === 0 || cols === 0) {
    throw new DatasetError(`${file} has zero-sized images (${rows}x${cols}); ${fix}`);
  }
  return { count, rows, cols, pixels: bytes.subarray(offset) };
}

export function parseIdxLabels(bytes: Uint8Array, file: string, fix: string): Uint8Array {
  return bytes.subarray(parseHeader(bytes, file, LABEL_MAGIC, "label", fix).offset);
}

/** Bytes to [-1, 1] through a 256-entry table: one typed-array pass, no per-pixel math. */
export function bytesToUnit(pixels: Uint8Array): Float32Array {
  const table = new Float32Array(256);
  for (let v = 0; v < 256; v++) table[v] = v / 127.5 - 1;
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = table[pixels[i]];
  return out;
}
