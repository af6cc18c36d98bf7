// The standard FID during training (eval.features inception): agon train, agon local with
// 1 and 3 workers and agon eval --inception give the same FID bits and the weights of a run
// without evaluation; a worker whose Inception weights are missing or damaged answers its
// evaluation microtask with an error, the coordinator skips that evaluation in one line and
// training goes on, bit for bit. Random Inception weights (test/helpers/inception-weights.ts)
// stand in for the real ones, so this runs where torch is absent. eval.n is tiny: Inception
// takes ~0.2–1 s per 299×299 image on wasm, so every run here is on blas where OpenBLAS loads
// (CI installs it; ~1.5× faster, the FID to the same printed digits), else on wasm.
import { copyFileSync, existsSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Scheduler } from "../coordinator/scheduler.js";
import { blasAvailable } from "./helpers/blas.js";
import { runAgon, spawnAgon, tempDir } from "./helpers/cli.js";
import { writeRandomInceptionWeights } from "./helpers/inception-weights.js";
import { completeJsonLines } from "./helpers/jsonl.js";
import { natsForSuite } from "./helpers/nats.js";

/** Every run's backend (see above). */
const BACKEND = blasAvailable() ? "blas" : "wasm";

// 33 samples: evaluation chunks of 16, 16 and 1, so 3 workers each compute one.
const N = 33;
let weights = "";

/** Tiny MNIST MLP GAN flags with (or, `plain`, without) Inception evaluation at step 2. */
function flags(opts: { plain?: boolean; steps?: number; every?: number } = {}): string[] {
  const evalSets = opts.plain
    ? []
    : [
        `eval.every=${opts.every ?? 2}`,
        `eval.n=${N}`,
        "eval.features=inception",
        `eval.inception=${weights}`,
      ];
  return [
    "--dataset",
    "mnist",
    "--model",
    "mlp",
    "--set",
    "dataset.limit=512",
    "model.latentDim=8",
    "model.gHidden=[16]",
    "model.dHidden=[16]",
    "checkpoint.every=2",
    ...evalSets,
    "--steps",
    String(opts.steps ?? 2),
    "--shards",
    "3",
    "--batch",
    "12",
    "--backend",
    BACKEND,
  ];
}

interface FidLine {
  step: number;
  fid: number;
  fd?: number;
  n: number;
}

function evalLines(dir: string): FidLine[] {
  return completeJsonLines<FidLine>(join(dir, "eval.jsonl"));
}

const lastJson = (stdout: string) => JSON.parse(stdout.trim().split("\n").at(-1)!);

beforeAll(() => {
  weights = join(tempDir("agon-incep-w-"), "inception.safetensors");
  writeRandomInceptionWeights(weights);
});

describe("eval.features inception: config and start-up", () => {
  it("refuses inception without a weights file, a weights file without inception, and a missing file, each in one line", async () => {
    const base = flags({ plain: true });
    const noFile = await runAgon([
      "train",
      ...base,
      "--set",
      "eval.every=2",
      "eval.features=inception",
    ]);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr.trim().split("\n")).toHaveLength(1);
    expect(noFile.stderr).toMatch(/eval\.inception.*Inception-v3 weights file/);
    const stray = await runAgon(["train", ...base, "--set", "eval.every=2", "eval.inception=x"]);
    expect(stray.code).toBe(2);
    expect(stray.stderr.trim().split("\n")).toHaveLength(1);
    expect(stray.stderr).toMatch(/eval\.inception.*only with eval\.features inception/);
    const dir = tempDir();
    const missing = await runAgon(
      [
        "train",
        ...base,
        "--set",
        "eval.every=2",
        "eval.features=inception",
        `eval.inception=${join(dir, "none.safetensors")}`,
        "--run-dir",
        join(dir, "run"),
      ],
      { timeoutMs: 120_000 },
    );
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim().split("\n")).toHaveLength(1);
    expect(missing.stderr).toMatch(/cannot read .*none\.safetensors.*convert_inception\.py/);
    expect(existsSync(join(dir, "run", "metrics.jsonl"))).toBe(false);
    // The coordinator checks the file at start, before it listens or writes anything.
    writeFileSync(join(dir, "bad.safetensors"), "not a weights file");
    const coordinator = await runAgon(
      [
        "coordinator",
        ...base,
        "--set",
        "eval.every=2",
        "eval.features=inception",
        `eval.inception=${join(dir, "bad.safetensors")}`,
        "--run-dir",
        join(dir, "run"),
        "--listen",
        "127.0.0.1:0",
      ],
      { timeoutMs: 120_000 },
    );
    expect(coordinator.code).toBe(2);
    expect(
      coordinator.stderr
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("agon: error:")),
    ).toHaveLength(1);
    expect(coordinator.stderr).toMatch(/agon: error: .*bad\.safetensors/);
    expect(coordinator.stdout).not.toMatch(/"event":"listening"/);
    expect(existsSync(join(dir, "run", "metrics.jsonl"))).toBe(false);
  }, 300_000);
});

