// Evaluation during training: chunked Fréchet distance (same bits however the chunks are
// split), eval.jsonl and weights untouched by it, and the k best checkpoints kept through
// rotation and resumes.
import { existsSync, readdirSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { BEST_DIR, readBestScores } from "../coordinator/best.js";
import { configHash } from "../coordinator/checkpoint.js";
import { evalCheckpoint } from "../coordinator/eval.js";
import { runSample } from "../coordinator/export.js";
import { train } from "../coordinator/train.js";
import { initBackend } from "../shared/backend.js";
import { ConfigError, parseConfig, type RunConfig } from "../shared/config.js";
import {
  chunkSums,
  combineChunks,
  EVAL_CHUNK,
  evalChunks,
  evaluateGenerator,
  fdFromSums,
} from "../shared/evaluation.js";
import { computeFd } from "../shared/fid.js";
import { buildModel, initWeights } from "../shared/models/index.js";
import { hashSeed, SeedDomain } from "../shared/rng.js";
import { generateSamples } from "../shared/runner.js";
import { runAgon, tempDir } from "./helpers/cli.js";
import { natsForSuite } from "./helpers/nats.js";

const quiet = () => {};
const silentStream = { write: () => true } as unknown as NodeJS.WriteStream;

/** A small MNIST MLP GAN: 12 steps in a few seconds. */
function mnistConfig(dir: string, extra: Record<string, unknown> = {}): RunConfig {
  return parseConfig({
    run: { id: "evaltest", dir },
    seed: 3,
    model: { name: "mlp", latentDim: 16, gHidden: [64], dHidden: [64] },
    dataset: { name: "mnist", limit: 2048 },
    shards: 2,
    batch: 32,
    optimizer: { g: { lr: 0.002 }, d: { lr: 0.002 } },
    steps: 12,
    ...extra,
  });
}

interface EvalLine {
  step: number;
  fd: number;
  n: number;
}

function evalLines(dir: string): EvalLine[] {
  return readFileSync(join(dir, "eval.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as EvalLine);
}

beforeAll(async () => {
  await initBackend("wasm", quiet);
}, 60_000);

describe("chunked evaluation", () => {
  it("gives the same bits for chunks computed in any order and ≈ the one-batch FD", async () => {
    const model = buildModel(
      { name: "mlp", latentDim: 16, gHidden: [64], dHidden: [64] },
      [28, 28, 1],
    );
    const g = initWeights(model.g, hashSeed(3, SeedDomain.initG));
    const n = 2 * EVAL_CHUNK + 137;
    expect(evalChunks(n).map((c) => c.count)).toEqual([EVAL_CHUNK, EVAL_CHUNK, 137]);
    const whole = await evaluateGenerator(model, g, "mnist", { n, seed: 1133 });
    // As three workers would: the last chunk first, combined in chunk order.
    const sums = [];
    for (const c of [2, 0, 1]) sums[c] = await chunkSums(model, g, "mnist", 1133, n, c);
    expect(await fdFromSums("mnist", combineChunks(sums))).toBe(whole.fd);
    // The latents are those of generateSamples: the FD of one big batch agrees to rounding.
    const oneBatch = await computeFd("mnist", await generateSamples(model, g, 1133, n), n);
    expect(Math.abs(oneBatch - whole.fd) / oneBatch).toBeLessThan(1e-4);
  }, 60_000);
});

describe("eval.every during training", () => {
  it("writes eval.jsonl equal bit for bit to agon eval on the checkpoints, and leaves the weights unchanged", async () => {
    const plain = await train(mnistConfig(tempDir()), {
      backend: "wasm",
      log: quiet,
      progressOut: silentStream,
    });
    const dir = tempDir();
    const cfg = mnistConfig(dir, {
      eval: { every: 4, n: 600 },
      checkpoint: { every: 4, keep: 5 },
    });
    const evaluated = await train(cfg, { backend: "wasm", log: quiet, progressOut: silentStream });
    expect(evaluated.hashes).toEqual(plain.hashes);
    const lines = evalLines(dir);
    expect(lines.map((l) => l.step)).toEqual([4, 8, 12]);
    for (const line of lines) {
      const ckpt = join(dir, `ckpt-${String(line.step).padStart(8, "0")}`);
      const r = await evalCheckpoint(ckpt, { n: 600 });
      expect(r.fd).toBe(line.fd);
    }
    // agon eval --kid: the same FD, plus KID on subsets of min(1000, n) rows.
    const withKid = await evalCheckpoint(dir, { n: 600, kidSubsets: 3 });
    expect(withKid.fd).toBe(lines[2].fd);
    expect(withKid.kid).toMatchObject({ subsets: 3, subsetSize: 600 });
    expect(withKid.kid!.mean).toBeGreaterThan(0);
  }, 120_000);

  it("is not part of the config hash, so a run can switch it on when it resumes", () => {
    const dir = tempDir();
    expect(configHash(mnistConfig(dir, { eval: { every: 5, n: 100 } }))).toBe(
      configHash(mnistConfig(dir)),
    );
  });

  it("refuses eval without a feature classifier and keepBest without eval (exit 2, one line)", async () => {
    expect(() =>
      parseConfig({
        model: { name: "mlp" },
        dataset: { name: "ring" },
        steps: 1,
        eval: { every: 1 },
      }),
    ).toThrow(/eval: needs a dataset with a feature classifier/);
    expect(() =>
      parseConfig({
        model: { name: "mlp" },
        dataset: { name: "mnist" },
        steps: 1,
        checkpoint: { keepBest: 2 },
      }),
    ).toThrow(ConfigError);
    const dir = tempDir();
    const r = await runAgon([
      "train",
      "--dataset",
      "mnist",
      "--model",
      "mlp",
      "--steps",
      "2",
      "--run-dir",
      dir,
      "--set",
      "checkpoint.keepBest=2",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(
      /^agon: error: .*checkpoint\.keepBest: ranks checkpoints by the evaluation's FD/,
    );
    expect(existsSync(join(dir, "config.json"))).toBe(false);
  }, 60_000);
});

describe("checkpoint.keepBest", () => {
  it("keeps the k lowest-FD checkpoints through rotation and a cut-back resume; runs/x/best is the best", async () => {
    const dir = tempDir();
    const extra = (steps: number) => ({
      steps,
      eval: { every: 2, n: 500 },
      checkpoint: { every: 3, keep: 2, keepBest: 2 },
    });
    const opts = { backend: "wasm" as const, log: quiet, progressOut: silentStream };
    await train(mnistConfig(dir, extra(6)), opts);
    const firstPart = evalLines(dir);
    // As after a crash before the last checkpoint: the resume goes back to step 3, steps 4 and
    // 6 are evaluated again, and the run is extended to 12; the ranking covers both parts.
    rmSync(join(dir, "ckpt-00000006"), { recursive: true });
    const resumed = await train(mnistConfig(dir, extra(12)), opts);
    expect(resumed.resumedFrom).toBe(3);
    // The resume cut eval.jsonl back to step 3; steps 4 and 6 were evaluated again.
    const lines = evalLines(dir);
    expect(lines.map((l) => l.step)).toEqual([2, 4, 6, 8, 10, 12]);
    // Deterministic: the re-evaluated steps score the same bits.
    expect(lines.slice(1, 3).map((l) => [l.step, l.fd])).toEqual(
      firstPart.slice(1, 3).map((l) => [l.step, l.fd]),
    );
    const expected = [...lines].sort((a, b) => a.fd - b.fd || a.step - b.step).slice(0, 2);
    const kept = readBestScores(dir);
    expect(kept.map((e) => [e.step, e.fd])).toEqual(expected.map((l) => [l.step, l.fd]));
    const names = readdirSync(join(dir, BEST_DIR))
      .filter((n) => n.startsWith("ckpt-"))
      .sort();
    expect(names).toEqual(kept.map((e) => e.name).sort());
    // Rotation kept the two latest checkpoints and never touched the best ones.
    expect(
      readdirSync(dir)
        .filter((n) => n.startsWith("ckpt-"))
        .sort(),
    ).toEqual(["ckpt-00000009", "ckpt-00000012"]);
    // runs/x/best resolves to the best one; agon eval and agon sample take it.
    expect(realpathSync(join(dir, "best"))).toBe(realpathSync(join(dir, BEST_DIR, kept[0].name)));
    const r = await evalCheckpoint(join(dir, "best"), { n: 500 });
    expect(r.step).toBe(kept[0].step);
    expect(r.fd).toBe(kept[0].fd);
    const sample = await runSample({
      checkpoint: join(dir, "best"),
      out: join(dir, "best.png"),
      n: 4,
    });
    expect(sample.step).toBe(kept[0].step);
    // Scores measured with another eval.n do not compare: they are dropped, with their dirs.
    await train(mnistConfig(dir, { ...extra(14), eval: { every: 2, n: 400 } }), opts);
    expect(readBestScores(dir).map((e) => [e.step, e.n])).toEqual([[14, 400]]);
    expect(readdirSync(join(dir, BEST_DIR)).filter((n) => n.startsWith("ckpt-"))).toEqual([
      "ckpt-00000014",
    ]);
  }, 150_000);
});

describe("agon local with eval.every", () => {
  const nats = natsForSuite();

  it("records the same FD bits as agon train with 1 and 3 workers", async () => {
    const flags = [
      "--dataset",
      "mnist",
      "--model",
      "mlp",
      "--set",
      "dataset.limit=1024",
      "model.latentDim=16",
      "model.gHidden=[32]",
      "model.dHidden=[32]",
      "eval.every=3",
      "eval.n=500",
      "--steps",
      "6",
      "--shards",
      "3",
      "--batch",
      "24",
      "--backend",
      "wasm",
      "--json",
    ];
    const trainDir = tempDir();
    const t = await runAgon(["train", ...flags, "--run-dir", trainDir]);
    expect(t.code, t.stderr).toBe(0);
    const reference = evalLines(trainDir);
    expect(reference.map((l) => l.step)).toEqual([3, 6]);
    for (const workers of [1, 3]) {
      const dir = tempDir();
      const r = await runAgon([
        "local",
        ...flags,
        "--workers",
        String(workers),
        "--nats",
        nats.url,
        "--run-dir",
        dir,
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(evalLines(dir).map((l) => [l.step, l.fd])).toEqual(
        reference.map((l) => [l.step, l.fd]),
      );
      const hashes = JSON.parse(r.stdout.trim().split("\n").at(-1)!).hashes;
      expect(hashes).toEqual(JSON.parse(t.stdout.trim().split("\n").at(-1)!).hashes);
    }
  }, 240_000);
});
