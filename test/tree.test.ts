// The reduction tree: its shape, and the contract that gradients summed along
// it give the same bits for `agon train` and for any number of workers, with
// reassignment and straggler re-issue. The cluster here is the real scheduler
// and real microtasks driven in one process (no sockets); the wire tests in
// distributed.test.ts run the same with processes.
import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { type Action, Scheduler, type TaskRef } from "../coordinator/scheduler.js";
import { TrainingState } from "../coordinator/state.js";
import { train } from "../coordinator/train.js";
import { initBackend } from "../shared/backend.js";
import { parseConfig, type RunConfig } from "../shared/config.js";
import { loadDataset } from "../shared/data/index.js";
import type { MicrotaskResult } from "../shared/microtask.js";
import { MicrotaskRunner, transportWeights } from "../shared/runner.js";
import { datasetSpec, microtaskSpec } from "../shared/schedule.js";
import {
  combine,
  completeTree,
  isTreeNode,
  ownedRange,
  reduceNode,
  treeCover,
} from "../shared/tree.js";
import { tempDir } from "./helpers/cli.js";

const leaf = (v: number[], k = 0): MicrotaskResult => ({
  grad: Float32Array.from(v),
  count: 1,
  dLoss: k,
  gLoss: k,
  dReal: k,
  dFake: k,
});

describe("reduction tree", () => {
  it("is defined by K alone: nodes halve, the left taking the larger half", () => {
    expect(treeCover(0, 8, 8)).toEqual([{ lo: 0, hi: 8 }]);
    expect(treeCover(0, 3, 8)).toEqual([
      { lo: 0, hi: 2 },
      { lo: 2, hi: 3 },
    ]);
    expect(treeCover(2, 5, 8)).toEqual([
      { lo: 2, hi: 4 },
      { lo: 4, hi: 5 },
    ]);
    expect(treeCover(3, 3, 8)).toEqual([]);
    expect(isTreeNode(0, 3, 5)).toBe(true); // 5 → [0,3) + [3,5)
    expect(isTreeNode(1, 3, 5)).toBe(false);
    expect(isTreeNode(4, 8, 8)).toBe(true);
    expect(isTreeNode(2, 6, 8)).toBe(false);
    expect(isTreeNode(0, 9, 8)).toBe(false);
  });

  it("contiguous ownership covers each worker's range with at most 2·log2 K nodes", () => {
    for (const k of [1, 2, 3, 5, 6, 8, 16, 13]) {
      for (let w = 1; w <= k + 1; w++) {
        let next = 0;
        for (let i = 0; i < w; i++) {
          const r = ownedRange(i, w, k);
          expect(r.lo).toBe(next);
          next = r.hi;
          const cover = treeCover(r.lo, r.hi, k);
          expect(cover.length).toBeLessThanOrEqual(Math.max(1, 2 * Math.ceil(Math.log2(k))));
          for (const n of cover) expect(isTreeNode(n.lo, n.hi, k)).toBe(true);
        }
        expect(next).toBe(k);
      }
    }
  });

  it("sums in float32 node by node, so the root is the same whichever nodes arrive", async () => {
    // Values where float32 addition is not associative: the tree fixes the order.
    const values = [1e8, 1, -1e8, 1, 3, 0.1, 7e7, -0.3];
    const byLeaf = await reduceNode({ lo: 0, hi: 8 }, "fp32", (k) => leaf([values[k]], k));
    const ref = Math.fround(
      Math.fround(Math.fround(1e8 + 1) + Math.fround(-1e8 + 1)) +
        Math.fround(Math.fround(3 + Math.fround(0.1)) + Math.fround(7e7 + Math.fround(-0.3))),
    );
    expect(byLeaf.grad[0]).toBe(ref);
    expect(byLeaf.count).toBe(8);
    expect(byLeaf.dLoss).toBe(28);
    const parts = async (nodes: [number, number][]) =>
      Promise.all(
        nodes.map(async ([lo, hi]) => ({
          lo,
          hi,
          result: await reduceNode({ lo, hi }, "fp32", (k) => leaf([values[k]], k)),
        })),
      );
    for (const nodes of [
      [[0, 8]],
      [
        [4, 8],
        [0, 4],
      ],
      [
        [0, 2],
        [2, 3],
        [3, 4],
        [4, 8],
      ],
      values.map((_, k) => [k, k + 1]),
    ] as [number, number][][]) {
      expect(completeTree(await parts(nodes), 8, "fp32").grad[0]).toBe(ref);
    }
    // Shard order alone (no tree) gives other bits here, which is why the tree is the definition.
    let flat = 0;
    for (const v of values) flat = Math.fround(flat + Math.fround(v));
    expect(flat).not.toBe(ref);
  });

  it("rounds every node to transport.gradients, so a node's value is what the wire carries", () => {
    const sum = combine(leaf([1, 1]), leaf([2 ** -9, 3 * 2 ** -9]), "bf16");
    // 1 + 2⁻⁹ is a tie in bf16 (8 bits of mantissa) and rounds to even: 1; 1 + 3·2⁻⁹ rounds up.
    expect(Array.from(sum.grad)).toEqual([1, 1 + 2 ** -7]);
  });

  it("refuses parts that are not disjoint tree nodes covering every shard", async () => {
    const p = (lo: number, hi: number) => ({ lo, hi, result: leaf([lo]) });
    expect(() => completeTree([p(0, 2), p(2, 4)], 5, "fp32")).toThrow(/not a node/);
    expect(() => completeTree([p(0, 4)], 8, "fp32")).toThrow(/shard 4 is missing/);
    expect(() => completeTree([p(0, 8), p(0, 4)], 8, "fp32")).toThrow(/overlap/);
  });
});

