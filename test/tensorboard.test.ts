// TensorBoard event files, read back by an independent reader: its own TFRecord
// framing and CRC-32C (a table over the Castagnoli polynomial, not the
// writer's crc-32 package) and its own copy of the Event and Summary messages
// of TensorFlow's published event.proto and summary.proto (field numbers as
// there), parsed by protobufjs from .proto text. Checks every CRC, that every
// scalar of metrics.jsonl is there at its step, that the sample grids are the
// run's PNGs, the config text, and the cut back on resume.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { PNG } from "pngjs";
import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { RunDirWriteError } from "../coordinator/rundir.js";
import { EventFileWriter } from "../coordinator/tensorboard.js";
import { runAgon, tempDir, tinyRing } from "./helpers/cli.js";

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's mask: rotate right by 15 and add a constant. */
const masked = (crc: number) => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;

const EVENT_PROTO = `
syntax = "proto3";
package tensorflow;
message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what { string file_version = 3; bytes graph_def = 4; Summary summary = 5; }
}
message Summary {
  message Image { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }
  message Value {
    string node_name = 7;
    string tag = 1;
    SummaryMetadata metadata = 9;
    oneof value { float simple_value = 2; bytes obsolete_old_style_histogram = 3; Image image = 4; TensorProto tensor = 8; }
  }
  repeated Value value = 1;
}
message SummaryMetadata {
  message PluginData { string plugin_name = 1; bytes content = 2; }
  PluginData plugin_data = 1;
  string display_name = 2;
}
message TensorShapeProto { message Dim { int64 size = 1; string name = 2; } repeated Dim dim = 2; }
message TensorProto { int32 dtype = 1; TensorShapeProto tensor_shape = 2; repeated bytes string_val = 8; }
`;
const Event = protobuf.parse(EVENT_PROTO, { keepCase: true }).root.lookupType("tensorflow.Event");

interface TbValue {
  tag: string;
  simple_value?: number;
  image?: { height: number; width: number; colorspace: number; encoded_image_string: Buffer };
  metadata?: { plugin_data?: { plugin_name: string } };
  tensor?: { dtype: number; string_val: Buffer[] };
}
interface TbEvent {
  wall_time: number;
  step: number;
  file_version?: string;
  summary?: { value: TbValue[] };
}

/** Every event of one file; throws on a bad length or data CRC. */
function readEvents(path: string): TbEvent[] {
  const bytes = readFileSync(path);
  const events: TbEvent[] = [];
  let at = 0;
  while (at < bytes.length) {
    const header = bytes.subarray(at, at + 8);
    if (bytes.readUInt32LE(at + 8) !== masked(crc32c(header)))
      throw new Error(`${path}@${at}: length CRC`);
    const n = Number(bytes.readBigUInt64LE(at));
    const data = bytes.subarray(at + 12, at + 12 + n);
    if (bytes.readUInt32LE(at + 12 + n) !== masked(crc32c(data)))
      throw new Error(`${path}@${at}: data CRC`);
    events.push(Event.toObject(Event.decode(data), { longs: Number, defaults: false }) as TbEvent);
    at += 12 + n + 4;
  }
  return events;
}

function runEvents(dir: string): TbEvent[] {
  const files = readdirSync(dir)
    .filter((f) => f.includes(".tfevents."))
    .sort();
  expect(files.length).toBeGreaterThan(0);
  return files.flatMap((f) => {
    const events = readEvents(join(dir, f));
    expect(events[0].file_version).toBe("brain.Event:2");
    return events;
  });
}

/** The scalars metrics.jsonl holds, as `tag@step` → value: `<kind>/<field>` for every number but schema and step. */
function metricsScalars(dir: string): Map<string, number> {
  const lines = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n");
  // A resumed run appends the phases after its checkpoint again: the last line of each phase counts.
  const byPhase = new Map(
    lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .map((m) => [`${m.step}.${m.phase}`, m]),
  );
  const out = new Map<string, number>();
  for (const m of byPhase.values()) {
    const add = (tag: string, v: unknown) => {
      if (typeof v === "number") out.set(`${tag}@${m.step}`, v);
      else if (v !== null && typeof v === "object")
        for (const [k, x] of Object.entries(v)) add(`${tag}.${k}`, x);
    };
    for (const [k, v] of Object.entries(m))
      if (k !== "schema" && k !== "step") add(`${m.kind}/${k}`, v);
  }
  return out;
}

const config = (dir: string, steps: number, extra: string[] = []) => [
  "train",
  ...tinyRing({ steps }),
  "--set",
  "checkpoint.every=3",
  "samples.every=3",
  "samples.count=16",
  ...extra,
  "--backend",
  "cpu",
  "--run-dir",
  dir,
];