describe("FID during training (eval.features inception)", () => {
  const nats = natsForSuite();

  it("agon train, agon local --workers 1 and 3 and agon eval --inception give the same FID bits; weights equal a run without eval", async () => {
    const trainDir = tempDir();
    const t = await runAgon(["train", ...flags(), "--run-dir", trainDir, "--json"], {
      timeoutMs: 600_000,
    });
    expect(t.code, t.stderr).toBe(0);
    const lines = evalLines(trainDir);
    expect(lines.map((l) => l.step)).toEqual([2]);
    expect(lines[0].fid).toBeGreaterThan(0);
    expect(lines[0].fd).toBeUndefined();
    const e = await runAgon(
      [
        "eval",
        "--checkpoint",
        join(trainDir, "ckpt-00000002"),
        "--n",
        String(N),
        "--inception",
        weights,
        "--backend",
        BACKEND,
        "--json",
      ],
      { timeoutMs: 600_000 },
    );
    expect(e.code, e.stderr).toBe(0);
    expect(lastJson(e.stdout).inception.fid).toBe(lines[0].fid);
    const plain = await runAgon([
      "train",
      ...flags({ plain: true }),
      "--run-dir",
      tempDir(),
      "--json",
    ]);
    expect(plain.code, plain.stderr).toBe(0);
    const hashes = lastJson(t.stdout).hashes;
    expect(lastJson(plain.stdout).hashes).toEqual(hashes);
    for (const workers of [1, 3]) {
      const dir = tempDir();
      const r = await runAgon(
        [
          "local",
          ...flags(),
          "--workers",
          String(workers),
          "--nats",
          nats.url,
          "--run-dir",
          dir,
          "--json",
        ],
        { timeoutMs: 600_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(evalLines(dir).map((l) => [l.step, l.fid])).toEqual([[2, lines[0].fid]]);
      expect(lastJson(r.stdout).hashes).toEqual(hashes);
    }
    console.log(`inception FID during training: step 2 fid ${lines[0].fid} (n ${N})`);
  }, 1_800_000);
});

describe("a worker that cannot evaluate", () => {
  it("answers with an error; the coordinator gives its chunks to the workers that can evaluate (one line each), the FID is agon eval's and the weights stay bit for bit", async () => {
    const dir = tempDir();
    const damaged = join(dir, "damaged.safetensors");
    copyFileSync(weights, damaged);
    truncateSync(damaged, 1 << 20);
    // Evaluations at steps 20 and 40: w-good joins first (so some worker can always
    // evaluate); the two others have joined by step 40, whose chunks they fail.
    const config = flags({ steps: 40, every: 20 });
    const plain = await runAgon(
      [
        "train",
        ...flags({ plain: true, steps: 40 }),
        "--run-dir",
        tempDir(),
        "--backend",
        BACKEND,
        "--json",
      ],
      { timeoutMs: 300_000 },
    );
    expect(plain.code, plain.stderr).toBe(0);
    const coordinator = spawnAgon([
      "coordinator",
      ...config,
      "--run-dir",
      join(dir, "run"),
      "--listen",
      "127.0.0.1:0",
    ]);
    const killer = setTimeout(() => coordinator.child.kill("SIGKILL"), 900_000);
    try {
      const address = await new Promise<string | null>((resolve) => {
        const poll = setInterval(() => {
          const found = /"event":"listening","address":"([^"]+)"/.exec(coordinator.stdout())?.[1];
          if (found) {
            clearInterval(poll);
            resolve(found);
          }
        }, 100);
        void coordinator.exited.then(() => {
          clearInterval(poll);
          resolve(null);
        });
      });
      expect(address, coordinator.stderr()).not.toBeNull();
      const worker = (name: string, file: string) =>
        runAgon(
          [
            "worker",
            "--coordinator",
            address!,
            "--name",
            name,
            "--backend",
            BACKEND,
            "--inception",
            file,
          ],
          { timeoutMs: 900_000 },
        );
      const good = worker("w-good", weights);
      while (!/joined/.test(coordinator.stderr())) await new Promise((r) => setTimeout(r, 50));
      const [missingW, damagedW, goodW] = await Promise.all([
        worker("w-missing", join(dir, "none.safetensors")),
        worker("w-damaged", damaged),
        good,
      ]);
      expect(missingW.code, missingW.stderr).toBe(0);
      expect(damagedW.code, damagedW.stderr).toBe(0);
      expect(goodW.code, goodW.stderr).toBe(0);
      expect(await coordinator.exited, coordinator.stderr()).toBe(0);
      // Each worker says why, in its own line.
      expect(missingW.stderr).toMatch(/cannot evaluate .*cannot read .*none\.safetensors/);
      expect(damagedW.stderr).toMatch(
        /cannot evaluate .*damaged\.safetensors has sha256 .*the run's Inception weights/,
      );
      // …and said so at start already, before any evaluation.
      expect(missingW.stderr).toMatch(/worker: cannot evaluate: cannot read .*none\.safetensors/);
      expect(damagedW.stderr).toMatch(/worker: cannot evaluate: .*damaged\.safetensors has sha256/);
      expect(goodW.stderr).not.toMatch(/cannot evaluate/);
      // Each worker that cannot evaluate is named once, with its cause; its chunks went to
      // w-good, so no evaluation was skipped.
      const failed = coordinator
        .stderr()
        .split("\n")
        .filter((l) => /cannot evaluate/.test(l));
      expect(failed, coordinator.stderr()).toHaveLength(2);
      expect(failed.map((l) => /\((w-\w+)\)/.exec(l)![1]).sort()).toEqual([
        "w-damaged",
        "w-missing",
      ]);
      for (const line of failed)
        expect(line).toMatch(
          /worker \S+ \(w-(missing|damaged)\) cannot evaluate: (cannot read|.*has sha256).*; it gets no evaluation microtasks; its chunks go to the other workers/,
        );
      expect(coordinator.stderr()).not.toMatch(/skipped/);
      const lines = evalLines(join(dir, "run"));
      expect(lines.map((l) => l.step)).toEqual([20, 40]);
      const e = await runAgon(
        [
          "eval",
          "--checkpoint",
          join(dir, "run", "ckpt-00000040"),
          "--inception",
          weights,
          "--n",
          String(N),
          "--backend",
          BACKEND,
          "--json",
        ],
        { timeoutMs: 600_000 },
      );
      expect(e.code, e.stderr).toBe(0);
      expect(lastJson(e.stdout).inception.fid).toBe(lines[1].fid);
      const done = coordinator
        .stdout()
        .split("\n")
        .filter((l) => l.includes('"event":"done"'))
        .map((l) => JSON.parse(l));
      expect(done).toHaveLength(1);
      expect(done[0].hashes).toEqual(lastJson(plain.stdout).hashes);
    } finally {
      clearTimeout(killer);
      coordinator.child.kill("SIGKILL");
    }
  }, 1_800_000);
});

