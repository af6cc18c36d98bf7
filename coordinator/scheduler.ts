// The coordinator's scheduler as a pure state machine: membership with leases,
// the K microtasks of the current phase, shard ownership, reassignment, and
// results collected by reduction-tree node (shared/tree.ts). It takes events
// with the time they happened and returns actions; it does no I/O and reads no
// clock, so tests drive it exactly.
//
// A task is a tree node: its holder computes the node's shards and sends their
// tree sum. Each live worker owns a contiguous range of shards and gets the
// fewest nodes that cover it. Reassignment and straggler re-issue work per
// leaf (one shard); any result for a node makes every task under it finished.
import type { MicrotaskResult } from "../shared/microtask.js";
import { ownedRange, type TreePart, treeCover } from "../shared/tree.js";

export interface TaskRef {
  /** `step.phase.shard` for a leaf, `step.phase.lo-hi` for an inner node. */
  taskId: string;
  step: number;
  phase: number;
  /** The task is the tree node [shard, shardEnd); a leaf has shardEnd = shard + 1. */
  shard: number;
  shardEnd: number;
  versions: { G: number; D: number };
}

export type Action =
  | { type: "assign"; workerId: string; task: TaskRef }
  | { type: "cancel"; workerId: string; taskId: string; reason: string }
  | { type: "workerLost"; workerId: string; reason: string }
  | { type: "taskReassigned"; taskId: string; from: string; to: string }
  /** A straggler: the microtask passed its deadline and also went to an idle worker; first result wins. */
  | { type: "taskReissued"; taskId: string; holder: string; to: string }
  /** Every shard is covered: `parts` are disjoint tree nodes that tile the K shards, in shard order. */
  | { type: "phaseComplete"; step: number; phase: number; parts: TreePart[] };

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
  issuedAt: number;
}

export type SubmitVerdict = { ok: true } | { ok: false; reason: string };

