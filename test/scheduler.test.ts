import { describe, expect, it } from "vitest";
import { type Action, Scheduler } from "../coordinator/scheduler.js";
import type { FeatureSums } from "../shared/fid.js";
import type { MicrotaskResult } from "../shared/microtask.js";

const result = (v: number): MicrotaskResult => ({
  grad: Float32Array.from([v]),
  count: 1,
  dLoss: 0,
  gLoss: 0,
  dReal: 0,
  dFake: 0,
});
const assigns = (actions: Action[]) =>
  actions
    .filter((a) => a.type === "assign")
    .map((a) => (a.type === "assign" ? `${node(a.task)}->${a.workerId}` : ""));
/** A task's shards as its id writes them: `k` for a leaf, `lo-hi` for a node. */
const node = (t: { shard: number; shardEnd: number }) =>
  t.shardEnd - t.shard === 1 ? `${t.shard}` : `${t.shard}-${t.shardEnd}`;

function cluster(workers: string[], shards = 6) {
  const s = new Scheduler(shards, 2000);
  const ids = workers.map((name) => {
    const { workerId } = s.join(name, 0);
    s.connect(workerId, 0);
    return workerId;
  });
  return { s, ids };
}

describe("scheduler", () => {
  it("gives each live worker a contiguous range of shards, as the fewest tree nodes, in join order", () => {
    // K = 6: the tree splits [0,6) into [0,3) and [3,6), [0,3) into [0,2) and 2, [3,6) into [3,5) and 5.
    const { s, ids } = cluster(["a", "b", "c"]);
    const actions = s.startPhase(0, 0, { G: 0, D: 0 }, 0);
    expect(assigns(actions)).toEqual([
      `0-2->${ids[0]}`,
      `2->${ids[1]}`,
      `3->${ids[1]}`,
      `4->${ids[2]}`,
      `5->${ids[2]}`,
    ]);
    const two = cluster(["a", "b"], 8);
    expect(assigns(two.s.startPhase(0, 0, { G: 0, D: 0 }, 0))).toEqual([
      `0-4->${two.ids[0]}`,
      `4-8->${two.ids[1]}`,
    ]);
  });

  it("completes a phase with its parts in shard order, whatever the arrival order", () => {
    const { s, ids } = cluster(["a", "b", "c"], 4);
    // Ranges [0,1), [1,2), [2,4): c owns the node [2,4).
    s.startPhase(3, 1, { G: 2, D: 3 }, 0);
    let done: Action | undefined;
    for (const [w, taskId, v] of [
      [2, "3.1.2-4", 2],
      [0, "3.1.0", 0],
      [1, "3.1.1", 1],
    ] as const) {
      const { verdict, actions } = s.submit(ids[w], taskId, result(v), 1);
      expect(verdict.ok).toBe(true);
      done = actions.find((a) => a.type === "phaseComplete") ?? done;
    }
    expect(done?.type).toBe("phaseComplete");
    if (done?.type === "phaseComplete")
      expect(done.parts.map((p) => [p.lo, p.hi, p.result.grad[0]])).toEqual([
        [0, 1, 0],
        [1, 2, 1],
        [2, 4, 2],
      ]);
  });

  it("reassigns a lost worker's unfinished microtasks and ignores its late results", () => {
    const { s, ids } = cluster(["a", "b", "c"]);
    s.startPhase(0, 0, { G: 0, D: 0 }, 0);
    expect(s.submit(ids[1], "0.0.2", result(2), 1).verdict.ok).toBe(true);
    const actions = s.lose(ids[1], "stream closed", 2);
    // Shard 3 (b's unfinished one) goes to the least-loaded live worker; shard 2 stays done.
    expect(assigns(actions)).toEqual([`3->${ids[0]}`]);
    expect(s.submit(ids[1], "0.0.3", result(3), 3).verdict).toEqual({
      ok: false,
      reason: `unknown or evicted worker ${ids[1]}`,
    });
  });

  it("hands a lost worker's missing leaves out one by one, merged into a node where one worker gets all of it", () => {
    const { s, ids } = cluster(["a", "b", "c"], 8);
    // Ranges [0,2), [2,5), [5,8): a has the node 0-2, b has 2-4 and 4, c has 5 and 6-8.
    expect(assigns(s.startPhase(0, 0, { G: 0, D: 0 }, 0))).toEqual([
      `0-2->${ids[0]}`,
      `2-4->${ids[1]}`,
      `4->${ids[1]}`,
      `5->${ids[2]}`,
      `6-8->${ids[2]}`,
    ]);
    expect(s.submit(ids[1], "0.0.4", result(4), 1).verdict.ok).toBe(true);
    const actions = s.lose(ids[1], "stream closed", 2);
    // Each leaf goes to the worker with the fewest missing shards (ties: earliest joined):
    // both to a, which then owns the node 2-4 in full and sends its sum.
    expect(assigns(actions)).toEqual([`2-4->${ids[0]}`]);
    expect(actions).toContainEqual({
      type: "taskReassigned",
      taskId: "0.0.2-4",
      from: ids[1],
      to: ids[0],
    });
    expect(s.ownership().get(ids[0])).toEqual([0, 1, 2, 3]);
    expect(s.submit(ids[0], "0.0.2-4", result(2), 3).verdict.ok).toBe(true);
  });

  it("expires a lease without heartbeats", () => {
    const { s, ids } = cluster(["a", "b"], 2);
    s.startPhase(0, 0, { G: 0, D: 0 }, 0);
    s.heartbeat(ids[0], 1500);
    const actions = s.tick(2500);
    expect(
      actions
        .filter((a) => a.type === "workerLost")
        .map((a) => a.type === "workerLost" && a.workerId),
    ).toEqual([ids[1]]);
    expect(assigns(actions)).toEqual([`1->${ids[0]}`]);
  });

  it("rejects unknown tasks, other workers' tasks and duplicates", () => {
    const { s, ids } = cluster(["a", "b"], 2);
    s.startPhase(0, 0, { G: 0, D: 0 }, 0);
    expect(s.submit(ids[0], "9.9.9", result(0), 0).verdict.ok).toBe(false);
    expect(s.submit(ids[0], "0.0.1", result(0), 0).verdict).toEqual({
      ok: false,
      reason: `task 0.0.1 is not assigned to ${ids[0]}`,
    });
    expect(s.submit(ids[0], "0.0.0", result(0), 0).verdict.ok).toBe(true);
    expect(s.submit(ids[0], "0.0.0", result(0), 0).verdict.ok).toBe(false);
  });

  it("gives a newcomer shards at the next phase boundary, and waiting tasks at once", () => {
    const s = new Scheduler(2, 2000);
    expect(s.startPhase(0, 0, { G: 0, D: 0 }, 0)).toEqual([]);
    const a = s.join("a", 0).workerId;
    // The only worker gets both waiting leaves, which make up the root: one task.
    expect(assigns(s.connect(a, 0))).toEqual([`0-2->${a}`]);
    const b = s.join("b", 0).workerId;
    expect(assigns(s.connect(b, 0))).toEqual([]);
    expect(s.submit(a, "0.0.0-2", result(0), 0).verdict.ok).toBe(true);
    expect(assigns(s.startPhase(0, 1, { G: 0, D: 1 }, 0))).toEqual([`0->${a}`, `1->${b}`]);
  });

  it("a worker re-joining under its name replaces its old session", () => {
    const { s, ids } = cluster(["a", "b"], 2);
    s.startPhase(0, 0, { G: 0, D: 0 }, 0);
    const { workerId, actions } = s.join("a", 1);
    expect(workerId).not.toBe(ids[0]);
    expect(actions.some((x) => x.type === "workerLost" && x.workerId === ids[0])).toBe(true);
    expect(assigns(actions)).toEqual([`0->${ids[1]}`]);
  });

  it("a name is held against another process only while its holder's lease runs, never against its own", () => {
    const s = new Scheduler(2, 2000);
    const { workerId } = s.join("a", 0, "process-1");
    s.connect(workerId, 0);
    // The same process re-joining (its old stream still open after a blip) is not refused.
    expect(s.nameHolder("a", "process-1", 1000)).toBeNull();
    // Another process is, while the holder's lease runs (heartbeats extend it); the answer
    // says how long that lease has left (the refused worker waits it out once).
    expect(s.nameHolder("a", "process-2", 1000)).toEqual({
      workerId,
      instance: "process-1",
      leaseLeftMs: 1000,
    });
    s.heartbeat(workerId, 1500);
    expect(s.nameHolder("a", "process-2", 3500)).toEqual({
      workerId,
      instance: "process-1",
      leaseLeftMs: 0,
    });
    // Once the lease has run out (the holder froze or vanished), the name is free.
    expect(s.nameHolder("a", "process-2", 3501)).toBeNull();
    // Other names, and workers that send no instance (from before instance ids), are not held.
    expect(s.nameHolder("b", "process-2", 1000)).toBeNull();
    expect(s.nameHolder("a", "", 1000)).toBeNull();
    const old = new Scheduler(2, 2000);
    old.join("a", 0);
    expect(old.nameHolder("a", "process-2", 1000)).toBeNull();
    // A holder that is gone (its stream ended) holds nothing.
    s.lose(workerId, "stream ended", 1600);
    expect(s.nameHolder("a", "process-2", 1700)).toBeNull();
  });
});

