// Training from a prepared dataset with real processes: `agon train` equals
// `agon local --workers 2` bit for bit with xflip on; a worker whose copy of the
// data differs is refused at Join (one line on both sides); a worker whose copy
// has a damaged chunk stops with one line and the run still ends with the
// reference weights; a run whose workers share the data trains.

import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import { beforeAll, describe, expect, it } from "vitest";
import { type PrepareOptions, prepareDataset } from "../shared/data/prepare.js";
import type { PreparedManifest } from "../shared/data/prepared.js";
import { runAgon, tempDir } from "./helpers/cli.js";
import { startCoordinator, startWorker } from "./helpers/cluster.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

const OPTS: Omit<PrepareOptions, "out"> = {
  crop: "center",
  background: "white",
  onError: "skip",
  jobs: 2,
  split: "train",
  resolution: 12,
  channels: 3,
  chunkBytes: 2048,
};

/** A 16×16 coloured shape: class 0 squares, class 1 discs, shade and place from i. */
function shape(kind: number, i: number): Promise<Buffer> {
  const s = 16;
  const px = Buffer.alloc(s * s * 3, 20);
  const cx = 5 + (i % 6);
  const cy = 5 + ((i * 7) % 6);
  const colour = [80 + ((i * 37) % 170), 60 + ((i * 53) % 190), 90 + ((i * 29) % 160)];
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      const inside =
        kind === 0
          ? Math.abs(x - cx) < 4 && Math.abs(y - cy) < 3
          : (x - cx) ** 2 + (y - cy) ** 2 < 12;
      if (inside) px.set(colour, (y * s + x) * 3);
    }
  }
  return sharp(px, { raw: { width: s, height: s, channels: 3 } })
    .png()
    .toBuffer();
}

let base: string;
/** The run's data, an identical copy, a copy with one image different, a copy with a flipped chunk byte. */
let data: { run: string; same: string; oneImageDiffers: string; damaged: string };

beforeAll(async () => {
  base = tempDir("agon-data-train-");
  const folder = join(base, "images");
  for (const [k, name] of ["discs", "squares"].entries()) {
    mkdirSync(join(folder, name), { recursive: true });
    for (let i = 0; i < 24; i++)
      writeFileSync(join(folder, name, `${String(i).padStart(2, "0")}.png`), await shape(1 - k, i));
  }
  data = {
    run: join(base, "run-data"),
    same: join(base, "host-b-same"),
    oneImageDiffers: join(base, "host-b-differs"),
    damaged: join(base, "host-b-damaged"),
  };
  await prepareDataset(folder, { ...OPTS, out: data.run });
  cpSync(data.run, data.same, { recursive: true });
  cpSync(data.run, data.damaged, { recursive: true });
  const m: PreparedManifest = JSON.parse(readFileSync(join(data.run, "manifest.json"), "utf8"));
  for (const c of m.chunks) {
    const f = join(data.damaged, c.file);
    const bytes = readFileSync(f);
    bytes[7] ^= 0x10;
    writeFileSync(f, bytes);
  }
  // The same folder on "host B", where one image differs.
  writeFileSync(join(folder, "discs", "03.png"), await shape(0, 3));
  await prepareDataset(folder, { ...OPTS, out: data.oneImageDiffers });
}, 60_000);

/** A tiny MLP GAN on the prepared data with xflip on. */
const runFlags = (runDir: string, xflip = true) => [
  "--dataset",
  "prepared",
  "--data-path",
  data.run,
  "--model",
  "mlp",
  "--set",
  "model.latentDim=4",
  "model.gHidden=[16]",
  "model.dHidden=[16]",
  `dataset.xflip=${xflip}`,
  "dataset.cacheMB=0",
  "--steps",
  "8",
  "--shards",
  "4",
  "--batch",
  "16",
  "--run-dir",
  runDir,
];

