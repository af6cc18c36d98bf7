// Tests for shared/data: real MNIST/Fashion-MNIST loading, IDX and image error
// paths on generated temp files, folder decoding/resizing, ring, sharding, PNG output.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { resize } from "../shared/data/image.js";
import {
  DATASET_NAMES,
  type Dataset,
  DatasetError,
  type DatasetSpec,
  drawIndices,
  gatherSamples,
  imageGridPng,
  loadDataset,
  ringModes,
  type ShardPlan,
  scatterPng,
  shardRange,
} from "../shared/data/index.js";
import { hashSeed, Rng, SeedDomain } from "../shared/rng.js";

const FASHION_DIR = "/usr/share/datasets/fashion-mnist";

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "agon-data-test-"));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** A fresh subdirectory of the test's temp dir. */
function subdir(name: string): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function expectRange(ds: Dataset): void {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < ds.data.length; i++) {
    const v = ds.data[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  expect(min).toBe(-1);
  expect(max).toBe(1);
}

/** Rejects with a DatasetError whose message matches every pattern. */
async function expectDatasetError(spec: DatasetSpec, ...patterns: RegExp[]): Promise<string> {
  const err = await loadDataset(spec).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DatasetError);
  const msg = (err as Error).message;
  expect(msg).not.toContain("\n");
  for (const p of patterns) expect(msg).toMatch(p);
  return msg;
}

// --- IDX files ---------------------------------------------------------------

function idxImages(count: number, rows: number, cols: number, fill: (i: number) => number) {
  const buf = Buffer.alloc(16 + count * rows * cols);
  buf.writeUInt32BE(2051, 0);
  buf.writeUInt32BE(count, 4);
  buf.writeUInt32BE(rows, 8);
  buf.writeUInt32BE(cols, 12);
  for (let i = 0; i < count * rows * cols; i++) buf[16 + i] = fill(i);
  return buf;
}

function idxLabels(count: number): Buffer {
  const buf = Buffer.alloc(8 + count);
  buf.writeUInt32BE(2049, 0);
  buf.writeUInt32BE(count, 4);
  for (let i = 0; i < count; i++) buf[8 + i] = i % 10;
  return buf;
}

describe("mnist", () => {
  it("loads 60000 train images of 28x28x1 in [-1, 1]", async () => {
    const ds = await loadDataset({ name: "mnist", split: "train" });
    expect(ds.count).toBe(60000);
    expect(ds.sampleShape).toEqual([28, 28, 1]);
    expect(ds.sampleSize).toBe(784);
    expect(ds.data.length).toBe(60000 * 784);
    expect(ds.labels?.length).toBe(60000);
    expect(Array.from(ds.labels!.subarray(0, 5))).toEqual([5, 0, 4, 1, 9]);
    expectRange(ds);
  });

  it("loads the 10000 test images, and limit keeps a prefix", async () => {
    const ds = await loadDataset({ name: "mnist", split: "test" });
    expect(ds.count).toBe(10000);
    expectRange(ds);
    const head = await loadDataset({ name: "mnist", split: "test", limit: 3 });
    expect(head.count).toBe(3);
    expect(head.data).toEqual(ds.data.subarray(0, 3 * 784));
  });
});