export class Scheduler {
  private readonly members = new Map<string, Member>();
  private nextSeq = 0;
  private tasks: TaskState[] = [];
  /** Node values received this phase, by `lo:hi`; none nested in another. */
  private readonly parts = new Map<string, TreePart>();
  /** Whether shard k's value is in (alone or inside a received node). */
  private covered: boolean[] = [];
  private current: { step: number; phase: number; versions: { G: number; D: number } } | null =
    null;
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
    // Its unfinished tasks break up into their missing leaves, handed out per leaf.
    const orphans: number[] = [];
    for (const t of [...this.tasks]) {
      if (!t.holders.delete(workerId) || this.finished(t) || t.holders.size > 0) continue;
      for (let k = t.ref.shard; k < t.ref.shardEnd; k++) if (!this.covered[k]) orphans.push(k);
      if (t.ref.shardEnd - t.ref.shard > 1) this.tasks.splice(this.tasks.indexOf(t), 1);
    }
    const leaves = orphans
      .sort((a, b) => a - b)
      .filter((k) => !this.heldElsewhere(k, null))
      .map((k) => this.leafTask(k, now))
      .filter((t) => t.holders.size === 0);
    // Leaves nobody can take stay orphans until a worker connects.
    actions.push(...this.handOut(leaves, now, workerId));
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
    // A late task's missing leaves go, one per idle worker, to the idle workers, taken from the
    // node's end (its holder works from the start).
    for (const t of [...this.tasks]) {
      if (this.finished(t) || t.holders.size !== 1 || now - t.issuedAt <= this.deadlineMs) continue;
      const [holder] = t.holders;
      for (const idle of this.liveMembers()) {
        if (t.holders.has(idle.id) || this.load(idle.id) > 0) continue;
        let k = t.ref.shardEnd - 1;
        while (k >= t.ref.shard && (this.covered[k] || this.heldElsewhere(k, t))) k--;
        if (k < t.ref.shard) break;
        const leaf = t.ref.shardEnd - t.ref.shard === 1 ? t : this.leafTask(k, now);
        if (leaf !== t) leaf.issuedAt = now;
        leaf.holders.add(idle.id);
        actions.push({ type: "taskReissued", taskId: leaf.ref.taskId, holder, to: idle.id });
        actions.push({ type: "assign", workerId: idle.id, task: leaf.ref });
        if (leaf === t) break;
      }
    }
    return actions;
  }

  /**
   * Starts phase (step, phase): live worker i of W (join order) owns the
   * contiguous shards [⌊iK/W⌋, ⌊(i+1)K/W⌋) and gets one task per tree node
   * of their cover. With no live worker the K leaves wait as orphans. A task
   * still unfinished `deadlineMs` after it was issued has its missing leaves
   * re-issued to idle workers (stragglers); the first result wins.
   */
  startPhase(
    step: number,
    phase: number,
    versions: { G: number; D: number },
    now: number,
    deadlineMs = Number.POSITIVE_INFINITY,
  ): Action[] {
    this.current = { step, phase, versions: { ...versions } };
    this.deadlineMs = deadlineMs;
    this.tasks = [];
    this.parts.clear();
    this.covered = new Array<boolean>(this.shards).fill(false);
    const live = this.liveMembers();
    const actions: Action[] = [];
    if (live.length === 0) {
      for (let k = 0; k < this.shards; k++) this.leafTask(k, now);
      return actions;
    }
    live.forEach((m, i) => {
      const range = ownedRange(i, live.length, this.shards);
      for (const node of treeCover(range.lo, range.hi, this.shards)) {
        const t = this.newTask(node.lo, node.hi, now);
        t.holders.add(m.id);
        actions.push({ type: "assign", workerId: m.id, task: t.ref });
      }
    });
    return actions;
  }

  /**
   * Validates and records a task's result: the value of its tree node. The
   * first valid result for a shard wins; a result for a node already covered
   * is dropped, one for a node above values already in replaces them (the
   * values are the same bits either way).
   */
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
    if (this.finished(t))
      return { verdict: { ok: false, reason: `duplicate result for ${taskId}` }, actions: [] };
    const { shard: lo, shardEnd: hi } = t.ref;
    const open = this.tasks.filter((x) => !this.finished(x));
    for (const [key, p] of this.parts) if (lo <= p.lo && p.hi <= hi) this.parts.delete(key);
    this.parts.set(`${lo}:${hi}`, { lo, hi, result });
    for (let k = lo; k < hi; k++) this.covered[k] = true;
    const actions: Action[] = [];
    for (const x of open) {
      if (!this.finished(x)) continue;
      for (const other of x.holders) {
        if (other !== workerId)
          actions.push({
            type: "cancel",
            workerId: other,
            taskId: x.ref.taskId,
            reason: "result already in",
          });
      }
    }
    if (this.covered.every(Boolean) && this.current) {
      const parts = [...this.parts.values()].sort((a, b) => a.lo - b.lo);
      actions.push({
        type: "phaseComplete",
        step: this.current.step,
        phase: this.current.phase,
        parts,
      });
      this.tasks = [];
      this.parts.clear();
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
    return t !== undefined && !this.finished(t) && t.holders.has(workerId);
  }

  isMember(workerId: string): boolean {
    return this.members.has(workerId);
  }

  /** Shards each live worker owns in the current phase (for status displays). */
  ownership(): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const m of this.liveMembers()) out.set(m.id, []);
    for (const t of this.tasks) {
      for (const h of t.holders) {
        for (let k = t.ref.shard; k < t.ref.shardEnd; k++) out.get(h)?.push(k);
      }
    }
    for (const shards of out.values()) shards.sort((a, b) => a - b);
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
    const orphans = this.tasks.filter((t) => !this.finished(t) && t.holders.size === 0);
    return this.handOut(
      orphans.sort((a, b) => a.ref.shard - b.ref.shard),
      now,
    );
  }

  /**
   * Gives unheld leaf tasks (in shard order), one at a time, to the
   * least-loaded live worker; then the leaves one worker got that make up whole
   * tree nodes become one task per node, so it sends their sum. `from`: the
   * lost worker they come from, for taskReassigned actions.
   */
  private handOut(leaves: TaskState[], now: number, from?: string): Action[] {
    const given = new Map<string, TaskState[]>();
    for (const t of leaves) {
      const to = this.leastLoaded();
      if (!to) break;
      t.holders.add(to);
      t.issuedAt = now;
      given.set(to, [...(given.get(to) ?? []), t]);
    }
    const actions: Action[] = [];
    for (const [to, mine] of given) {
      for (let i = 0; i < mine.length; ) {
        let j = i + 1;
        while (j < mine.length && mine[j].ref.shard === mine[j - 1].ref.shard + 1) j++;
        for (const node of treeCover(mine[i].ref.shard, mine[j - 1].ref.shard + 1, this.shards)) {
          let task = mine[i + node.lo - mine[i].ref.shard];
          if (node.hi - node.lo > 1) {
            const inside = (x: TaskState) => node.lo <= x.ref.shard && x.ref.shardEnd <= node.hi;
            this.tasks = this.tasks.filter((x) => !(mine.includes(x) && inside(x)));
            task = this.newTask(node.lo, node.hi, now);
            task.holders.add(to);
          }
          if (from) actions.push({ type: "taskReassigned", taskId: task.ref.taskId, from, to });
          actions.push({ type: "assign", workerId: to, task: task.ref });
        }
        i = j;
      }
    }
    return actions;
  }

  /** The live worker holding the fewest missing shards (ties: earliest joined). */
  private leastLoaded(): string | undefined {
    let best: { id: string; load: number } | undefined;
    for (const m of this.liveMembers()) {
      const load = this.load(m.id);
      if (!best || load < best.load) best = { id: m.id, load };
    }
    return best?.id;
  }

  /** Missing shards in the unfinished tasks `workerId` holds. */
  private load(workerId: string): number {
    let n = 0;
    for (const t of this.tasks) {
      if (!t.holders.has(workerId)) continue;
      for (let k = t.ref.shard; k < t.ref.shardEnd; k++) if (!this.covered[k]) n++;
    }
    return n;
  }

  /** Every shard of the task's node is in. */
  private finished(t: TaskState): boolean {
    for (let k = t.ref.shard; k < t.ref.shardEnd; k++) if (!this.covered[k]) return false;
    return true;
  }

  /** Some task other than `except` that someone holds covers shard k. */
  private heldElsewhere(k: number, except: TaskState | null): boolean {
    return this.tasks.some(
      (x) => x !== except && x.holders.size > 0 && x.ref.shard <= k && k < x.ref.shardEnd,
    );
  }

  /** The leaf task of shard k in this phase, made when first needed. */
  private leafTask(k: number, now: number): TaskState {
    return (
      this.tasks.find((x) => x.ref.shard === k && x.ref.shardEnd === k + 1) ??
      this.newTask(k, k + 1, now)
    );
  }

  private newTask(lo: number, hi: number, now: number): TaskState {
    const { step, phase, versions } = this.current!;
    const id = hi - lo === 1 ? `${step}.${phase}.${lo}` : `${step}.${phase}.${lo}-${hi}`;
    const t: TaskState = {
      ref: { taskId: id, step, phase, shard: lo, shardEnd: hi, versions: { ...versions } },
      holders: new Set<string>(),
      issuedAt: now,
    };
    this.tasks.push(t);
    return t;
  }
}
