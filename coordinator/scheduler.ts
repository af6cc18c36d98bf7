// The coordinator's scheduler as a pure state machine: membership with leases,
// the K microtasks of the current phase, shard ownership, reassignment, and
// results collected by shard. It takes events with the time they happened and
// returns actions; it does no I/O and reads no clock, so tests drive it exactly.
import type { MicrotaskResult } from "../shared/microtask.js";

export interface TaskRef {
  taskId: string;
  step: number;
  phase: number;
  shard: number;
  versions: { G: number; D: number };
}

export type Action =
  | { type: "assign"; workerId: string; task: TaskRef }
  | { type: "cancel"; workerId: string; taskId: string; reason: string }
  | { type: "workerLost"; workerId: string; reason: string }
  | { type: "taskReassigned"; taskId: string; from: string; to: string }
  /** A straggler: the microtask passed its deadline and also went to an idle worker; first result wins. */
  | { type: "taskReissued"; taskId: string; holder: string; to: string }
  /** All K results are in; `results[k]` is shard k's. */
  | { type: "phaseComplete"; step: number; phase: number; results: MicrotaskResult[] };

interface Member {
  id: string;
  name: string;
  /** Connected with an open Work stream: can take tasks. */
  live: boolean;
  leaseUntil: number;
  /** Join order, for a stable ownership layout. */
  seq: number;
}

interface TaskState {
  ref: TaskRef;
  /** Workers that currently hold this task (more than one after a re-issue). */
  holders: Set<string>;
  result: MicrotaskResult | null;
  issuedAt: number;
}

export type SubmitVerdict = { ok: true } | { ok: false; reason: string };

export class Scheduler {
  private readonly members = new Map<string, Member>();
  private nextSeq = 0;
  private tasks: TaskState[] = [];
  private current: { step: number; phase: number } | null = null;
  private deadlineMs = Number.POSITIVE_INFINITY;

  constructor(
    private readonly shards: number,
    readonly leaseMs: number,
  ) {}

  /** A worker joined (or re-joined by name). Returns its id; any old session of that name is dropped. */
  join(name: string, now: number): { workerId: string; actions: Action[] } {
    const actions: Action[] = [];
    for (const m of this.members.values()) {
      if (m.name === name) actions.push(...this.lose(m.id, "re-joined under the same name", now));
    }
    const workerId = `${name}#${this.nextSeq}`;
    this.members.set(workerId, {
      id: workerId,
      name,
      live: false,
      leaseUntil: now + this.leaseMs,
      seq: this.nextSeq++,
    });
    return { workerId, actions };
  }

  /** The worker's Work stream is open: it can take tasks now. */
  connect(workerId: string, now: number): Action[] {
    const m = this.members.get(workerId);
    if (!m) return [];
    m.live = true;
    m.leaseUntil = now + this.leaseMs;
    // A newcomer gets shards at the next phase boundary, unless tasks are waiting with nobody to run them.
    return this.assignOrphans(now);
  }

  heartbeat(workerId: string, now: number): void {
    const m = this.members.get(workerId);
    if (m) m.leaseUntil = now + this.leaseMs;
  }

  /** Stream ended, worker left, or evicted: its unfinished tasks go to live workers. */
  lose(workerId: string, reason: string, now = 0): Action[] {
    const m = this.members.get(workerId);
    if (!m) return [];
    this.members.delete(workerId);
    const actions: Action[] = [{ type: "workerLost", workerId, reason }];
    for (const t of this.tasks) {
      if (t.holders.delete(workerId) && t.result === null && t.holders.size === 0) {
        const to = this.leastLoaded();
        if (to) {
          t.holders.add(to);
          t.issuedAt = now;
          actions.push({ type: "taskReassigned", taskId: t.ref.taskId, from: workerId, to });
          actions.push({ type: "assign", workerId: to, task: t.ref });
        }
      }
    }
    return actions;
  }

  /** Expires leases and re-issues stragglers; call periodically. */
  tick(now: number): Action[] {
    const actions: Action[] = [];
    for (const m of [...this.members.values()]) {
      if (now > m.leaseUntil) {
        actions.push(
          ...this.lose(m.id, `lease expired (${this.leaseMs} ms without a heartbeat)`, now),
        );
      }
    }
    for (const t of this.tasks) {
      if (t.result !== null || t.holders.size !== 1 || now - t.issuedAt <= this.deadlineMs)
        continue;
      const idle = this.liveMembers().find(
        (m) =>
          !t.holders.has(m.id) && !this.tasks.some((x) => x.result === null && x.holders.has(m.id)),
      );
      if (!idle) continue;
      const [holder] = t.holders;
      t.holders.add(idle.id);
      actions.push({ type: "taskReissued", taskId: t.ref.taskId, holder, to: idle.id });
      actions.push({ type: "assign", workerId: idle.id, task: t.ref });
    }
    return actions;
  }

