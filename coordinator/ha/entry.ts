// The replicated log's entries (coordinator/ha/log.ts): a phase's outcome, or
// a full snapshot of the training state, as one binary buffer: a 4-byte length,
// a JSON header, then the float32 arrays the header lists, in its order.
import type { CheckpointData } from "../checkpoint.js";
import type { PhaseUpdate } from "../state.js";

/**
 * Weight hashes after an entry is applied (sha256 hex, as TrainingState.hashes()
 * gives them); a phase entry carries those of what it changed.
 */
export interface EntryHashes {
  G?: string;
  D?: string;
  ema?: string;
}

/**
 * One phase as the leader applied it: the update, the hashes it produced, and
 * the metrics line it recorded (so a standby's metrics.jsonl is the leader's).
 */
export interface PhaseEntry {
  type: "phase";
  /** The leader's fencing epoch (coordinator/ha/lease.ts). */
  epoch: number;
  update: PhaseUpdate;
  /** Adam steps of both networks after the update. */
  adamSteps: { G: number; D: number };
  hashes: EntryHashes;
  metrics: object;
}

/** The whole training state: where a follower starts (a new leader's first entry, a rollback). */
export interface SnapshotEntry {
  type: "snapshot";
  epoch: number;
  data: CheckpointData;
  hashes: EntryHashes;
  /** configHash (coordinator/checkpoint.ts) of the leader's config; absent in entries of older leaders. */
  configHash?: string;
}

export type LogEntry = PhaseEntry | SnapshotEntry;

/** A log entry that does not decode (truncated, unknown type, wrong lengths). */
export class EntryError extends Error {
  override name = "EntryError";
}

/** The entry as bytes (see the file's head). */
export function encodeEntry(entry: LogEntry): Uint8Array {
  const arrays: Float32Array[] = [];
  let header: object;
  if (entry.type === "phase") {
    const { grad, ...update } = entry.update;
    arrays.push(grad);
    header = { ...entry, update, lengths: [grad.length] };
  } else {
    const { weights, adam, ema, ...rest } = entry.data;
    arrays.push(weights.G, weights.D, adam.G.m, adam.G.v, adam.D.m, adam.D.v);
    if (ema) arrays.push(ema);
    header = {
      type: "snapshot",
      epoch: entry.epoch,
      hashes: entry.hashes,
      ...(entry.configHash !== undefined ? { configHash: entry.configHash } : {}),
      data: { ...rest, adamT: { G: adam.G.t, D: adam.D.t }, hasEma: ema !== undefined },
      lengths: arrays.map((a) => a.length),
    };
  }
  const json = Buffer.from(JSON.stringify(header));
  // Float32 arrays start 4-byte aligned so the reader can view them without a copy.
  const pad = (4 - ((4 + json.length) % 4)) % 4;
  const total = 4 + json.length + pad + arrays.reduce((s, a) => s + a.byteLength, 0);
  const out = new Uint8Array(total);
  new DataView(out.buffer).setUint32(0, json.length + pad, true);
  out.set(json, 4);
  out.fill(0x20, 4 + json.length, 4 + json.length + pad);
  let at = 4 + json.length + pad;
  for (const a of arrays) {
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), at);
    at += a.byteLength;
  }
  return out;
}

/** Decodes what encodeEntry wrote. Throws EntryError. */
export function decodeEntry(bytes: Uint8Array): LogEntry {
  if (bytes.length < 4) throw new EntryError("log entry shorter than its length prefix");
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  if (4 + n > bytes.length) throw new EntryError("log entry header runs past its end");
  // biome-ignore lint/suspicious/noExplicitAny: checked field by field below
  let h: any;
  try {
    h = JSON.parse(Buffer.from(bytes.subarray(4, 4 + n)).toString("utf8"));
  } catch {
    throw new EntryError("log entry header is not JSON");
  }
  const lengths: unknown = h?.lengths;
  if (!Array.isArray(lengths) || !lengths.every((l) => Number.isInteger(l) && l >= 0))
    throw new EntryError("log entry header has no array lengths");
  // A copy (Buffer's slice would be a view into a shared pool): aligned, and owned by the entry.
  const body = new Uint8Array(bytes.byteLength - 4 - n);
  body.set(bytes.subarray(4 + n));
  const floats = body.byteLength / 4;
  if (floats !== lengths.reduce((s: number, l: number) => s + l, 0))
    throw new EntryError("log entry arrays do not match their lengths");
  const arrays: Float32Array[] = [];
  let at = 0;
  for (const l of lengths as number[]) {
    arrays.push(new Float32Array(body.buffer, at * 4, l));
    at += l;
  }
  if (h.type === "phase" && arrays.length === 1) {
    return {
      type: "phase",
      epoch: h.epoch,
      update: { ...h.update, grad: arrays[0] },
      adamSteps: h.adamSteps,
      hashes: h.hashes,
      metrics: h.metrics,
    };
  }
  if (h.type === "snapshot" && arrays.length === (h.data?.hasEma ? 7 : 6)) {
    const d = h.data;
    const data: CheckpointData = {
      step: d.step,
      phase: d.phase,
      versions: d.versions,
      weights: { G: arrays[0], D: arrays[1] },
      adam: {
        G: { t: d.adamT.G, m: arrays[2], v: arrays[3] },
        D: { t: d.adamT.D, m: arrays[4], v: arrays[5] },
      },
      ...(d.hasEma ? { ema: arrays[6] } : {}),
    };
    return {
      type: "snapshot",
      epoch: h.epoch,
      data,
      hashes: h.hashes,
      ...(typeof h.configHash === "string" ? { configHash: h.configHash } : {}),
    };
  }
  throw new EntryError(`log entry of unknown type ${JSON.stringify(h.type)}`);
}
