// TensorBoard event files in the run dir (`run.tensorboard`, on by default):
// every metrics.jsonl line as scalars, sample grids as images and the config as
// text, so `tensorboard --logdir runs/` shows runs side by side. The format is
// TensorFlow's: TFRecord framing (uint64 length, masked CRC-32C of the length,
// the bytes, masked CRC-32C of the bytes; tensorflow/core/lib/io/record_writer.cc)
// around `tensorflow.Event` protobufs (tensorflow/core/util/event.proto,
// tensorflow/core/framework/summary.proto), encoded with protobufjs.
import {
  appendFileSync,
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import CRC32C from "crc-32/crc32c.js";
import protobuf from "protobufjs";
import { guardWrite } from "./rundir.js";

/** The fields of event.proto and summary.proto that Agon writes, by their TensorFlow numbers. */
const SCHEMA = {
  nested: {
    tensorflow: {
      nested: {
        Event: {
          oneofs: { what: { oneof: ["fileVersion", "summary"] } },
          fields: {
            wallTime: { type: "double", id: 1 },
            step: { type: "int64", id: 2 },
            fileVersion: { type: "string", id: 3 },
            summary: { type: "Summary", id: 5 },
          },
        },
        Summary: {
          fields: { value: { rule: "repeated", type: "Value", id: 1 } },
          nested: {
            Image: {
              fields: {
                height: { type: "int32", id: 1 },
                width: { type: "int32", id: 2 },
                colorspace: { type: "int32", id: 3 },
                encodedImageString: { type: "bytes", id: 4 },
              },
            },
            Value: {
              oneofs: { value: { oneof: ["simpleValue", "image", "tensor"] } },
              fields: {
                tag: { type: "string", id: 1 },
                simpleValue: { type: "float", id: 2 },
                image: { type: "Image", id: 4 },
                tensor: { type: "TensorProto", id: 8 },
                metadata: { type: "SummaryMetadata", id: 9 },
              },
            },
          },
        },
        SummaryMetadata: {
          fields: { pluginData: { type: "PluginData", id: 1 } },
          nested: {
            PluginData: {
              fields: {
                pluginName: { type: "string", id: 1 },
                content: { type: "bytes", id: 2 },
              },
            },
          },
        },
        TensorProto: {
          fields: {
            dtype: { type: "int32", id: 1 },
            tensorShape: { type: "TensorShapeProto", id: 2 },
            stringVal: { rule: "repeated", type: "bytes", id: 8 },
          },
        },
        TensorShapeProto: { fields: {} },
      },
    },
  },
};

const EventType = protobuf.Root.fromJSON(SCHEMA).lookupType("tensorflow.Event");
/** types.proto: DT_STRING. */
const DT_STRING = 7;

/** The CRC-32C of `bytes`, masked as TFRecord stores it (so a CRC of CRCs is not a CRC). */
export function maskedCrc32c(bytes: Uint8Array): number {
  const crc = CRC32C.buf(bytes) >>> 0;
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord: length, its masked CRC, the data, the data's masked CRC. */
export function frameRecord(data: Uint8Array): Buffer {
  const out = Buffer.alloc(8 + 4 + data.length + 4);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc32c(out.subarray(0, 8)), 8);
  out.set(data, 12);
  out.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return out;
}

/** The records of a TFRecord file; a torn last record (a killed writer) ends the list. */
export function readRecords(bytes: Buffer): Buffer[] {
  const records: Buffer[] = [];
  let at = 0;
  while (at + 12 <= bytes.length) {
    if (bytes.readUInt32LE(at + 8) !== maskedCrc32c(bytes.subarray(at, at + 8))) break;
    const n = Number(bytes.readBigUInt64LE(at));
    if (at + 12 + n + 4 > bytes.length) break;
    const data = bytes.subarray(at + 12, at + 12 + n);
    if (bytes.readUInt32LE(at + 12 + n) !== maskedCrc32c(data)) break;
    records.push(data);
    at += 12 + n + 4;
  }
  return records;
}

/** Width and height of a PNG, from its IHDR chunk. */
function pngSize(png: Buffer): { width: number; height: number } {
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

/** Event files are the files of a dir whose name holds "tfevents", as TensorBoard finds them. */
export const isEventFile = (name: string): boolean => name.includes(".tfevents.");

/**
 * Appends TensorBoard events to a new event file in `dir`
 * (`events.out.tfevents.<seconds>.<host>.<pid>`); each call writes whole
 * records at once, so a killed process leaves at most one torn record, which
 * readers skip. A failed write (full disk, vanished run dir) throws
 * RunDirWriteError naming the file, as every run-dir write does.
 */
export class EventFileWriter {
  readonly path: string;

  constructor(
    dir: string,
    private readonly now: () => number = Date.now,
  ) {
    const host = hostname().replace(/[^A-Za-z0-9_.-]/g, "-");
    this.path = join(dir, `events.out.tfevents.${Math.floor(now() / 1000)}.${host}.${process.pid}`);
    this.write({ fileVersion: "brain.Event:2" }, 0);
  }

  /** Scalars (float32 in the file) at `step`, one event; non-finite values are left out. */
  scalars(step: number, values: Record<string, number>): void {
    const value = Object.entries(values)
      .filter(([, v]) => Number.isFinite(v))
      .map(([tag, simpleValue]) => ({ tag, simpleValue }));
    if (value.length > 0) this.write({ summary: { value } }, step);
  }

  /** A PNG image at `step`. */
  image(tag: string, step: number, png: Buffer): void {
    const { width, height } = pngSize(png);
    const colorspace = png[25] === 0 ? 1 : png[25] === 4 ? 2 : png[25] === 6 ? 4 : 3;
    this.write(
      {
        summary: {
          value: [{ tag, image: { height, width, colorspace, encodedImageString: png } }],
        },
      },
      step,
    );
  }

  /** Markdown text at `step`, for TensorBoard's text dashboard. */
  text(tag: string, step: number, markdown: string): void {
    const tensor = {
      dtype: DT_STRING,
      tensorShape: {},
      stringVal: [Buffer.from(markdown, "utf8")],
    };
    const metadata = { pluginData: { pluginName: "text" } };
    this.write({ summary: { value: [{ tag, metadata, tensor }] } }, step);
  }

  private write(what: object, step: number): void {
    const event = EventType.fromObject({ wallTime: this.now() / 1000, step, ...what });
    const record = frameRecord(EventType.encode(event).finish());
    guardWrite(this.path, () => appendFileSync(this.path, record));
  }
}

/**
 * Cuts the event files in `dir` back to a run resumed at `at` (phase
 * `at.phase` of step `at.step` is the next to apply), as rundir.ts's
 * trimAfterCheckpoint cuts metrics.jsonl and the grids: keeps the scalars of
 * phases applied before `at` (an event's phase is its `<kind>/phase` scalar)
 * and the images and evaluations (`eval/fd`) of steps ≤ `at.step` (logged at the completed-step count,
 * like samples/step-N.png). Returns how many events it dropped.
 */
export function cutEventFiles(dir: string, at: { step: number; phase: number }): number {
  let dropped = 0;
  for (const name of existsSync(dir) ? readdirSync(dir).filter(isEventFile) : []) {
    const path = join(dir, name);
    const records = readRecords(readFileSync(path));
    const kept = records.filter((record) => {
      const event = EventType.toObject(EventType.decode(record), { longs: Number }) as {
        step?: number;
        summary?: { value?: Array<{ tag?: string; image?: unknown; simpleValue?: number }> };
      };
      if (event.summary === undefined) return true; // the file_version header
      const values = event.summary.value ?? [];
      const step = event.step ?? 0;
      // Images and evaluations are of completed steps (made at position (step, 0)), as grids.
      if (values.some((v) => v.image || v.tag?.startsWith("eval/"))) return step <= at.step;
      const phase = values.find((v) => v.tag?.endsWith("/phase"))?.simpleValue ?? 0;
      return step < at.step || (step === at.step && phase < at.phase);
    });
    dropped += records.length - kept.length;
    if (kept.length === records.length) continue;
    writeFileSync(`${path}.tmp`, Buffer.concat(kept.map(frameRecord)));
    renameSync(`${path}.tmp`, path);
  }
  return dropped;
}