const HAVE_FASHION = existsSync(FASHION_DIR);
describe.skipIf(!HAVE_FASHION)(
  HAVE_FASHION
    ? "fashion-mnist"
    : `fashion-mnist SKIPPED: ${FASHION_DIR} absent (apt-get install dataset-fashion-mnist)`,
  () => {
    it("loads train and test splits from the Debian package", async () => {
      const train = await loadDataset({ name: "fashion-mnist", split: "train" });
      expect(train.count).toBe(60000);
      expect(train.sampleShape).toEqual([28, 28, 1]);
      expectRange(train);
      const test = await loadDataset({ name: "fashion-mnist", split: "test", limit: 10 });
      expect(test.count).toBe(10);
      expect(Array.from(test.labels!)).toEqual([9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    });
  },
);

describe("IDX errors", () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env.AGON_MNIST_DIR = saved.AGON_MNIST_DIR;
    process.env.AGON_FASHION_MNIST_DIR = saved.AGON_FASHION_MNIST_DIR;
    if (saved.AGON_MNIST_DIR === undefined) delete process.env.AGON_MNIST_DIR;
    if (saved.AGON_FASHION_MNIST_DIR === undefined) delete process.env.AGON_FASHION_MNIST_DIR;
  });

  it("reads a valid override dir, scaling bytes by x/127.5 - 1", async () => {
    const dir = subdir("idx-ok");
    writeFileSync(
      join(dir, "t10k-images-idx3-ubyte"),
      idxImages(3, 2, 2, (i) => [0, 51, 255][i % 3]),
    );
    writeFileSync(join(dir, "t10k-labels-idx1-ubyte.gz"), gzipSync(idxLabels(3)));
    process.env.AGON_MNIST_DIR = dir;
    const ds = await loadDataset({ name: "mnist", split: "test" });
    expect(ds.sampleShape).toEqual([2, 2, 1]);
    expect(ds.count).toBe(3);
    expect(ds.data[0]).toBe(-1);
    expect(ds.data[1]).toBeCloseTo(-0.6, 6);
    expect(ds.data[2]).toBe(1);
  });

  it("names a truncated image file", async () => {
    const dir = subdir("idx-trunc");
    const full = idxImages(10, 28, 28, () => 7);
    writeFileSync(join(dir, "t10k-images-idx3-ubyte"), full.subarray(0, 16 + 5 * 784));
    writeFileSync(join(dir, "t10k-labels-idx1-ubyte"), idxLabels(10));
    process.env.AGON_MNIST_DIR = dir;
    await expectDatasetError(
      { name: "mnist", split: "test" },
      /t10k-images-idx3-ubyte is truncated: expected 7856 bytes, found 3936/,
      /AGON_MNIST_DIR/,
    );
  });

  it("names a file with the wrong magic", async () => {
    const dir = subdir("idx-magic");
    writeFileSync(join(dir, "train-images-idx3-ubyte"), idxLabels(4));
    writeFileSync(join(dir, "train-labels-idx1-ubyte"), idxLabels(4));
    process.env.AGON_MNIST_DIR = dir;
    await expectDatasetError(
      { name: "mnist", split: "train" },
      /train-images-idx3-ubyte is not an IDX image file \(magic 0x00000801\)/,
    );
  });

  it("rejects labels that don't match the image count", async () => {
    const dir = subdir("idx-count");
    writeFileSync(
      join(dir, "train-images-idx3-ubyte"),
      idxImages(4, 2, 2, () => 0),
    );
    writeFileSync(join(dir, "train-labels-idx1-ubyte"), idxLabels(3));
    process.env.AGON_MNIST_DIR = dir;
    await expectDatasetError({ name: "mnist", split: "train" }, /3 labels but .* 4 images/);
  });

  it("says where it looked and how to install when files are missing", async () => {
    process.env.AGON_MNIST_DIR = subdir("idx-empty");
    await expectDatasetError(
      { name: "mnist", split: "train" },
      /idx-empty\/train-images-idx3-ubyte/,
      /npm ci/,
    );
    process.env.AGON_FASHION_MNIST_DIR = subdir("idx-empty");
    await expectDatasetError(
      { name: "fashion-mnist", split: "test" },
      /idx-empty\/t10k-images-idx3-ubyte/,
      /apt-get install dataset-fashion-mnist/,
    );
  });

  it("names a truncated gzipped copy of the real fashion-mnist file", async () => {
    const dir = subdir("fashion-trunc");
    let images: Buffer;
    let labels: Buffer;
    if (HAVE_FASHION) {
      images = gunzipSync(readFileSync(join(FASHION_DIR, "t10k-images-idx3-ubyte.gz")));
      labels = readFileSync(join(FASHION_DIR, "t10k-labels-idx1-ubyte.gz"));
    } else {
      images = idxImages(10000, 28, 28, () => 0);
      labels = gzipSync(idxLabels(10000));
    }
    writeFileSync(join(dir, "t10k-images-idx3-ubyte.gz"), gzipSync(images.subarray(0, 100000)));
    writeFileSync(join(dir, "t10k-labels-idx1-ubyte.gz"), labels);
    process.env.AGON_FASHION_MNIST_DIR = dir;
    await expectDatasetError(
      { name: "fashion-mnist", split: "test" },
      /fashion-trunc\/t10k-images-idx3-ubyte\.gz is truncated: expected 7840016 bytes, found 100000/,
    );
  });

  it("names a corrupt gzip file", async () => {
    const dir = subdir("fashion-badgz");
    const good = gzipSync(idxImages(2, 2, 2, () => 1));
    writeFileSync(join(dir, "train-images-idx3-ubyte.gz"), good.subarray(0, good.length - 12));
    writeFileSync(join(dir, "train-labels-idx1-ubyte.gz"), Buffer.from("not gzip at all"));
    process.env.AGON_FASHION_MNIST_DIR = dir;
    await expectDatasetError(
      { name: "fashion-mnist", split: "train" },
      /train-images-idx3-ubyte\.gz is not a valid gzip file/,
    );
  });
});

