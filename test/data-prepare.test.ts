// `agon data prepare` and `agon data inspect` as a user runs them (real child
// processes, real image files made with sharp), and the prepared dataset reader:
// bad files skipped or fatal, EXIF orientation, transparency, ImageFolder labels,
// checksums that catch a flipped byte, MNIST rows kept exactly.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PNG } from "pngjs";
import sharp from "sharp";
import { beforeAll, describe, expect, it } from "vitest";
import { DatasetError, loadDataset, PreparedDataset } from "../shared/data/index.js";
import { type PrepareOptions, prepareDataset } from "../shared/data/prepare.js";
import type { PreparedManifest } from "../shared/data/prepared.js";
import { runAgon, tempDir } from "./helpers/cli.js";

/** A size×size RGB image: one colour, with a bar of another in the left quarter. */
function solid(size: number, rgb: [number, number, number], bar?: [number, number, number]) {
  const px = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const c = bar && x < size / 4 ? bar : rgb;
      px.set(c, (y * size + x) * 3);
    }
  }
  return sharp(px, { raw: { width: size, height: size, channels: 3 } });
}

function manifestOf(dir: string): PreparedManifest {
  return JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
}

/** Mean of a prepared gray row's left/right halves. */
function halves(row: Uint8Array, r: number): { left: number; right: number } {
  let left = 0;
  let right = 0;
  for (let y = 0; y < r; y++) {
    for (let x = 0; x < r; x++) {
      if (x < r / 2) left += row[y * r + x];
      else right += row[y * r + x];
    }
  }
  return { left: left / ((r * r) / 2), right: right / ((r * r) / 2) };
}

/** prepareDataset's options as the CLI's defaults set them. */
const OPTS: Omit<PrepareOptions, "out"> = {
  crop: "center",
  background: "white",
  onError: "skip",
  jobs: 2,
  split: "train",
};

let src: string;
/** Files of `src` that must be skipped, with a word their reason contains. */
const BAD: Array<[string, RegExp]> = [
  [".hidden/", /hidden folder/],
  ["cats/.DS_Store", /hidden/],
  ["cats/._c0.jpg", /hidden/],
  ["cats/empty.png", /empty/],
  ["cats/notes.txt", /not an image/],
  ["dogs/garbage.jpg", /unsupported|format|corrupt|premature|not/i],
  ["dogs/truncated.jpg", /premature|truncat|corrupt|end|VipsJpeg/i],
];

beforeAll(async () => {
  src = tempDir("agon-prepare-src-");
  for (const d of ["cats", "dogs/puppies", "birds", ".hidden"])
    mkdirSync(join(src, d), { recursive: true });
  // Valid images of several kinds: 8-bit RGB PNG, JPEG, 16-bit gray PNG, palette PNG, CMYK JPEG, WebP.
  await solid(40, [200, 30, 30]).png().toFile(join(src, "cats/c1.png"));
  await solid(50, [30, 200, 30]).jpeg().toFile(join(src, "cats/c2.jpg"));
  await solid(32, [120, 120, 120])
    .grayscale()
    .png()
    .toColourspace("grey16")
    .toFile(join(src, "dogs/d1.png"));
  await solid(32, [10, 10, 220])
    .png({ palette: true, colours: 4 })
    .toFile(join(src, "dogs/puppies/p1.png"));
  await solid(36, [250, 200, 0]).jpeg().toColourspace("cmyk").toFile(join(src, "dogs/d2.jpg"));
  await solid(30, [0, 0, 0]).webp().toFile(join(src, "birds/b1.webp"));
  // A black stroke on a transparent background (alpha 0 everywhere but the stroke).
  const rgba = Buffer.alloc(32 * 32 * 4);
  for (let y = 0; y < 32; y++) for (let x = 14; x < 18; x++) rgba[(y * 32 + x) * 4 + 3] = 255;
  await sharp(rgba, { raw: { width: 32, height: 32, channels: 4 } })
    .png()
    .toFile(join(src, "birds/stroke.png"));
  // EXIF orientation 6, as phone cameras write: the pixels are stored turned a quarter
  // left (bright bar at the bottom), and every viewer shows the bright bar on the left.
  const stored = Buffer.alloc(40 * 40, 30);
  for (let y = 30; y < 40; y++) stored.fill(230, y * 40, y * 40 + 40);
  await sharp(stored, { raw: { width: 40, height: 40, channels: 1 } })
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toFile(join(src, "birds/phone.jpg"));
  // The bad kinds.
  const jpg = readFileSync(join(src, "cats/c2.jpg"));
  writeFileSync(join(src, ".hidden/x.png"), readFileSync(join(src, "cats/c1.png")));
  writeFileSync(join(src, "cats/.DS_Store"), "Bud1");
  writeFileSync(join(src, "cats/._c0.jpg"), "\0\x05\x16\x07 AppleDouble");
  writeFileSync(join(src, "cats/empty.png"), "");
  writeFileSync(join(src, "cats/notes.txt"), "not an image");
  writeFileSync(join(src, "dogs/garbage.jpg"), "this is no jpeg at all");
  writeFileSync(join(src, "dogs/truncated.jpg"), jpg.subarray(0, Math.floor(jpg.length / 2)));
}, 60_000);