/** What can go wrong in a simulated phase. */
interface Fault {
  /** Global phase index (0-based) at which it happens. */
  atPhase: number;
  kind: "lose" | "straggler";
  /** Worker index in join order. */
  worker: number;
}

/**
 * Runs the config on `workers` simulated workers driven by the real Scheduler
 * and TrainingState: each worker computes the nodes it is assigned with
 * reduceNode and submits them; the coordinator completes the tree. Checks on
 * the way that every task is a tree node and that every accepted part was
 * assigned whole to its sender (so no worker summed shards it did not own).
 */
async function simulate(
  cfg: RunConfig,
  runner: MicrotaskRunner,
  workers: number,
  faults: Fault[] = [],
): Promise<{ hashes: { G: string; D: string }; events: string[] }> {
  const state = new TrainingState(cfg, runner.model);
  const s = new Scheduler(cfg.shards, 60_000);
  const ids = Array.from({ length: workers }, (_, i) => {
    const { workerId } = s.join(`w${i}`, 0);
    s.connect(workerId, 0);
    return workerId;
  });
  const events: string[] = [];
  let now = 0;
  let globalPhase = 0;
  while (!state.done) {
    const queues = new Map<string, TaskRef[]>(ids.map((id) => [id, []]));
    const assignedWhole = new Set<string>();
    let complete: Extract<Action, { type: "phaseComplete" }> | undefined;
    const apply = (actions: Action[]) => {
      for (const a of actions) {
        if (a.type === "assign") {
          expect(isTreeNode(a.task.shard, a.task.shardEnd, cfg.shards)).toBe(true);
          queues.get(a.workerId)?.push(a.task);
          assignedWhole.add(`${a.workerId} ${a.task.taskId}`);
        } else if (a.type === "cancel") {
          const q = queues.get(a.workerId);
          if (q)
            queues.set(
              a.workerId,
              q.filter((t) => t.taskId !== a.taskId),
            );
        } else if (a.type === "phaseComplete") complete = a;
        else if (a.type === "taskReassigned" || a.type === "taskReissued") events.push(a.type);
      }
    };
    const g = transportWeights(cfg, state.weights.G);
    const d = transportWeights(cfg, state.weights.D);
    const run = async (workerId: string, task: TaskRef) => {
      const result = await reduceNode(
        { lo: task.shard, hi: task.shardEnd },
        cfg.transport.gradients,
        (shard) => runner.run(microtaskSpec(cfg, task.step, task.phase, shard), g, d),
      );
      const { verdict, actions } = s.submit(workerId, task.taskId, result, now);
      if (verdict.ok) expect(assignedWhole.has(`${workerId} ${task.taskId}`)).toBe(true);
      apply(actions);
    };
    apply(s.startPhase(state.step, state.phase, { ...state.versions }, now, { deadlineMs: 1000 }));
    const fault = faults.find((f) => f.atPhase === globalPhase);
    const faulty = fault ? ids[fault.worker] : undefined;
    let round = 0;
    while (!complete) {
      now += 10;
      round++;
      // A lost worker vanishes after delivering one task; a straggler stays silent until its
      // tasks pass the deadline (1 s per shard), which hands its missing leaves to idle workers,
      // then delivers.
      if (fault?.kind === "lose" && round === 2 && faulty && s.isMember(faulty)) {
        apply(s.lose(faulty, "test: killed", now));
        queues.delete(faulty);
      }
      if (fault?.kind === "straggler" && round === 2) now += 5000;
      for (const id of ids) s.heartbeat(id, now);
      apply(s.tick(now));
      let progressed = false;
      for (const [id, q] of queues) {
        if (id === faulty && fault?.kind === "straggler" && round < 6) continue;
        const task = q.shift();
        if (task) {
          await run(id, task);
          progressed = true;
          if (complete) break;
        }
      }
      if (!progressed && round > 50) throw new Error("simulation stalled");
    }
    const done: Extract<Action, { type: "phaseComplete" }> = complete;
    state.applyPhase(done.parts);
    globalPhase++;
  }
  return { hashes: state.hashes(), events };
}