describe("scheduler evaluation phases", () => {
  const sums = (v: number): FeatureSums => ({
    dim: 1,
    n: 1,
    sum: Float64Array.from([v]),
    outer: Float64Array.from([v * v]),
  });

  it("spreads an evaluation's chunks over the workers, re-issues a lost worker's chunks, and completes in chunk order", () => {
    const { s, ids } = cluster(["a", "b", "c"], 6);
    // 3 chunks (not the 6 shards): one each, as evaluation tasks `step.eval.chunk`.
    const started = s.startPhase(4, 0, { G: 4, D: 4 }, 0, {
      kind: "eval",
      evaluation: { width: 3 },
    });
    expect(assigns(started)).toEqual([`0->${ids[0]}`, `1->${ids[1]}`, `2->${ids[2]}`]);
    expect(
      started.every(
        (a) => a.type !== "assign" || (a.task.evaluation && /^4\.eval\./.test(a.task.taskId)),
      ),
    ).toBe(true);
    expect(s.submit(ids[2], "4.eval.2", sums(2), 1).verdict.ok).toBe(true);
    // b dies mid-chunk: its chunk goes to the least-loaded live worker (c, done with its own),
    // as a training microtask would.
    const lost = s.lose(ids[1], "stream closed", 2);
    expect(assigns(lost)).toEqual([`1->${ids[2]}`]);
    expect(s.submit(ids[0], "4.eval.0", sums(0), 3).verdict.ok).toBe(true);
    const { actions } = s.submit(ids[2], "4.eval.1", sums(1), 4);
    const done = actions.find((a) => a.type === "evaluationComplete");
    expect(
      done?.type === "evaluationComplete" && done.parts.map((p) => [p.lo, p.result.sum[0]]),
    ).toEqual([
      [0, 0],
      [1, 1],
      [2, 2],
    ]);
    expect(actions.some((a) => a.type === "phaseComplete")).toBe(false);
    // The next training phase has the K shards again.
    expect(assigns(s.startPhase(4, 0, { G: 4, D: 4 }, 5))).toEqual([
      `0-3->${ids[0]}`,
      `3-6->${ids[2]}`,
    ]);
  });
});