describe("Scheduler.abandonEvaluation (the coordinator's side of EvaluationFailed)", () => {
  it("cancels every holder's evaluation microtasks, refuses their late results, and the next training phase starts clean", () => {
    const s = new Scheduler(4, 2000);
    const ids = ["a", "b"].map((name) => {
      const { workerId } = s.join(name, 0);
      s.connect(workerId, 0);
      return workerId;
    });
    // Not in an evaluation: nothing to give up.
    s.startPhase(2, 0, { G: 2, D: 2 }, 0);
    expect(s.abandonEvaluation("x")).toEqual([]);
    s.startPhase(2, 0, { G: 2, D: 2 }, 1, { kind: "eval", evaluation: { width: 3 } });
    const tasks = ids.flatMap((id) =>
      ["2.eval.0", "2.eval.1", "2.eval.2", "2.eval.0-2"].filter((t) => s.holds(id, t)),
    );
    expect(tasks.length).toBeGreaterThan(1);
    const actions = s.abandonEvaluation("evaluation skipped");
    expect(actions.every((a) => a.type === "cancel" && a.reason === "evaluation skipped")).toBe(
      true,
    );
    expect(actions.map((a) => (a.type === "cancel" ? a.taskId : "")).sort()).toEqual(
      [...tasks].sort(),
    );
    const late = s.submit(
      ids[0],
      tasks[0],
      { dim: 1, n: 1, sum: new Float64Array(1), outer: new Float64Array(1) },
      2,
    );
    expect(late.verdict.ok).toBe(false);
    expect(s.startPhase(2, 0, { G: 2, D: 2 }, 3).filter((a) => a.type === "assign")).toHaveLength(
      2,
    );
  });
});

