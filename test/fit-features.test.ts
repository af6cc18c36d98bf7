// Features for any labelled dataset: `agon eval fit-features` on a prepared 64×64 RGB
// folder dataset (procedural shapes, one class per shape), then eval.every on it in
// `agon train` (an FD curve that falls as the samples improve) and `agon local` (the same
// bits from evaluation microtasks on the workers), and `agon eval` on its checkpoint.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PNG } from "pngjs";
import { beforeAll, describe, expect, it } from "vitest";
import { insideShape } from "../bench/shapes.js";
import { Rng } from "../shared/rng.js";
import { runAgon, tempDir } from "./helpers/cli.js";
import { natsForSuite } from "./helpers/nats.js";

const SHAPES = ["disc", "square", "triangle"] as const;
const SIZE = 64;

/** A 64×64 PNG of one shape of class `kind`, in a random colour, size and place, on a dark background. */
function shapePng(rng: Rng, kind: number): Buffer {
  const png = new PNG({ width: SIZE, height: SIZE });
  const colour = [0, 1, 2].map(() => 80 + Math.floor(rng.nextFloat() * 176));
  const r = SIZE * (0.2 + 0.15 * rng.nextFloat());
  const cx = r + (SIZE - 2 * r) * rng.nextFloat();
  const cy = r + (SIZE - 2 * r) * rng.nextFloat();
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const c = insideShape(SHAPES[kind], dx, dy, r) ? colour : [24, 24, 32];
      png.data.set([c[0], c[1], c[2], 255], (y * SIZE + x) * 4);
    }
  }
  return PNG.sync.write(png);
}

interface EvalLine {
  step: number;
  fd: number;
}

const evalLines = (dir: string): EvalLine[] =>
  readFileSync(join(dir, "eval.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as EvalLine);

const prepared = tempDir();
const data = join(prepared, "shapes-64");

beforeAll(async () => {
  // 240 images, 80 per class, in ImageFolder layout (labels by subfolder).
  const source = join(prepared, "source");
  const rng = new Rng(16);
  for (let i = 0; i < 240; i++) {
    const kind = i % 3;
    mkdirSync(join(source, SHAPES[kind]), { recursive: true });
    writeFileSync(
      join(source, SHAPES[kind], `${String(i).padStart(4, "0")}.png`),
      shapePng(rng, kind),
    );
  }
  const r = await runAgon(["data", "prepare", source, "--out", data, "--resolution", "64"]);
  expect(r.code, r.stderr).toBe(0);
}, 120_000);

describe("agon eval fit-features", () => {
  const nats = natsForSuite();

  it("fits features to a labelled 64×64 dataset deterministically; eval.every then gives a falling FD curve, the same bits on 2 workers and in agon eval", async () => {
    // Before fitting, a run with eval.every on it is refused in one line, with the fix.
    const config = [
      "--model",
      "mlp",
      "--set",
      `dataset={"name":"prepared","path":"${data}"}`,
      "model.latentDim=16",
      "model.gHidden=[64]",
      "model.dHidden=[64]",
      "optimizer.g.lr=0.002",
      "optimizer.d.lr=0.002",
      "eval.every=10",
      "eval.n=200",
      "checkpoint.every=10",
      "samples.every=1000",
      "--steps",
      "40",
      "--shards",
      "2",
      "--batch",
      "32",
      "--backend",
      "wasm",
      "--json",
    ];
    const early = tempDir();
    const refused = await runAgon(["train", ...config, "--run-dir", early]);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toMatch(/has no fitted features .*agon eval fit-features --dataset/);
    expect(existsSync(join(early, "config.json"))).toBe(false);

    const fit = await runAgon(["eval", "fit-features", "--dataset", data, "--json"]);
    expect(fit.code, fit.stderr).toBe(0);
    const manifest = JSON.parse(fit.stdout.trim());
    expect(manifest).toMatchObject({
      widths: [SIZE * SIZE * 3, 128, 64, 3],
      classes: [...SHAPES],
      reference: { n: 240 },
    });
    expect(manifest.recipeHash).toMatch(/^[0-9a-f]{16}$/);
    expect(JSON.parse(readFileSync(join(data, "features", "features.json"), "utf8"))).toEqual(
      manifest,
    );
    // Deterministic: fitting again writes the same weights and reference statistics.
    const again = await runAgon(["eval", "fit-features", "--dataset", data, "--json"]);
    expect(again.code, again.stderr).toBe(0);
    const second = JSON.parse(again.stdout.trim());
    expect([second.weights.sha256, second.reference.sha256]).toEqual([
      manifest.weights.sha256,
      manifest.reference.sha256,
    ]);

    const trainDir = tempDir();
    const t = await runAgon(["train", ...config, "--run-dir", trainDir], { timeoutMs: 300_000 });
    expect(t.code, t.stderr).toBe(0);
    // The fitted classifier is loaded before the backend is chosen: no tfjs "install tfjs-node" banner.
    expect(t.stderr).not.toContain("looks like you are running TensorFlow.js in Node.js");
    const curve = evalLines(trainDir);
    expect(curve.map((l) => l.step)).toEqual([10, 20, 30, 40]);
    // The samples improve from noise towards shapes on a dark background: the FD falls.
    console.log(
      `fit-features FD curve: ${curve.map((l) => `${l.step}: ${l.fd.toFixed(1)}`).join(", ")}`,
    );
    expect(curve.at(-1)!.fd).toBeLessThan(curve[0].fd);
    expect(Math.min(...curve.slice(1).map((l) => l.fd))).toBeLessThan(curve[0].fd * 0.9);

    // On the run's backend (wasm): agon eval's default, auto, may pick blas, which rounds otherwise.
    const ev = await runAgon([
      "eval",
      "--checkpoint",
      trainDir,
      "--n",
      "200",
      "--backend",
      "wasm",
      "--json",
    ]);
    expect(ev.code, ev.stderr).toBe(0);
    expect(JSON.parse(ev.stdout.trim()).fd).toBe(curve.at(-1)!.fd);

    // The evaluation microtasks on 2 workers give the same bits (the first 20 steps, to keep it short).
    const localDir = tempDir();
    const l = await runAgon(
      [
        "local",
        ...config.map((f) => (f === "40" ? "20" : f)),
        "--workers",
        "2",
        "--nats",
        nats.url,
        "--run-dir",
        localDir,
      ],
      { timeoutMs: 300_000 },
    );
    expect(l.code, l.stderr).toBe(0);
    expect(evalLines(localDir).map((x) => [x.step, x.fd])).toEqual(
      curve.slice(0, 2).map((x) => [x.step, x.fd]),
    );
  }, 600_000);
});