describe("scheduler stragglers", () => {
  it("re-issues a microtask past its deadline to an idle worker; the first result wins", () => {
    const { s, ids } = cluster(["a", "b"], 2);
    s.startPhase(0, 0, { G: 0, D: 0 }, 0, { deadlineMs: 1000 });
    s.heartbeat(ids[0], 900);
    s.heartbeat(ids[1], 900);
    expect(s.submit(ids[1], "0.0.1", result(1), 500).verdict.ok).toBe(true);
    expect(s.tick(900)).toEqual([]); // not late yet
    const actions = s.tick(1100);
    expect(actions).toContainEqual({
      type: "taskReissued",
      taskId: "0.0.0",
      holder: ids[0],
      to: ids[1],
    });
    expect(assigns(actions)).toEqual([`0->${ids[1]}`]);
    const { verdict, actions: after } = s.submit(ids[1], "0.0.0", result(0), 1200);
    expect(verdict.ok).toBe(true);
    expect(after).toContainEqual({
      type: "cancel",
      workerId: ids[0],
      taskId: "0.0.0",
      reason: "result already in",
    });
    expect(after.some((a) => a.type === "phaseComplete")).toBe(true);
    // The straggler's late result is dropped: the phase is over.
    expect(s.submit(ids[0], "0.0.0", result(9), 1300).verdict.ok).toBe(false);
  });

  it("re-issues a late node's missing leaves from its end to idle workers; the node's own sum still counts", () => {
    const { s, ids } = cluster(["a", "b"], 4);
    expect(assigns(s.startPhase(0, 0, { G: 0, D: 0 }, 0, { deadlineMs: 500 }))).toEqual([
      `0-2->${ids[0]}`,
      `2-4->${ids[1]}`,
    ]);
    for (const id of ids) s.heartbeat(id, 1000);
    expect(s.submit(ids[1], "0.0.2-4", result(2), 100).verdict.ok).toBe(true);
    const first = s.tick(1100);
    expect(first).toContainEqual({
      type: "taskReissued",
      taskId: "0.0.1",
      holder: ids[0],
      to: ids[1],
    });
    expect(assigns(first)).toEqual([`1->${ids[1]}`]);
    expect(s.submit(ids[1], "0.0.1", result(1), 1150).verdict.ok).toBe(true);
    expect(assigns(s.tick(1200))).toEqual([`0->${ids[1]}`]);
    // The straggler's node sum arrives first: it replaces leaf 1 and finishes leaf 0's re-issue.
    const { verdict, actions } = s.submit(ids[0], "0.0.0-2", result(0), 1250);
    expect(verdict.ok).toBe(true);
    expect(actions).toContainEqual({
      type: "cancel",
      workerId: ids[1],
      taskId: "0.0.0",
      reason: "result already in",
    });
    const done = actions.find((a) => a.type === "phaseComplete");
    expect(done?.type === "phaseComplete" && done.parts.map((p) => [p.lo, p.hi])).toEqual([
      [0, 2],
      [2, 4],
    ]);
  });
});