describe("eval.features inception: signals", () => {
  it("SIGINT during an Inception evaluation stops agon train at once with a checkpoint; during a coordinator's reference it stops before anything is written", async () => {
    // eval.n 2000: minutes of Inception work on wasm, so only a prompt stop ends these.
    const big = ["--set", "eval.n=2000"];
    const trainDir = tempDir();
    const train = spawnAgon(["train", ...flags({ steps: 4 }), ...big, "--run-dir", trainDir]);
    const coordDir = tempDir();
    const coord = spawnAgon([
      "coordinator",
      ...flags({ steps: 4 }),
      ...big,
      "--run-dir",
      coordDir,
      "--listen",
      "127.0.0.1:0",
    ]);
    const guard = setTimeout(() => {
      train.child.kill("SIGKILL");
      coord.child.kill("SIGKILL");
    }, 150_000);
    try {
      const signalWhen = async (run: typeof train, line: RegExp) => {
        while (!line.test(run.stderr()) && run.child.exitCode === null)
          await new Promise((r) => setTimeout(r, 50));
        run.child.kill("SIGINT");
        return run.exited;
      };
      const [trainCode, coordCode] = await Promise.all([
        signalWhen(train, /step 2: evaluating FID: Inception features of 2000 generated samples/),
        signalWhen(coord, /computing the evaluation reference: Inception features of up to 2000/),
      ]);
      expect(trainCode, train.stderr()).toBe(130);
      expect(train.stderr()).toMatch(/train: step 2: evaluation given up: stopping/);
      expect(train.stderr()).toMatch(/stopped at step 2 phase 0; checkpoint written/);
      expect(existsSync(join(trainDir, "ckpt-00000002"))).toBe(true);
      expect(existsSync(join(trainDir, "eval.jsonl"))).toBe(false);
      expect(coordCode, coord.stderr()).toBe(0);
      expect(coord.stderr()).toMatch(/coordinator: SIGINT while starting: stopping/);
      expect(coord.stderr()).not.toMatch(/listening on|agon: error/);
      expect(existsSync(join(coordDir, "agon.lock"))).toBe(false);
    } finally {
      clearTimeout(guard);
    }
  }, 180_000);
});

describe("Scheduler.cannotEvaluate", () => {
  it("moves a failed worker's evaluation chunks to the others, gives it no evaluation microtasks later, and says when none can evaluate", () => {
    const s = new Scheduler(4, 2000);
    const ids = ["a", "b"].map((name) => {
      const { workerId } = s.join(name, 0);
      s.connect(workerId, 0);
      return workerId;
    });
    const assigned = (actions: ReturnType<Scheduler["startPhase"]>) =>
      actions.flatMap((a) =>
        a.type === "assign" ? [[a.workerId, a.task.shard, a.task.shardEnd]] : [],
      );
    const first = s.startPhase(2, 0, { G: 1, D: 1 }, 0, { kind: "eval", evaluation: { width: 4 } });
    expect(assigned(first)).toEqual([
      [ids[0], 0, 2],
      [ids[1], 2, 4],
    ]);
    const taskOfA = first.find((a) => a.type === "assign" && a.workerId === ids[0]);
    const moved = s.cannotEvaluate(ids[0], 1, "cannot evaluate");
    expect(moved).not.toBeNull();
    expect(moved!.filter((a) => a.type === "cancel").map((a) => a.workerId)).toEqual([ids[0]]);
    // a's chunks 0 and 1 now belong to b, the only worker that can evaluate.
    expect(assigned(moved!).map(([w]) => w)).toEqual(assigned(moved!).map(() => ids[1]));
    expect(assigned(moved!).flatMap(([, lo, hi]) => [lo, hi])).toEqual([0, 2]);
    expect(s.holds(ids[0], (taskOfA as { task: { taskId: string } }).task.taskId)).toBe(false);
    // The next evaluation goes to b alone; a still trains.
    s.abandonEvaluation("test");
    const next = s.startPhase(4, 0, { G: 2, D: 2 }, 2, { kind: "eval", evaluation: { width: 4 } });
    expect(new Set(assigned(next).map(([w]) => w))).toEqual(new Set([ids[1]]));
    s.abandonEvaluation("test");
    const training = s.startPhase(4, 0, { G: 2, D: 2 }, 3, { kind: "D" });
    expect(new Set(assigned(training).map(([w]) => w))).toEqual(new Set(ids));
    // When b fails too, nobody is left: null, and canEvaluate says so.
    s.startPhase(6, 0, { G: 3, D: 3 }, 4, { kind: "eval", evaluation: { width: 4 } });
    expect(s.cannotEvaluate(ids[1], 5, "cannot evaluate")).toBeNull();
    expect(s.canEvaluate()).toBe(false);
  });
});