describe("tree sums are the same bits for agon train and any cluster (K = 8)", () => {
  it("agon train = 1, 2, 3 and 5 workers, with a reassignment mid-phase and a straggler re-issue", async () => {
    await initBackend("wasm", () => {});
    const cfg = parseConfig({
      run: { id: "tree", dir: tempDir() },
      seed: 3,
      model: { name: "mlp", latentDim: 4, gHidden: [16], dHidden: [16] },
      dataset: { name: "ring", size: 256 },
      shards: 8,
      batch: 32,
      steps: 3,
    });
    const reference = await train(cfg, {
      backend: "wasm",
      fresh: true,
      log: () => {},
      progressOut: { write: () => true } as unknown as NodeJS.WriteStream,
    });
    const runner = new MicrotaskRunner(cfg, await loadDataset(datasetSpec(cfg)));
    for (const workers of [1, 2, 3, 5]) {
      expect((await simulate(cfg, runner, workers)).hashes, `${workers} workers`).toEqual(
        reference.hashes,
      );
    }
    const faulty = await simulate(cfg, runner, 3, [
      { atPhase: 1, kind: "lose", worker: 1 },
      { atPhase: 3, kind: "straggler", worker: 0 },
    ]);
    expect(faulty.events).toContain("taskReassigned");
    expect(faulty.events).toContain("taskReissued");
    expect(faulty.hashes).toEqual(reference.hashes);
    const five = await simulate(cfg, runner, 5, [
      { atPhase: 0, kind: "straggler", worker: 4 },
      { atPhase: 2, kind: "lose", worker: 1 },
    ]);
    expect(five.events).toContain("taskReassigned");
    expect(five.events).toContain("taskReissued");
    expect(five.hashes).toEqual(reference.hashes);

    // agon train keeps each version's weights on the device (keys); the simulated workers
    // upload them per microtask: equal hashes above mean equal bits. Here: one upload per key.
    const g = Float32Array.from({ length: runner.model.g.size }, (_, i) => Math.sin(i) / 8);
    const d = Float32Array.from({ length: runner.model.d.size }, (_, i) => Math.cos(i) / 8);
    const spec = (shard: number) => microtaskSpec(cfg, 0, 0, shard);
    const keys = { G: "g1", D: "d1" };
    const first = runner.run(spec(0), g, d, keys);
    const live = tf.memory().numTensors;
    const second = runner.run(spec(1), g, d, keys);
    expect(tf.memory().numTensors).toBe(live);
    expect(second.grad).toEqual(runner.run(spec(1), g, d).grad);
    expect(first.grad).toEqual(runner.run(spec(0), g, d).grad);
    runner.release();
  }, 120_000);
});