describe("scheduler hung members", () => {
  const policy = { firstMs: 1000, minMs: 100, factor: 4, quarantineAfter: 2 };
  /** Two honest workers answer every 10 ms; c heartbeats but never answers. Returns when the phase completed. */
  let firstAssigns: string[] = [];
  function phase(s: Scheduler, ids: string[], step: number, start: number): number {
    const actions = s.startPhase(step, 0, { G: step, D: step }, start, { kind: "D" });
    firstAssigns = assigns(actions);
    const queues = new Map<string, string[]>(ids.map((id) => [id, []]));
    const honest = ids.slice(0, 2);
    const take = (as: Action[]) => {
      for (const a of as) if (a.type === "assign") queues.get(a.workerId)?.push(a.task.taskId);
    };
    take(actions);
    for (let now = start + 10; now < start + 10_000; now += 10) {
      for (const id of ids) s.heartbeat(id, now);
      take(s.tick(now));
      for (const id of honest) {
        const taskId = queues.get(id)!.shift();
        if (!taskId) continue;
        const { actions: after } = s.submit(id, taskId, result(0), now);
        take(after);
        if (after.some((a) => a.type === "phaseComplete")) return now;
      }
    }
    throw new Error("phase did not complete");
  }

  it("quarantines a member that heartbeats but misses its deadlines; the deadline follows compute time, not the stall", () => {
    const s = new Scheduler(6, 60_000, policy);
    const ids = ["a", "b", "c"].map((n) => {
      const { workerId } = s.join(n, 0);
      s.connect(workerId, 0);
      return workerId;
    });
    // Phase 1: no measurement yet, so c's microtasks wait the first deadline (1 s).
    let now = phase(s, ids, 0, 0);
    expect(now).toBeGreaterThan(1000);
    // Phase 2: the deadline is 4 × 10 ms of compute (at least 100 ms), not 4 × the stalled 1 s.
    const start2 = now;
    now = phase(s, ids, 1, now);
    expect(s.deadline).toBe(100);
    expect(now - start2).toBeLessThan(300);
    // c missed twice in a row: quarantined; phase 3 runs without waiting for it.
    const start3 = now;
    now = phase(s, ids, 2, now);
    // c holds only a probe: a duplicate of shard 5, which b's node 3-6 also covers.
    expect(firstAssigns).toEqual([`0-3->${ids[0]}`, `3-6->${ids[1]}`, `5->${ids[2]}`]);
    expect(now - start3).toBeLessThan(100);
    expect(s.deadline).toBe(100);
  });

  it("emits workerQuarantined once and lets the member back when its probe result is in time", () => {
    const s = new Scheduler(2, 60_000, { ...policy, quarantineAfter: 1 });
    const ids = ["a", "b"].map((n) => {
      const { workerId } = s.join(n, 0);
      s.connect(workerId, 0);
      return workerId;
    });
    s.startPhase(0, 0, { G: 0, D: 0 }, 0, { kind: "D" });
    s.submit(ids[0], "0.0.0", result(0), 10);
    for (const id of ids) s.heartbeat(id, 1001);
    const late = s.tick(1001);
    expect(late.filter((a) => a.type === "workerQuarantined").map((a) => a.workerId)).toEqual([
      ids[1],
    ]);
    expect(assigns(late)).toEqual([`1->${ids[0]}`]);
    s.submit(ids[0], "0.0.1", result(1), 1011);
    // Next phase: b only holds a probe of the last shard, which a's node 0-2 also covers.
    expect(assigns(s.startPhase(1, 0, { G: 1, D: 1 }, 2000, { kind: "D" }))).toEqual([
      `0-2->${ids[0]}`,
      `1->${ids[1]}`,
    ]);
    const { verdict, actions } = s.submit(ids[1], "1.0.1", result(1), 2005);
    expect(verdict.ok).toBe(true);
    expect(actions).toContainEqual({ type: "workerReinstated", workerId: ids[1] });
    expect(assigns(s.startPhase(2, 0, { G: 2, D: 2 }, 3000, { kind: "D" }))).toEqual([
      `0->${ids[0]}`,
      `1->${ids[1]}`,
    ]);
  });
});
