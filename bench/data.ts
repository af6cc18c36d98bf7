// `npm run bench -- data`: the prepared-dataset path at scale. Generates a
// labelled folder of procedural 64×64 RGB images (coloured shapes, one class per
// shape; in a temp dir, removed afterwards), prepares it (images/s), then
// measures a worker-like process (open the dataset, build the runner, run D
// microtasks over every shard): start-up time and peak RSS on the first tenth
// vs all of it, streamed; and the in-RAM path (every row as float32 in memory) on
// the tenth, for comparison.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { type PrepareOptions, prepareDataset } from "../shared/data/prepare.js";

const SHAPES = ["circle", "square", "triangle", "cross"] as const;

/** Image i: a shape of class i mod 4, its colour, size and place from i (deterministic). */
function shapeImage(i: number, size: number): Buffer {
  const px = Buffer.alloc(size * size * 3);
  const bg = [(i * 13) % 60, (i * 7) % 60, (i * 11) % 60];
  const fg = [100 + ((i * 37) % 156), 100 + ((i * 53) % 156), 100 + ((i * 29) % 156)];
  const kind = i % SHAPES.length;
  const r = size * (0.15 + ((i * 17) % 10) / 50);
  const cx = size / 2 + (((i * 31) % 21) - 10);
  const cy = size / 2 + (((i * 43) % 21) - 10);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = x - cx;
      const dy = y - cy;
      const inside =
        kind === 0
          ? dx * dx + dy * dy < r * r
          : kind === 1
            ? Math.abs(dx) < r && Math.abs(dy) < r
            : kind === 2
              ? dy < r && dy > -r && Math.abs(dx) < (r - dy) / 2
              : (Math.abs(dx) < r / 3 && Math.abs(dy) < r) ||
                (Math.abs(dy) < r / 3 && Math.abs(dx) < r);
      px.set(inside ? fg : bg, (y * size + x) * 3);
    }
  }
  return px;
}

async function generate(dir: string, count: number, size: number): Promise<number> {
  for (const s of SHAPES) mkdirSync(join(dir, s), { recursive: true });
  const t0 = performance.now();
  const jobs = 4;
  for (let start = 0; start < count; start += jobs) {
    await Promise.all(
      Array.from({ length: Math.min(jobs, count - start) }, (_, k) => {
        const i = start + k;
        return sharp(shapeImage(i, size), { raw: { width: size, height: size, channels: 3 } })
          .png({ compressionLevel: 1 })
          .toFile(join(dir, SHAPES[i % SHAPES.length], `${String(i).padStart(7, "0")}.png`));
      }),
    );
  }
  return (performance.now() - t0) / 1000;
}

interface Probe {
  mode: string;
  count: number;
  startupMs: number;
  maxRssMB: number;
  microtasks: number;
  msPerMicrotask: number;
}

/** Runs bench/data-probe.ts in a fresh process (so RSS is its own). */
function probe(mode: "stream" | "memory", path: string, microtasks: number): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        join(import.meta.dirname, "data-probe.ts"),
        mode,
        path,
        String(microtasks),
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
    });
    child.on("close", (code) =>
      code === 0
        ? resolve(JSON.parse(out.trim().split("\n").at(-1)!))
        : reject(new Error(`probe exited ${code}`)),
    );
  });
}

export async function runDataBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      images: { type: "string", default: "100000" },
      microtasks: { type: "string", default: "24" },
      jobs: { type: "string", default: "2" },
      keep: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(
      "usage: npm run bench -- data [--images N (100000)] [--microtasks M (24)] [--jobs J (2)] [--keep DIR]\n",
    );
    return 0;
  }
  const images = Number(values.images);
  const tenth = Math.floor(images / 10);
  const base = values.keep ?? join(tmpdir(), `agon-bench-data-${process.pid}`);
  mkdirSync(base, { recursive: true });
  try {
    const full = join(base, "prepared-all");
    const small = join(base, "prepared-tenth");
    const timing = join(base, "prepare.json");
    // With --keep, a second run reuses the prepared data and measures the probes only.
    if (!existsSync(timing)) {
      const folder = join(base, "images");
      const genS = await generate(folder, images, 64);
      process.stderr.write(`generated ${images} 64x64 RGB PNGs in ${genS.toFixed(1)} s\n`);
      const opts: Omit<PrepareOptions, "out"> = {
        crop: "center",
        background: "white",
        onError: "skip",
        jobs: Number(values.jobs),
        split: "train",
        resolution: 64,
        channels: 3,
      };
      let last = 0;
      const t0 = performance.now();
      await prepareDataset(folder, {
        ...opts,
        out: full,
        onProgress: (done, total) => {
          const now = performance.now();
          if (now - last > 5000 || done === total) {
            last = now;
            const s = (now - t0) / 1000;
            process.stderr.write(
              `prepare: ${done}/${total} images, ${(done / s).toFixed(0)} images/s, ETA ${((total - done) / (done / s)).toFixed(0)} s\n`,
            );
          }
        },
      });
      const prepS = (performance.now() - t0) / 1000;
      await prepareDataset(full, { ...opts, out: small, limit: tenth });
      rmSync(folder, { recursive: true, force: true });
      writeFileSync(timing, JSON.stringify({ seconds: prepS }));
    }
    const prepS = (JSON.parse(readFileSync(timing, "utf8")) as { seconds: number }).seconds;
    const m = Number(values.microtasks);
    const rows = [
      await probe("stream", small, m),
      await probe("stream", full, m),
      await probe("memory", small, m),
    ];
    const result = {
      images,
      prepare: { seconds: prepS, imagesPerSecond: images / prepS, jobs: Number(values.jobs) },
      probes: rows,
      streamedRatio: {
        startup: rows[1].startupMs / rows[0].startupMs,
        maxRss: rows[1].maxRssMB / rows[0].maxRssMB,
      },
    };
    process.stdout.write(`${JSON.stringify(result, null, 1)}\n`);
    process.stdout.write(
      [
        `prepare: ${images} images in ${prepS.toFixed(1)} s = ${(images / prepS).toFixed(0)} images/s (--jobs ${values.jobs})`,
        ...rows.map(
          (r) =>
            `${r.mode.padEnd(6)} ${String(r.count).padStart(7)} images: start-up ${r.startupMs.toFixed(0)} ms, peak RSS ${r.maxRssMB.toFixed(0)} MB, ${r.msPerMicrotask.toFixed(1)} ms per D microtask`,
        ),
        `streamed, all vs a tenth: start-up ×${result.streamedRatio.startup.toFixed(2)}, peak RSS ×${result.streamedRatio.maxRss.toFixed(2)}`,
      ].join("\n") + "\n",
    );
    return 0;
  } finally {
    if (!values.keep) rmSync(base, { recursive: true, force: true });
  }
}