// --- folder datasets -----------------------------------------------------------

function pngBytes(
  width: number,
  height: number,
  pixel: (x: number, y: number) => number[],
  colorType: 0 | 2 | 6,
  bitDepth: 8 | 16 = 8,
): Buffer {
  const ch = colorType === 0 ? 1 : colorType === 2 ? 3 : 4;
  const values = new Uint16Array(width * height * ch);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) values.set(pixel(x, y), (y * width + x) * ch);
  }
  // pngjs reads 16-bit input as native-endian uint16 through the buffer's ArrayBuffer.
  const data = bitDepth === 8 ? Buffer.from(Uint8Array.from(values)) : Buffer.from(values.buffer);
  return PNG.sync.write({ width, height, data } as PNG, {
    colorType,
    inputColorType: colorType,
    inputHasAlpha: colorType === 6,
    bitDepth,
  });
}

function jpegBytes(width: number, height: number, rgb: [number, number, number]): Buffer {
  const data = Buffer.alloc(width * height * 4);
  for (let p = 0; p < width * height; p++) data.set([...rgb, 255], 4 * p);
  return jpeg.encode({ width, height, data }, 100).data;
}

const unit = (byte: number): number => byte / 127.5 - 1;
const gray = (r: number, g: number, b: number): number => 0.299 * r + 0.587 * g + 0.114 * b;

function sample(ds: Dataset, n: number): Float32Array {
  return ds.data.subarray(n * ds.sampleSize, (n + 1) * ds.sampleSize);
}

function expectConstant(values: Float32Array, expected: number[], digits = 5): void {
  const c = expected.length;
  for (let i = 0; i < values.length; i++) expect(values[i]).toBeCloseTo(expected[i % c], digits);
}

