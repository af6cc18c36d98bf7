// The TF.js Inception-v3 port (shared/features/inception.ts) against PyTorch: random weights
// for pytorch-fid's variant, written by test/fixtures/inception/reference_inception.py and
// converted by bench/convert_inception.py, give the same 2048-d pool features on 32 images
// (16 RGB 64×64, 16 grey 28×28: both go through the 299×299 bilinear resize). And
// `agon eval --inception` end to end, with random weights written here.
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "../shared/backend.js";
import { INCEPTION_DIM, InceptionV3, InceptionWeightsError } from "../shared/features/inception.js";
import { runAgon, tempDir } from "./helpers/cli.js";
import { writeRandomInceptionWeights } from "./helpers/inception-weights.js";

const execFileAsync = promisify(execFile);
const REFERENCE = resolve(import.meta.dirname, "fixtures/inception/reference_inception.py");
// Debian's python3-torch lives under /usr/bin/python3; a venv's python3 may lack it.
const PYTHON = "/usr/bin/python3";

function hasTorch(): boolean {
  const r = spawnSync(PYTHON, ["-c", "import torch, torchvision"], { stdio: "ignore" });
  if (r.status !== 0)
    console.log(
      "inception: PyTorch reference skipped: /usr/bin/python3 has no torch/torchvision (apt-get install python3-torch python3-torchvision)",
    );
  return r.status === 0;
}

function f32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

/** Per image: max |ours − theirs| over the 2048 values, relative to max |theirs|. */
function maxRelativeError(ours: Float32Array, theirs: Float32Array, n: number): number {
  let worst = 0;
  for (let i = 0; i < n; i++) {
    let diff = 0;
    let scale = 0;
    for (let j = 0; j < INCEPTION_DIM; j++) {
      const k = i * INCEPTION_DIM + j;
      diff = Math.max(diff, Math.abs(ours[k] - theirs[k]));
      scale = Math.max(scale, Math.abs(theirs[k]));
    }
    worst = Math.max(worst, diff / scale);
  }
  return worst;
}

describe("Inception weights file", () => {
  it("missing or not safetensors: one line naming the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "agon-incep-"));
    try {
      // The cause in words, not an errno code, and where to get the file.
      expect(() => InceptionV3.load(join(dir, "none.safetensors"))).toThrow(
        /cannot read .*none\.safetensors: no such file or directory; .*docs\/QUALITY\.md#getting-the-inception-weights/,
      );
      expect(() => InceptionV3.load(dir)).toThrow(
        `cannot read ${dir}: it is a directory, not a file;`,
      );
      writeFileSync(join(dir, "bad.safetensors"), "not a weights file");
      expect(() => InceptionV3.load(join(dir, "bad.safetensors"))).toThrow(InceptionWeightsError);
      // A valid safetensors file without the network's tensors.
      const header = Buffer.from(
        JSON.stringify({ x: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }),
      );
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(header.length));
      writeFileSync(join(dir, "other.safetensors"), Buffer.concat([len, header, Buffer.alloc(4)]));
      expect(() => InceptionV3.load(join(dir, "other.safetensors"))).toThrow(
        /lacks tensor Conv2d_1a_3x3\.conv\.weight: not pytorch-fid Inception weights; .*docs\/QUALITY\.md#getting-the-inception-weights/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("agon eval --inception", () => {
  it("reports FID and KID on Inception features beside the own FD; a missing file is one line", async () => {
    const dir = tempDir("agon-incep-");
    try {
      const run = join(dir, "run");
      const train = await runAgon(
        ["train", "--dataset", "mnist", "--model", "mlp", "--steps", "2", "--run-dir", run],
        { timeoutMs: 300_000 },
      );
      expect(train.code, train.stderr).toBe(0);
      const missing = await runAgon(
        ["eval", "--checkpoint", run, "--inception", join(dir, "none.safetensors")],
        { timeoutMs: 300_000 },
      );
      expect(missing.code).toBe(2);
      expect(missing.stderr.trim().split("\n")).toHaveLength(1);
      expect(missing.stderr).toMatch(/none\.safetensors.*bench\/convert_inception\.py/);
      const weights = join(dir, "inception.safetensors");
      writeRandomInceptionWeights(weights);
      const r = await runAgon(
        [
          "eval",
          "--checkpoint",
          run,
          "--n",
          "4",
          "--kid",
          "2",
          "--backend",
          "wasm",
          "--inception",
          weights,
          "--json",
        ],
        { timeoutMs: 600_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      console.log(`inception eval: ${r.stdout.trim()}`);
      expect(out.fd).toBeGreaterThan(0);
      expect(out.kid.subsets).toBe(2);
      expect(out.inception.fid).toBeGreaterThan(0);
      expect(Number.isFinite(out.inception.kid.mean)).toBe(true);
      expect(out.inception.referenceN).toBe(4);
      // Progress: the generated side's last line says what comes next, then the real side's.
      expect(r.stderr).toMatch(
        /inception: 4\/4 generated samples featurised, \d+ s; next the real images\n(.*\n)*inception: 4 real images featurised, \d+ s/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 900_000);
});

describe.skipIf(!hasTorch())("Inception-v3 port against PyTorch (pytorch-fid's variant)", () => {
  let dir = "";
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "agon-incep-"));
    // Asynchronously: the reference takes minutes on a loaded 2-core machine, and a
    // blocked event loop starves vitest's own messages.
    await execFileAsync(PYTHON, [REFERENCE, dir, "7"], {
      env: { ...process.env, OPENBLAS_NUM_THREADS: "1" },
      maxBuffer: 1 << 24,
    });
  }, 1_800_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("gives the same 2048-d pool features within 1e-4 relative on 32 images (wasm)", async () => {
    await initBackend("wasm");
    const net = InceptionV3.load(join(dir, "weights.safetensors"));
    const t0 = performance.now();
    const rgb = await net.features(f32(join(dir, "rgb.f32")), 16, [64, 64, 3]);
    const grey = await net.features(f32(join(dir, "grey.f32")), 16, [28, 28, 1]);
    const msPerImage = (performance.now() - t0) / 32;
    net.dispose();
    const errRgb = maxRelativeError(rgb, f32(join(dir, "rgb-features.f32")), 16);
    const errGrey = maxRelativeError(grey, f32(join(dir, "grey-features.f32")), 16);
    console.log(
      `inception: max relative error rgb ${errRgb.toExponential(2)}, grey ${errGrey.toExponential(2)}; ${msPerImage.toFixed(0)} ms per image on wasm (incl. first-call set-up)`,
    );
    expect(errRgb).toBeLessThan(1e-4);
    expect(errGrey).toBeLessThan(1e-4);
    // Not degenerate: the random network's features vary across images.
    expect(Math.abs(rgb[0] - rgb[INCEPTION_DIM])).toBeGreaterThan(0);
  }, 900_000);
});