describe("TensorBoard event files", () => {
  it("the reader's CRC-32C is the standard one", () => {
    expect(crc32c(Buffer.from("123456789"))).toBe(0xe3069283);
  });

  it("hold every scalar of metrics.jsonl at its step, the sample grids as PNGs and the config; resume cuts them back", async () => {
    const dir = tempDir();
    const first = await runAgon(config(dir, 6));
    expect(first.code, first.stderr).toBe(0);
    // Interrupted after step 3: the step-6 checkpoint is gone, so the next run resumes from 3.
    rmSync(join(dir, "ckpt-00000006"), { recursive: true });
    const again = await runAgon(config(dir, 6));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/resum/i);

    const events = runEvents(dir);
    const scalars = new Map<string, number>();
    for (const e of events)
      for (const v of e.summary?.value ?? [])
        if (v.simple_value !== undefined) {
          const key = `${v.tag}@${e.step}`;
          expect(scalars.has(key), `${key} once (cut back on resume)`).toBe(false);
          scalars.set(key, v.simple_value);
        }
    const expected = metricsScalars(dir);
    expect([...scalars.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [key, value] of expected) expect(scalars.get(key), key).toBe(Math.fround(value));
    expect(expected.has("D/dLoss@5") && expected.has("G/gLoss@0")).toBe(true);

    const images = events.flatMap((e) =>
      (e.summary?.value ?? []).filter((v) => v.image).map((v) => ({ step: e.step, ...v })),
    );
    expect(images.map((i) => `${i.tag}@${i.step}`)).toEqual(["samples@3", "samples@6"]);
    for (const { step, image } of images) {
      const png = PNG.sync.read(image!.encoded_image_string);
      expect([png.width, png.height]).toEqual([image!.width, image!.height]);
      const file = readFileSync(
        join(
          dir,
          "samples",
          readdirSync(join(dir, "samples")).find((f) => f.includes(String(step)))!,
        ),
      );
      expect(Buffer.compare(file, image!.encoded_image_string)).toBe(0);
    }

    // Each start logs the config it ran with, at the step it started from.
    const texts = events.flatMap((e) =>
      (e.summary?.value ?? []).filter((v) => v.tensor).map((v) => ({ step: e.step, ...v })),
    );
    expect(texts.map((t) => `${t.tag}@${t.step}`)).toEqual(["config@0", "config@3"]);
    const text = texts[1];
    expect(text.metadata?.plugin_data?.plugin_name).toBe("text");
    const markdown = text.tensor!.string_val[0].toString("utf8");
    expect(JSON.parse(markdown.replace(/^```json\n|\n```$/g, ""))).toEqual(
      JSON.parse(readFileSync(join(dir, "config.json"), "utf8")),
    );
  });

  it("hold the evaluation's FD (eval.every) as eval/fd at each evaluated step, equal to eval.jsonl; resume keeps the checkpoint's", async () => {
    const dir = tempDir();
    const evalRun = [
      "train",
      "--dataset",
      "mnist",
      "--model",
      "mlp",
      "--steps",
      "4",
      "--set",
      "dataset.limit=256",
      "model.latentDim=8",
      "model.gHidden=[16]",
      "model.dHidden=[16]",
      "eval.every=2",
      "eval.n=50",
      "checkpoint.every=2",
      "--backend",
      "wasm",
      "--run-dir",
      dir,
    ];
    const first = await runAgon(evalRun);
    expect(first.code, first.stderr).toBe(0);
    // Resumed from step 2: its evaluation stays, step 4's is made again (once in the files).
    rmSync(join(dir, "ckpt-00000004"), { recursive: true });
    const again = await runAgon(evalRun);
    expect(again.code, again.stderr).toBe(0);
    const fds = runEvents(dir).flatMap((e) =>
      (e.summary?.value ?? [])
        .filter((v) => v.tag === "eval/fd")
        .map((v) => [e.step, v.simple_value]),
    );
    const lines = readFileSync(join(dir, "eval.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step: number; fd: number });
    expect(fds).toEqual(lines.map((l) => [l.step, Math.fround(l.fd)]));
    expect(fds.map(([step]) => step)).toEqual([2, 4]);
  }, 120_000);

  it("are not written with run.tensorboard=false", async () => {
    const dir = tempDir();
    const r = await runAgon(config(dir, 1, ["run.tensorboard=false"]));
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(dir).filter((f) => f.includes("tfevents"))).toEqual([]);
  });

  it("a write into a vanished run dir throws RunDirWriteError naming the file, in words", () => {
    const dir = join(tempDir(), "run");
    mkdirSync(dir);
    const writer = new EventFileWriter(dir);
    renameSync(dir, `${dir}-gone`);
    let thrown: unknown;
    try {
      writer.scalars(1, { "D/loss": 0.5 });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(RunDirWriteError);
    expect((thrown as Error).message).toBe(
      `cannot write ${writer.path}: no such file or directory (was it removed?)`,
    );
  });
});
