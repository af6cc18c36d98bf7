// Evaluation during training: chunked Fréchet distance (same bits however the chunks are
// split), eval.jsonl and weights untouched by it, and the k best checkpoints kept through
// rotation and resumes.
import {
  existsSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
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
  combineParts,
  EVAL_CHUNK,
  evalChunks,
  evaluateGenerator,
  fdFromSums,
  nodeSums,
} from "../shared/evaluation.js";
import { computeFd } from "../shared/fid.js";
import { buildModel, initWeights } from "../shared/models/index.js";
import { hashSeed, SeedDomain } from "../shared/rng.js";
import { generateSamples } from "../shared/runner.js";
import { runAgon, tempDir } from "./helpers/cli.js";
import { completeJsonLines } from "./helpers/jsonl.js";
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
  return completeJsonLines<EvalLine>(join(dir, "eval.jsonl"));
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
    // As workers would: tree nodes computed in any order, the tree completed above them.
    const parts = [];
    for (const node of [
      { lo: 2, hi: 3 },
      { lo: 0, hi: 2 },
    ])
      parts.push({ ...node, result: await nodeSums(model, g, "mnist", 1133, n, node) });
    expect(await fdFromSums("mnist", combineParts(parts, n))).toBe(whole.fd);
    const leaves = [];
    for (const c of [1, 2, 0]) {
      const node = { lo: c, hi: c + 1 };
      leaves.push({ ...node, result: await nodeSums(model, g, "mnist", 1133, n, node) });
    }
    expect(await fdFromSums("mnist", combineParts(leaves, n))).toBe(whole.fd);
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
      /^agon: error: .*checkpoint\.keepBest \(from --set\): ranks checkpoints by the evaluation's FD/,
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
    // It names the checkpoint the link points at, as an absolute path, not the link.
    expect(r.checkpoint).toBe(realpathSync(join(dir, BEST_DIR, kept[0].name)));
    const sample = await runSample({
      checkpoint: join(dir, "best"),
      out: join(dir, "best.png"),
      n: 4,
    });
    expect(sample.step).toBe(kept[0].step);
    // Scores measured with another eval.n do not compare: they are dropped, with their dirs,
    // and the run says so in one line naming them.
    const lines400: string[] = [];
    await train(mnistConfig(dir, { ...extra(14), eval: { every: 2, n: 400 } }), {
      ...opts,
      log: (l: string) => lines400.push(l),
    });
    const droppedLines = lines400.filter((l) => l.includes("best checkpoints dropped"));
    expect(droppedLines).toEqual([
      `train: best checkpoints dropped, their scores do not compare with this run's: ${kept.map((e) => `step ${e.step} (eval.n 500, now 400)`).join(", ")}; their dirs in best-checkpoints/ are deleted when the next best checkpoint is written`,
    ]);
    expect(readBestScores(dir).map((e) => [e.step, e.n])).toEqual([[14, 400]]);
    expect(readdirSync(join(dir, BEST_DIR)).filter((n) => n.startsWith("ckpt-"))).toEqual([
      "ckpt-00000014",
    ]);
  }, 150_000);
});

describe("a run's best link in eval, sample and export", () => {
  it("says a dangling best link is dangling and a missing one why it is missing", async () => {
    const dir = tempDir();
    symlinkSync(join(BEST_DIR, "ckpt-00000002"), join(dir, "best"));
    await expect(evalCheckpoint(join(dir, "best"))).rejects.toThrow(
      `${join(dir, "best")}: a dangling link (its target best-checkpoints/ckpt-00000002 is gone; give the run dir for its newest checkpoint)`,
    );
    await expect(
      runSample({ checkpoint: join(dir, "best"), out: join(dir, "x.png") }),
    ).rejects.toThrow(/a dangling link/);
    rmSync(join(dir, "best"));
    // A run without keepBest: best/ is never kept.
    mkdirSync(join(dir, "ckpt-00000002"));
    writeFileSync(
      join(dir, "ckpt-00000002", "manifest.json"),
      JSON.stringify({ config: { checkpoint: { every: 2 } } }),
    );
    await expect(evalCheckpoint(join(dir, "best"))).rejects.toThrow(
      "(a run keeps best/ only with eval.every and checkpoint.keepBest; give the run dir for its newest checkpoint)",
    );
    // A run with eval.every and keepBest whose first evaluation has not completed yet.
    writeFileSync(
      join(dir, "ckpt-00000002", "manifest.json"),
      JSON.stringify({ config: { eval: { every: 4 }, checkpoint: { every: 2, keepBest: 2 } } }),
    );
    await expect(evalCheckpoint(join(dir, "best"))).rejects.toThrow(
      "(this run keeps best/ (eval.every and checkpoint.keepBest), but no evaluation has completed yet or none was kept;",
    );
  });
});

describe("agon local with eval.every (evaluation microtasks on the workers)", () => {
  const nats = natsForSuite();

  it("records the same FD bits as agon train and agon eval with 1 and 3 workers, and the weights of a run without eval", async () => {
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
      // Three evaluation chunks (500, 500, 200): with 3 workers each computes one.
      "eval.n=1200",
      "checkpoint.every=3",
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
    for (const line of reference) {
      const ckpt = join(trainDir, `ckpt-${String(line.step).padStart(8, "0")}`);
      expect((await evalCheckpoint(ckpt, { n: 1200 })).fd).toBe(line.fd);
    }
    const plainDir = tempDir();
    const plain = await runAgon([
      "train",
      ...flags.filter((f) => !f.startsWith("eval.")),
      "--run-dir",
      plainDir,
    ]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(JSON.parse(plain.stdout.trim().split("\n").at(-1)!).hashes).toEqual(
      JSON.parse(t.stdout.trim().split("\n").at(-1)!).hashes,
    );
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