describe("folder", () => {
  let dir: string;
  beforeAll(() => {
    dir = subdir("images");
    writeFileSync(
      join(dir, "a_gray.png"),
      pngBytes(10, 10, () => [200], 0),
    );
    writeFileSync(
      join(dir, "b_red.PNG"),
      pngBytes(40, 30, () => [255, 0, 0], 2),
    );
    writeFileSync(join(dir, "c_teal.jpg"), jpegBytes(16, 16, [0, 128, 128]));
    writeFileSync(
      join(dir, "d_16bit.png"),
      pngBytes(50, 50, () => [0x6464], 0, 16),
    );
    writeFileSync(join(dir, "e_white.JPEG"), jpegBytes(8, 8, [255, 255, 255]));
    // Left half black, right half white: a 56→28 area downscale keeps the edge sharp.
    writeFileSync(
      join(dir, "f_halves.png"),
      pngBytes(56, 56, (x) => (x < 28 ? [0, 0, 0, 255] : [255, 255, 255, 255]), 6),
    );
    writeFileSync(
      join(dir, "g_alpha.png"),
      pngBytes(4, 4, () => [255, 255, 255, 51], 6),
    );
    writeFileSync(join(dir, "notes.txt"), "ignored");
    mkdirSync(join(dir, "nested.png")); // a directory with an image-like name is skipped
  });

  it("loads gray/RGB/16-bit PNG and JPEG of different sizes as 1 channel", async () => {
    const ds = await loadDataset({ name: "folder", path: dir, channels: 1, size: 28 });
    expect(ds.count).toBe(7);
    expect(ds.sampleShape).toEqual([28, 28, 1]);
    expectConstant(sample(ds, 0), [unit(200)]);
    expectConstant(sample(ds, 1), [unit(gray(255, 0, 0))]);
    expectConstant(sample(ds, 2), [unit(gray(0, 128, 128))], 1);
    expectConstant(sample(ds, 3), [unit(100)]);
    expectConstant(sample(ds, 4), [1], 1);
    const halves = sample(ds, 5);
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) expect(halves[y * 28 + x]).toBe(x < 14 ? -1 : 1);
    }
    expectConstant(sample(ds, 6), [unit(51)]);
  });

  it("keeps colour with 3 channels, and limit takes the first files by name", async () => {
    const ds = await loadDataset({ name: "folder", path: dir, channels: 3, size: 7, limit: 3 });
    expect(ds.count).toBe(3);
    expect(ds.sampleShape).toEqual([7, 7, 3]);
    expect(ds.sampleSize).toBe(147);
    expectConstant(sample(ds, 0), [unit(200), unit(200), unit(200)]);
    expectConstant(sample(ds, 1), [1, -1, -1]);
    expectConstant(sample(ds, 2), [-1, unit(128), unit(128)], 1);
  });

  it("resizes with area averaging down and half-pixel bilinear up", () => {
    const src = Float32Array.from([0, 255]);
    expect(Array.from(resize(src, 2, 1, 1, 4, 1))).toEqual([0, 63.75, 191.25, 255]);
    const block = Float32Array.from([0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60]);
    expect(Array.from(resize(block, 4, 4, 1, 2, 2))).toEqual([10, 18, 42, 50]);
  });

  it("reports a missing path, a file path and an empty folder", async () => {
    const missing = join(tmp, "no-such-dir");
    await expectDatasetError(
      { name: "folder", path: missing, channels: 1, size: 28 },
      /no-such-dir does not exist/,
    );
    const file = join(dir, "notes.txt");
    await expectDatasetError(
      { name: "folder", path: file, channels: 1, size: 28 },
      /notes\.txt is not a directory/,
    );
    const empty = subdir("empty");
    writeFileSync(join(empty, "readme.md"), "no images here");
    await expectDatasetError(
      { name: "folder", path: empty, channels: 3, size: 28 },
      /empty contains no \.png, \.jpg or \.jpeg files/,
    );
  });

  it("names an undecodable image", async () => {
    const bad = subdir("bad");
    writeFileSync(
      join(bad, "a_ok.png"),
      pngBytes(2, 2, () => [1], 0),
    );
    writeFileSync(join(bad, "b_broken.png"), pngBytes(20, 20, () => [9], 0).subarray(0, 40));
    await expectDatasetError(
      { name: "folder", path: bad, channels: 1, size: 28 },
      /b_broken\.png could not be decoded as PNG/,
    );
    const junk = subdir("junk");
    writeFileSync(join(junk, "photo.jpg"), "this is text");
    await expectDatasetError(
      { name: "folder", path: junk, channels: 1, size: 28 },
      /photo\.jpg is not a PNG or JPEG image/,
    );
    const cut = subdir("cut");
    writeFileSync(join(cut, "cut.jpg"), jpegBytes(16, 16, [1, 2, 3]).subarray(0, 30));
    await expectDatasetError(
      { name: "folder", path: cut, channels: 1, size: 28 },
      /cut\.jpg could not be decoded as JPEG/,
    );
  });
});

// --- ring and spec validation --------------------------------------------------

describe("ring", () => {
  it("places mode i at angle 2πi/modes", () => {
    const m = ringModes(4, 2);
    const expected = [
      [2, 0],
      [0, 2],
      [-2, 0],
      [0, -2],
    ];
    m.forEach(([x, y], i) => {
      expect(x).toBeCloseTo(expected[i][0], 12);
      expect(y).toBeCloseTo(expected[i][1], 12);
    });
  });

  it("draws points around their modes with the requested spread", async () => {
    const spec = { name: "ring", size: 8000, modes: 8, radius: 2, std: 0.02, seed: 7 } as const;
    const ds = await loadDataset(spec);
    expect(ds.sampleShape).toEqual([2]);
    expect(ds.count).toBe(8000);
    const centres = ringModes(8, 2);
    let sq = 0;
    for (let i = 0; i < ds.count; i++) {
      const [cx, cy] = centres[i % 8];
      const dx = ds.data[2 * i] - cx;
      const dy = ds.data[2 * i + 1] - cy;
      expect(Math.hypot(dx, dy)).toBeLessThan(0.02 * 6);
      sq += dx * dx + dy * dy;
    }
    expect(Math.sqrt(sq / (2 * ds.count))).toBeCloseTo(0.02, 3);
    const again = await loadDataset(spec);
    expect(again.data).toEqual(ds.data);
    const other = await loadDataset({ ...spec, seed: 8 });
    expect(other.data).not.toEqual(ds.data);
  });
});