function lastJson(stdout: string): { step: number; hashes: { G: string; D: string } } {
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

describe("training from a prepared dataset", () => {
  it("agon train equals agon local --workers 2 bit for bit with xflip on (and xflip changes the result)", async () => {
    const [train, trainNoFlip, local] = await Promise.all([
      runAgon(["train", ...runFlags(tempDir()), "--backend", "wasm", "--json"]),
      runAgon(["train", ...runFlags(tempDir(), false), "--backend", "wasm", "--json"]),
      runAgon(
        [
          "local",
          "--workers",
          "2",
          ...runFlags(tempDir()),
          "--backend",
          "wasm",
          "--nats",
          nats.url,
          "--set",
          `run.id=prep-${process.pid}`,
          "--json",
        ],
        { timeoutMs: 170_000 },
      ),
    ]);
    expect(train.code, train.stderr).toBe(0);
    expect(local.code, local.stderr).toBe(0);
    expect(trainNoFlip.code, trainNoFlip.stderr).toBe(0);
    expect(lastJson(local.stdout).step).toBe(8);
    expect(lastJson(local.stdout).hashes).toEqual(lastJson(train.stdout).hashes);
    expect(lastJson(trainNoFlip.stdout).hashes.D).not.toBe(lastJson(train.stdout).hashes.D);
  }, 180_000);

  it("refuses at Join a worker whose data differs by one image; a damaged chunk stops a worker; workers with the run's data finish it", async () => {
    const ref = await runAgon(["train", ...runFlags(tempDir()), "--backend", "wasm", "--json"]);
    expect(ref.code, ref.stderr).toBe(0);
    const coord = await startCoordinator([...runFlags(tempDir()), "--backend", "wasm"], nats.url);

    const differs = startWorker(coord.address, nats.url, "host-b", [
      "--data-path",
      data.oneImageDiffers,
    ]);
    expect(await differs.exited).toBe(2);
    const runFp = JSON.parse(readFileSync(join(data.run, "manifest.json"), "utf8"))
      .fingerprint as string;
    const hostFp = JSON.parse(readFileSync(join(data.oneImageDiffers, "manifest.json"), "utf8"))
      .fingerprint as string;
    const errors = differs
      .stderr()
      .split("\n")
      .filter((l) => l.startsWith("agon: error:"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(hostFp.slice(0, 16));
    expect(errors[0]).toContain(runFp.slice(0, 16));
    expect(coord.stderr()).toMatch(
      new RegExp(`worker host-b refused at Join: .*${hostFp.slice(0, 16)}.*${runFp.slice(0, 16)}`),
    );

    // Same fingerprint (the manifest is intact), but its chunks are damaged: it joins, then stops at the first read.
    const damaged = startWorker(coord.address, nats.url, "host-c", ["--data-path", data.damaged]);
    expect(await damaged.exited).toBe(2);
    const damagedErrors = damaged
      .stderr()
      .split("\n")
      .filter((l) => l.startsWith("agon: error:"));
    expect(damagedErrors).toHaveLength(1);
    expect(damagedErrors[0]).toMatch(/chunk .*host-b-damaged\/chunk-\d+\.bin is damaged/);

    const good = startWorker(coord.address, nats.url, "host-d", ["--data-path", data.same]);
    const done = await coord.done;
    expect(done.step).toBe(8);
    expect(done.hashes).toEqual(lastJson(ref.stdout).hashes);
    expect(await good.exited).toBe(0);
    expect(await coord.exited).toBe(0);
  }, 180_000);

  it("agon train on a damaged chunk fails with one line naming it", async () => {
    const r = await runAgon([
      "train",
      ...runFlags(tempDir()),
      "--data-path",
      data.damaged,
      "--backend",
      "wasm",
    ]);
    expect(r.code).toBe(2);
    const lines = r.stderr
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("agon: error:"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/chunk .*host-b-damaged\/chunk-\d+\.bin is damaged/);
  }, 60_000);

  it("a resolution or channel count the prepared data does not hold is refused in one line", async () => {
    for (const [set, want] of [
      [
        "dataset.resolution=32",
        /dataset\.resolution is 32, but the prepared dataset .* holds 12×12 images/,
      ],
      [
        "dataset.channels=1",
        /dataset\.channels is 1, but the prepared dataset .* holds 3-channel images/,
      ],
    ] as const) {
      const runDir = tempDir();
      const r = await runAgon(["train", ...runFlags(runDir), "--set", set, "--backend", "cpu"]);
      expect(r.code, set).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(want);
    }
  }, 60_000);
});