  /**
   * Starts phase (step, phase): K tasks, shard k to owner k mod live-count in
   * join order. A task still unfinished `deadlineMs` after it was issued is
   * also given to an idle worker (stragglers); the first result wins.
   */
  startPhase(
    step: number,
    phase: number,
    versions: { G: number; D: number },
    now: number,
    deadlineMs = Number.POSITIVE_INFINITY,
  ): Action[] {
    this.current = { step, phase };
    this.deadlineMs = deadlineMs;
    const live = this.liveMembers();
    this.tasks = Array.from({ length: this.shards }, (_, shard) => ({
      ref: { taskId: `${step}.${phase}.${shard}`, step, phase, shard, versions: { ...versions } },
      holders: new Set<string>(),
      result: null,
      issuedAt: now,
    }));
    const actions: Action[] = [];
    if (live.length === 0) return actions;
    for (const t of this.tasks) {
      const owner = live[t.ref.shard % live.length].id;
      t.holders.add(owner);
      actions.push({ type: "assign", workerId: owner, task: t.ref });
    }
    return actions;
  }

  /** Validates and records a result. The first valid result for a task wins; later ones are dropped. */
  submit(
    workerId: string,
    taskId: string,
    result: MicrotaskResult,
    now: number,
  ): { verdict: SubmitVerdict; actions: Action[] } {
    const m = this.members.get(workerId);
    if (!m)
      return {
        verdict: { ok: false, reason: `unknown or evicted worker ${workerId}` },
        actions: [],
      };
    m.leaseUntil = now + this.leaseMs;
    const t = this.tasks.find((x) => x.ref.taskId === taskId);
    if (!t)
      return {
        verdict: { ok: false, reason: `task ${taskId} is not part of the current phase` },
        actions: [],
      };
    if (!t.holders.has(workerId)) {
      return {
        verdict: { ok: false, reason: `task ${taskId} is not assigned to ${workerId}` },
        actions: [],
      };
    }
    if (t.result !== null)
      return { verdict: { ok: false, reason: `duplicate result for ${taskId}` }, actions: [] };
    t.result = result;
    const actions: Action[] = [];
    for (const other of t.holders) {
      if (other !== workerId)
        actions.push({ type: "cancel", workerId: other, taskId, reason: "result already in" });
    }
    if (this.tasks.every((x) => x.result !== null) && this.current) {
      const results = this.tasks.map((x) => x.result!);
      actions.push({
        type: "phaseComplete",
        step: this.current.step,
        phase: this.current.phase,
        results,
      });
      this.tasks = [];
      this.current = null;
    }
    return { verdict: { ok: true }, actions };
  }

  /** What a task a worker submits for looks like, for validating versions before decoding. */
  task(taskId: string): TaskRef | undefined {
    return this.tasks.find((x) => x.ref.taskId === taskId)?.ref;
  }

  /** Whether `workerId` holds the unfinished microtask `taskId` of the current phase. */
  holds(workerId: string, taskId: string): boolean {
    const t = this.tasks.find((x) => x.ref.taskId === taskId);
    return t !== undefined && t.result === null && t.holders.has(workerId);
  }

  isMember(workerId: string): boolean {
    return this.members.has(workerId);
  }

  /** Shards each live worker owns in the current phase (for status displays). */
  ownership(): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const m of this.liveMembers()) out.set(m.id, []);
    for (const t of this.tasks) for (const h of t.holders) out.get(h)?.push(t.ref.shard);
    return out;
  }

  liveCount(): number {
    return this.liveMembers().length;
  }

  memberName(workerId: string): string | undefined {
    return this.members.get(workerId)?.name;
  }

  private liveMembers(): Member[] {
    return [...this.members.values()].filter((m) => m.live).sort((a, b) => a.seq - b.seq);
  }

  private assignOrphans(now: number): Action[] {
    const actions: Action[] = [];
    for (const t of this.tasks) {
      if (t.result === null && t.holders.size === 0) {
        const to = this.leastLoaded();
        if (!to) break;
        t.holders.add(to);
        t.issuedAt = now;
        actions.push({ type: "assign", workerId: to, task: t.ref });
      }
    }
    return actions;
  }

  /** The live worker holding the fewest unfinished tasks (ties: earliest joined). */
  private leastLoaded(): string | undefined {
    let best: { id: string; load: number } | undefined;
    for (const m of this.liveMembers()) {
      let load = 0;
      for (const t of this.tasks) if (t.result === null && t.holders.has(m.id)) load++;
      if (!best || load < best.load) best = { id: m.id, load };
    }
    return best?.id;
  }
}