describe("spec validation", () => {
  it("lists valid names for an unknown dataset", async () => {
    expect(DATASET_NAMES).toEqual(["mnist", "fashion-mnist", "folder", "prepared", "ring"]);
    await expectDatasetError(
      { name: "cifar" } as unknown as DatasetSpec,
      /unknown dataset "cifar"; valid names: mnist, fashion-mnist, folder, prepared, ring/,
    );
  });

  it("rejects bad fields with DatasetError", async () => {
    await expectDatasetError({ name: "mnist", split: "val" } as unknown as DatasetSpec, /split/);
    await expectDatasetError({ name: "mnist", split: "test", limit: 0 }, /limit/);
    await expectDatasetError(
      { name: "folder", path: tmp, channels: 2 } as unknown as DatasetSpec,
      /channels must be 1 or 3/,
    );
    await expectDatasetError(
      { name: "ring", size: 10, modes: 0, radius: 2, std: 0.02, seed: 1 },
      /modes must be an integer >= 1/,
    );
  });
});

// --- sharding ------------------------------------------------------------------

/** Straight transcription of the drawIndices contract, with no caching. */
function referenceDraw(plan: ShardPlan, shard: number, draw: number, batch: number): number[] {
  const { start, end } = shardRange(plan, shard);
  const n = end - start;
  const out: number[] = [];
  for (let i = 0; i < batch; i++) {
    const p = draw * batch + i;
    const e = Math.floor(p / n);
    const rng = new Rng(hashSeed(plan.seed, SeedDomain.permutation, shard, e));
    const perm = Array.from({ length: n }, (_, k) => k);
    for (let k = n - 1; k > 0; k--) {
      const j = rng.nextInt(k + 1);
      [perm[k], perm[j]] = [perm[j], perm[k]];
    }
    out.push(start + perm[p % n]);
  }
  return out;
}

describe("shards", () => {
  it("partition 0..N-1 into contiguous, near-equal ranges", () => {
    for (const count of [1, 2, 7, 100, 60000]) {
      for (const shards of [1, 2, 3, 7, 16]) {
        if (shards > count) continue;
        let next = 0;
        const sizes: number[] = [];
        for (let k = 0; k < shards; k++) {
          const { start, end } = shardRange({ count, shards, seed: 0 }, k);
          expect(start).toBe(next);
          sizes.push(end - start);
          next = end;
        }
        expect(next).toBe(count);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      }
    }
    expect(shardRange({ count: 10, shards: 3, seed: 0 }, 1)).toEqual({ start: 3, end: 6 });
  });

  it("reject invalid plans and arguments with RangeError", () => {
    const plan = { count: 10, shards: 3, seed: 1 };
    expect(() => shardRange({ ...plan, shards: 0 }, 0)).toThrow(RangeError);
    expect(() => shardRange({ ...plan, shards: 11 }, 0)).toThrow(
      /shards must be an integer in \[1, 10\]/,
    );
    expect(() => shardRange(plan, 3)).toThrow(/shard must be an integer in \[0, 2\], got 3/);
    expect(() => shardRange(plan, 0.5)).toThrow(RangeError);
    expect(() => drawIndices(plan, 0, 0, 0)).toThrow(/batch/);
    expect(() => drawIndices(plan, 0, -1, 4)).toThrow(/draw/);
    expect(() => drawIndices(plan, 0, 1.5, 4)).toThrow(RangeError);
  });
});

describe("drawIndices", () => {
  const plan: ShardPlan = { count: 1000, shards: 3, seed: 42 };

  it("matches the contract exactly, in any call order", () => {
    // Batch 7 does not divide the shard size 333, so some batches span epochs.
    const order = [0, 1, 2, 47, 48, 95, 96, 3, 200, 0];
    for (const draw of order) {
      expect(Array.from(drawIndices(plan, 1, draw, 7))).toEqual(referenceDraw(plan, 1, draw, 7));
    }
    // A batch larger than the shard wraps through several epochs.
    const tiny = { count: 10, shards: 2, seed: 3 };
    expect(Array.from(drawIndices(tiny, 1, 2, 12))).toEqual(referenceDraw(tiny, 1, 2, 12));
  });

  it("stays in its shard and covers it exactly once per epoch", () => {
    for (let shard = 0; shard < plan.shards; shard++) {
      const { start, end } = shardRange(plan, shard);
      const n = end - start;
      const batch = 7;
      const draws = Math.ceil((3 * n) / batch);
      const stream: number[] = [];
      for (let d = 0; d < draws; d++) stream.push(...drawIndices(plan, shard, d, batch));
      expect(Math.min(...stream)).toBeGreaterThanOrEqual(start);
      expect(Math.max(...stream)).toBeLessThan(end);
      const epochs = [0, 1, 2].map((e) => stream.slice(e * n, (e + 1) * n));
      for (const epoch of epochs) {
        expect([...epoch].sort((a, b) => a - b)).toEqual(
          Array.from({ length: n }, (_, i) => start + i),
        );
      }
      expect(epochs[1]).not.toEqual(epochs[0]);
      expect(epochs[2]).not.toEqual(epochs[1]);
    }
  });

  it("is deterministic per seed and differs across seeds", () => {
    const a = drawIndices(plan, 2, 5, 16);
    expect(drawIndices({ ...plan }, 2, 5, 16)).toEqual(a);
    expect(drawIndices({ ...plan, seed: 43 }, 2, 5, 16)).not.toEqual(a);
  });
});

