// A reader for the safetensors format (huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON mapping tensor names to {dtype, shape, data_offsets}
// (byte offsets into the data that follows the header), an optional "__metadata__" map of
// strings, then the tensors' raw little-endian bytes. Only float32 tensors are read here:
// weight files Agon loads (the Inception weights, bench/convert_inception.py) are written so.
import { readFileSync } from "node:fs";
import { fileErrorCause } from "../errno.js";

export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

/** One tensor of a safetensors file: its shape and its values (a copy, float32). */
export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

/** The tensors and the metadata map of a safetensors file. */
export interface Safetensors {
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/**
 * Reads a safetensors file whose tensors are all float32 (dtype "F32"). Throws
 * SafetensorsError, with the path, when the file is missing, truncated, not safetensors,
 * or holds another dtype.
 */
export function readSafetensors(path: string): Safetensors {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new SafetensorsError(`cannot read ${path}: ${fileErrorCause(err)}`);
  }
  if (bytes.length < 8) throw new SafetensorsError(`${path} is not a safetensors file (too short)`);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  if (headerLength < 2 || 8 + headerLength > bytes.length)
    throw new SafetensorsError(`${path} is not a safetensors file (bad header length)`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
  } catch {
    throw new SafetensorsError(`${path} is not a safetensors file (header is not JSON)`);
  }
  const body = bytes.subarray(8 + headerLength);
  const tensors = new Map<string, NamedTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = value as Record<string, string>;
      continue;
    }
    const e = value as HeaderEntry;
    if (e?.dtype !== "F32")
      throw new SafetensorsError(
        `${path}: tensor ${name} has dtype ${String(e?.dtype)}; only F32 is read (convert with bench/convert_inception.py)`,
      );
    const count = e.shape.reduce((a, b) => a * b, 1);
    const [begin, end] = e.data_offsets;
    if (!(begin >= 0 && end === begin + 4 * count && end <= body.length))
      throw new SafetensorsError(`${path}: tensor ${name} has bad data offsets (truncated file?)`);
    // Copied: the body's offsets need not be 4-byte aligned in the Buffer's memory.
    const data = new Float32Array(count);
    const view = new DataView(body.buffer, body.byteOffset + begin, end - begin);
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(4 * i, true);
    tensors.set(name, { shape: [...e.shape], data });
  }
  return { tensors, metadata };
}
