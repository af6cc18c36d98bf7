// The gRPC side of the wire: loading proto/agon.proto with the options the
// generated types in proto/gen assume, channel settings chosen on purpose, and
// the chunk codec that carries float32 arrays (as fp32, bf16 or fp16 bytes) in
// pieces of at most 1 MiB.
import { resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { Dtype as WireDtype } from "../proto/gen/agon/v1/Dtype.js";
import type { ProtoGrpcType } from "../proto/gen/agon.js";
import { sha256 } from "./hash.js";
import { bytesPerValue, type Dtype, decodeValues, encodeValues } from "./precision.js";

export const PROTO_PATH = resolve(import.meta.dirname, "../proto/agon.proto");

/** The status details a Work stream ends with when its coordinator stops on purpose (SIGTERM, Ctrl-C). */
export const STOPPING_DETAILS = "the coordinator is stopping (its checkpoint is written)";

/**
 * Trailing metadata of a Join refused because another live process holds the worker's name
 * (ALREADY_EXISTS): milliseconds until that holder's lease runs out unless it heartbeats,
 * a decimal integer ≥ 0.
 */
export const LEASE_LEFT_MS_KEY = "agon-lease-left-ms";

/** Chunk payload size: well under gRPC's 4 MiB default and NATS's 1 MiB max payload, headers included. */
export const CHUNK_BYTES = 512 * 1024;
/** Largest message either side accepts: one chunk plus headers, with room to spare. */
export const MAX_MESSAGE_BYTES = 2 * 1024 * 1024;
/** Largest array (in values) a peer may announce: 256 MiB of float32 weights. */
export const MAX_ARRAY_LENGTH = 64 * 1024 * 1024;

export function loadAgonProto(): ProtoGrpcType {
  // Must match the flags in package.json's "proto" script (the generated types assume them).
  const def = protoLoader.loadSync(PROTO_PATH, {
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType;
}

/**
 * How long a keepalive ping may go unanswered before the connection is
 * dropped. A process that is busy for a while (a coordinator writing a big
 * checkpoint or applying a big update) reads the answer only when it gets
 * back to its event loop, and grpc-js judges its timer first: a short timeout
 * would drop healthy peers after every long stall. A frozen worker is noticed
 * by its lease instead (2 s without a heartbeat; see coordinator/scheduler.ts).
 */
export const KEEPALIVE_TIMEOUT_MS = 20_000;

/**
 * Keepalive pings every second (answered within KEEPALIVE_TIMEOUT_MS) find a
 * dead link or a frozen coordinator; reconnect backoff stays short.
 */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.keepalive_time_ms": 1000,
  "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000,
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
};

export const SERVER_OPTIONS: grpc.ServerOptions = {
  // A connection with no call open for 5 s is closed (a worker always has its Work
  // stream open; a client that comes back just reconnects): silent peers hold nothing.
  "grpc.max_connection_idle_ms": 5000,
  "grpc.keepalive_time_ms": 1000,
  "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
};

export function floatBytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Splits an array's bytes (a Float32Array: its fp32 bytes) into chunks of at most CHUNK_BYTES (at least one chunk). */
export function chunksOf(a: Float32Array | Uint8Array): Uint8Array[] {
  const bytes = a instanceof Uint8Array ? a : floatBytes(a);
  const out: Uint8Array[] = [];
  for (let off = 0; off < bytes.byteLength; off += CHUNK_BYTES) {
    out.push(bytes.subarray(off, Math.min(off + CHUNK_BYTES, bytes.byteLength)));
  }
  if (out.length === 0) out.push(new Uint8Array(0));
  return out;
}

/**
 * How a chunked array's values are encoded: a transport dtype (gradients, parameters),
 * or fp64 (IEEE double, little-endian) for an evaluation microtask's feature statistics.
 */
export type WireValues = Dtype | "fp64";

function valueBytes(values: WireValues): number {
  return values === "fp64" ? 8 : bytesPerValue(values);
}

/** Chunks of `length` values encoded as `dtype`: the count follows the encoded byte size. */
export function chunkCount(length: number, dtype: WireValues = "fp32"): number {
  return Math.max(1, Math.ceil((length * valueBytes(dtype)) / CHUNK_BYTES));
}

/** A float64 array as it travels (little-endian bytes), with their sha256. */
export function encodeFloat64(values: Float64Array): {
  length: number;
  bytes: Uint8Array;
  checksum: string;
} {
  const bytes = new Uint8Array(values.length * 8);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat64(i * 8, values[i], true);
  return { length: values.length, bytes, checksum: sha256(bytes) };
}

/** An array as it travels: its values encoded in `dtype`, and the sha256 of those bytes. */
export interface EncodedArray {
  dtype: Dtype;
  length: number;
  bytes: Uint8Array;
  checksum: string;
}

export function encodeArray(values: Float32Array, dtype: Dtype): EncodedArray {
  const bytes = encodeValues(dtype, values);
  return { dtype, length: values.length, bytes, checksum: sha256(bytes) };
}

/** The proto enum name of a dtype (`bf16` → `DTYPE_BF16`). */
export function wireDtype(dtype: WireValues): WireDtype {
  return `DTYPE_${dtype.toUpperCase()}` as WireDtype;
}

/**
 * Checks that a peer's announced dtype (proto enum, or a NATS header where
 * "" means fp32) is the one the run config sets for this kind of array.
 */
export function checkDtype(announced: string | number, expected: WireValues, what: string): void {
  const name =
    announced === "" || announced === "DTYPE_FP32"
      ? "fp32"
      : typeof announced === "string" && announced.startsWith("DTYPE_")
        ? announced.slice(6).toLowerCase()
        : String(announced).slice(0, 16);
  if (name !== expected) {
    throw new WireError(`${what} arrived as ${name}, but this run's transport sets ${expected}`);
  }
}

export class WireError extends Error {
  override name = "WireError";
}

/**
 * Reassembles a float32 array from chunks of `dtype` bytes, checking everything
 * a hostile or broken peer could get wrong: announced sizes, chunk order and
 * sizes, the checksum (of the encoded bytes), and (optionally) that every
 * decoded value is finite.
 */
export class ChunkAssembler {
  /**
   * The chunks received so far: memory grows as they arrive, so an upload
   * that announces a large array but sends nothing costs nothing.
   */
  private readonly parts: Uint8Array[] = [];
  private readonly byteLength: number;
  private next = 0;
  private offset = 0;

  constructor(
    readonly length: number,
    readonly chunks: number,
    readonly checksum: string,
    readonly dtype: WireValues = "fp32",
  ) {
    if (!Number.isInteger(length) || length < 0 || length > MAX_ARRAY_LENGTH) {
      throw new WireError(`announced length ${length} is out of range`);
    }
    if (chunks !== chunkCount(length, dtype)) {
      throw new WireError(
        `announced ${chunks} chunks for ${length} ${dtype} values, expected ${chunkCount(length, dtype)}`,
      );
    }
    if (!/^[0-9a-f]{64}$/.test(checksum))
      throw new WireError("checksum is not a sha256 hex digest");
    this.byteLength = length * valueBytes(dtype);
  }

  add(index: number, data: Uint8Array): void {
    if (index !== this.next) throw new WireError(`chunk ${index} arrived, expected ${this.next}`);
    const expected = Math.min(CHUNK_BYTES, this.byteLength - this.offset);
    if (data.byteLength !== expected) {
      throw new WireError(`chunk ${index} has ${data.byteLength} bytes, expected ${expected}`);
    }
    this.parts.push(data);
    this.offset += data.byteLength;
    this.next += 1;
  }

  /** Bytes received so far (what this upload holds in memory). */
  get received(): number {
    return this.offset;
  }

  get complete(): boolean {
    return this.next === this.chunks;
  }

  /** The array, after verifying completeness, checksum and (if asked) finiteness. */
  finish(requireFinite: boolean): Float32Array {
    if (this.dtype === "fp64") throw new WireError("an fp64 array is read with finishFloat64");
    const out = decodeValues(this.dtype, this.verifiedBytes());
    if (requireFinite) {
      // v − v is 0 for a finite v and NaN for ±Inf or NaN: one branch-free pass, then find the culprit.
      let probe = 0;
      const n = out.length;
      for (let i = 0; i < n; i++) probe += out[i] - out[i];
      if (probe !== 0) {
        const i = out.findIndex((v) => !Number.isFinite(v));
        throw new WireError(`value ${i} is not finite (${out[i]})`);
      }
    }
    return out;
  }

  /** An fp64 array (evaluation statistics), after verifying completeness and checksum. */
  finishFloat64(): Float64Array {
    if (this.dtype !== "fp64") throw new WireError(`a ${this.dtype} array is read with finish`);
    const bytes = this.verifiedBytes();
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Float64Array(this.length);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * 8, true);
    return out;
  }

  private verifiedBytes(): Uint8Array {
    if (!this.complete)
      throw new WireError(`stream ended after ${this.next} of ${this.chunks} chunks`);
    const bytes = new Uint8Array(this.byteLength);
    let at = 0;
    for (const part of this.parts) {
      bytes.set(part, at);
      at += part.byteLength;
    }
    if (sha256(bytes) !== this.checksum) throw new WireError("checksum mismatch");
    return bytes;
  }
}