describe("gatherSamples", () => {
  const ds: Dataset = {
    name: "toy",
    sampleShape: [2],
    sampleSize: 2,
    count: 4,
    data: Float32Array.from([0, 1, 10, 11, 20, 21, 30, 31]),
  };

  it("copies samples in index order, into a given buffer", () => {
    expect(Array.from(gatherSamples(ds, Int32Array.from([3, 0, 3])))).toEqual([
      30, 31, 0, 1, 30, 31,
    ]);
    const out = new Float32Array(4);
    expect(gatherSamples(ds, Int32Array.from([2, 1]), out)).toBe(out);
    expect(Array.from(out)).toEqual([20, 21, 10, 11]);
  });

  it("copies large samples and rejects bad indices or buffers", async () => {
    const mnist = await loadDataset({ name: "mnist", split: "test", limit: 5 });
    const got = gatherSamples(mnist, Int32Array.from([4, 1]));
    expect(got.subarray(0, 784)).toEqual(mnist.data.subarray(4 * 784, 5 * 784));
    expect(() => gatherSamples(ds, Int32Array.from([4]))).toThrow(RangeError);
    expect(() => gatherSamples(ds, Int32Array.from([0]), new Float32Array(3))).toThrow(
      /out has length 3/,
    );
  });
});

// --- PNG writers ---------------------------------------------------------------

describe("png", () => {
  it("tiles a gray grid with 1px padding that decodes back", () => {
    const images = new Float32Array(10 * 28 * 28);
    for (let n = 0; n < 10; n++) images.fill(n / 5 - 1, n * 784, (n + 1) * 784);
    const png = PNG.sync.read(imageGridPng(images, 10, [28, 28, 1], 4));
    expect([png.width, png.height]).toEqual([4 * 28 + 3, 3 * 28 + 2]);
    const at = (x: number, y: number): number[] =>
      Array.from(png.data.subarray(4 * (y * png.width + x), 4 * (y * png.width + x) + 4));
    expect(at(0, 0)).toEqual([0, 0, 0, 255]);
    expect(at(28, 0)).toEqual([128, 128, 128, 255]); // padding
    expect(at(29 + 5, 29 * 2 + 3)).toEqual([
      Math.round(1.8 * 127.5),
      Math.round(1.8 * 127.5),
      Math.round(1.8 * 127.5),
      255,
    ]); // image 9
  });

  it("writes RGB grids and clips out-of-range values", () => {
    const images = Float32Array.from([2, 0, -3, Number.NaN, 1, -1]);
    const png = PNG.sync.read(imageGridPng(images, 2, [1, 1, 3], 8));
    expect([png.width, png.height]).toEqual([3, 1]);
    expect(Array.from(png.data)).toEqual([255, 128, 0, 255, 128, 128, 128, 255, 0, 255, 0, 255]);
  });

  it("plots ring samples with reference modes", async () => {
    const ds = await loadDataset({
      name: "ring",
      size: 500,
      modes: 8,
      radius: 2,
      std: 0.02,
      seed: 1,
    });
    const buf = scatterPng(ds.data, ds.count, { size: 200, extent: 3, reference: ringModes(8, 2) });
    const png = PNG.sync.read(buf);
    expect([png.width, png.height]).toEqual([200, 200]);
    let red = 0;
    let blue = 0;
    for (let p = 0; p < 200 * 200; p++) {
      const [r, g, b] = png.data.subarray(4 * p, 4 * p + 3);
      if (r === 220 && g === 0 && b === 0) red++;
      if (b > r + 50) blue++;
    }
    expect(red).toBeGreaterThan(8 * 10);
    expect(blue).toBeGreaterThan(8);
  });
});