describe("agon data prepare", () => {
  it("skips every bad kind of file, naming it and its reason, and keeps the valid images", async () => {
    const out = join(tempDir(), "ds");
    const r = await runAgon([
      "data",
      "prepare",
      src,
      "--out",
      out,
      "--resolution",
      "16",
      "--channels",
      "1",
      "--jobs",
      "2",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const m = manifestOf(out);
    // 8 valid images in 3 classes (ImageFolder layout: first-level folder = class).
    expect(m.count).toBe(8);
    expect(m.classes).toEqual(["birds", "cats", "dogs"]);
    expect(m.classCounts).toEqual([3, 2, 3]);
    const skipped = new Map(m.skipped.map((s) => [s.file, s.reason]));
    for (const [file, reason] of BAD) {
      expect(skipped.has(file), `${file} not listed as skipped: ${JSON.stringify(m.skipped)}`).toBe(
        true,
      );
      expect(skipped.get(file)).toMatch(reason);
    }
    expect(m.skipped.length).toBe(BAD.length);
    // One summary line after the progress bar (with ETA).
    expect(r.stderr).toMatch(/ETA/);
    const summary = r.stderr.trim().split("\n").at(-1)!;
    expect(summary).toMatch(
      /^prepared 8 images of 16x16x1, 3 classes .*skipped 7 files \(3 hidden, 1 not an image, 1 empty file, 2 undecodable/,
    );
  }, 90_000);

  it("with --on-error fail stops at the first bad image with one line naming it, and writes nothing", async () => {
    const out = join(tempDir(), "ds");
    const r = await runAgon([
      "data",
      "prepare",
      src,
      "--out",
      out,
      "--on-error",
      "fail",
      "--resolution",
      "16",
    ]);
    expect(r.code).toBe(2);
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("agon: error:"));
    expect(errors).toHaveLength(1);
    // Row order is by relative path: cats/empty.png is the first bad image.
    expect(errors[0]).toContain(join(src, "cats/empty.png"));
    expect(errors[0]).toContain("empty file");
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  it("stores a JPEG with EXIF orientation 6 upright, and black strokes on transparency stay visible", async () => {
    const out = join(tempDir(), "ds");
    const r = await runAgon([
      "data",
      "prepare",
      src,
      "--out",
      out,
      "--resolution",
      "28",
      "--channels",
      "1",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const ds = PreparedDataset.open(out);
    // birds: b1.webp, phone.jpg, stroke.png (code point order).
    const phone = halves(ds.rowBytes(1).slice(), 28);
    expect(phone.left).toBeGreaterThan(phone.right + 50);
    const stroke = ds.rowBytes(2).slice();
    expect(stroke[14 * 28 + 14]).toBeLessThan(30); // the stroke, dark
    expect(stroke[14 * 28 + 2]).toBeGreaterThan(240); // the transparent background, white
    ds.close();
  }, 60_000);

  it("the in-memory folder loader also applies EXIF orientation", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "phone.jpg"), readFileSync(join(src, "birds/phone.jpg")));
    const ds = await loadDataset({ name: "folder", path: dir, channels: 1, size: 28 });
    const row = Uint8Array.from(ds.data, (v) => Math.round((v + 1) * 127.5));
    const h = halves(row, 28);
    expect(h.left).toBeGreaterThan(h.right + 50);
  }, 30_000);

  it("the in-memory folder loader labels images by class subfolder (ImageFolder layout)", async () => {
    const dir = tempDir();
    for (const [cls, n] of [
      ["b", 2],
      ["a", 3],
    ] as const) {
      mkdirSync(join(dir, cls, "deeper"), { recursive: true });
      for (let i = 0; i < n; i++)
        await solid(8, [i * 50, 0, 0])
          .png()
          .toFile(join(dir, cls, `${i}.png`));
      await solid(8, [0, 0, 0])
        .png()
        .toFile(join(dir, cls, "deeper", "x.png"));
    }
    writeFileSync(join(dir, "a", ".DS_Store"), "Bud1");
    const ds = await loadDataset({ name: "folder", path: dir, channels: 3, size: 8 });
    expect(ds.count).toBe(7);
    expect(ds.classes).toEqual(["a", "b"]);
    expect(Array.from(ds.labels!)).toEqual([0, 0, 0, 0, 1, 1, 1]);
  }, 30_000);

  it("gives the same fingerprint for the same source and options, another for other options", async () => {
    const base = tempDir();
    const run = (name: string, resolution: number, jobs: number) =>
      prepareDataset(src, { ...OPTS, out: join(base, name), resolution, jobs });
    const [a, b, c] = [await run("a", 16, 1), await run("b", 16, 3), await run("c", 20, 2)];
    expect(a.fingerprint).toBe(b.fingerprint);
    expect(manifestOf(join(base, "b")).fingerprint).toBe(a.fingerprint);
    expect(c.fingerprint).not.toBe(a.fingerprint);
  }, 60_000);

  it("keeps MNIST's pixels and labels exactly at 28×28×1", async () => {
    const out = join(tempDir(), "mnist");
    await prepareDataset("mnist", { ...OPTS, out, limit: 300 });
    const mem = await loadDataset({ name: "mnist", split: "train", limit: 300 });
    const prepared = await loadDataset({ name: "prepared", path: out, cacheMB: 8 });
    expect(prepared.sampleShape).toEqual([28, 28, 1]);
    expect(prepared.classes).toEqual(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    expect(Buffer.from(prepared.labels!)).toEqual(Buffer.from(mem.labels!));
    expect(Buffer.from(prepared.data.buffer)).toEqual(Buffer.from(mem.data.buffer));
  }, 60_000);

  it("refuses an --out that is not empty, changing nothing", async () => {
    const out = tempDir();
    writeFileSync(join(out, "keep.txt"), "mine");
    const r = await runAgon(["data", "prepare", src, "--out", out]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual([
      expect.stringMatching(/^agon: error: --out .* not an empty directory/),
    ]);
    expect(readFileSync(join(out, "keep.txt"), "utf8")).toBe("mine");
  }, 30_000);
});

describe("agon data inspect", () => {
  it("shows an ImageFolder dataset's classes and counts, and writes a grid with one row per class", async () => {
    const out = join(tempDir(), "ds");
    expect((await runAgon(["data", "prepare", src, "--out", out, "--resolution", "16"])).code).toBe(
      0,
    );
    const grid = join(tempDir(), "grid.png");
    const r = await runAgon(["data", "inspect", out, "--verify", "--grid", grid]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("classes (3): birds 3, cats 2, dogs 3");
    expect(r.stdout).toContain("verify: all 1 chunks match their sha256");
    const png = PNG.sync.read(readFileSync(grid));
    // 3 rows (classes) × 8 tiles of 16 px with 1 px gaps.
    expect(png.height).toBe(3 * 16 + 2);
    expect(png.width).toBe(8 * 16 + 7);
  }, 60_000);

  it("finds a flipped byte in a chunk, naming the chunk; the reader never returns its rows", async () => {
    const out = join(tempDir(), "ds");
    // Small chunks (4 rows of 16×16×3) so the damage sits in one of several.
    await prepareDataset("mnist", {
      ...OPTS,
      out,
      limit: 64,
      resolution: 16,
      channels: 3,
      chunkBytes: 4096,
    });
    const m = manifestOf(out);
    const victim = join(out, m.chunks[0].file);
    const bytes = readFileSync(victim);
    bytes[100] ^= 0x01;
    writeFileSync(victim, bytes);

    const r = await runAgon(["data", "inspect", out, "--verify"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain(`verify: 1 of ${m.chunks.length} chunks damaged`);
    expect(r.stdout).toContain(victim);

    const ds = PreparedDataset.open(out, { cacheMB: 1 });
    const out32 = new Float32Array(ds.sampleSize);
    // A row of an intact chunk reads fine; any row of the damaged one throws, every time.
    ds.gather(Int32Array.of(m.count - 1), out32);
    for (let attempt = 0; attempt < 2; attempt++) {
      out32.fill(7);
      const err = (() => {
        try {
          ds.gather(Int32Array.of(0), out32);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(DatasetError);
      expect((err as Error).message).toContain(victim);
      expect((err as Error).message).not.toContain("\n");
      expect(out32.every((v) => v === 7)).toBe(true);
    }
    ds.close();
  }, 60_000);
});
