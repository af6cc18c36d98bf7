// The coordinator's scheduler as a pure state machine: membership with leases,
// the K microtasks of the current phase, shard ownership, reassignment,
// deadlines and quarantine, and results collected by reduction-tree node
// (shared/tree.ts). It takes events with the time they happened and returns
// actions; it does no I/O and reads no clock, so tests drive it exactly.
//
// A task is a tree node: its holder computes the node's shards and sends their
// tree sum. Each live worker owns a contiguous range of shards and gets the
// fewest nodes that cover it. Reassignment and straggler re-issue work per
// leaf (one shard); any result for a node makes every task under it finished.
//
// An evaluation phase (eval.every) runs through the same machinery, with the
// evaluation's chunks in place of the shards and feature statistics in place
// of gradients, so lost and late workers are handled alike.
import type { FeatureSums } from "../shared/fid.js";
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
  /** An evaluation microtask: shard..shardEnd are evaluation chunks, the result is feature statistics. */
  evaluation?: true;
}

/** What a task's holder sends: a microtask result, or an evaluation's feature statistics. */
export type PhaseResult = MicrotaskResult | FeatureSums;

export type Action =
  | { type: "assign"; workerId: string; task: TaskRef }
  | { type: "cancel"; workerId: string; taskId: string; reason: string }
  | { type: "workerLost"; workerId: string; reason: string }
  | { type: "taskReassigned"; taskId: string; from: string; to: string }
  /** A straggler: the microtask passed its deadline and also went to an idle worker; first result wins. */
  | { type: "taskReissued"; taskId: string; holder: string; to: string }
  /** The worker missed its deadline in `quarantineAfter` phases in a row: no new microtasks, its own go elsewhere. */
  | { type: "workerQuarantined"; workerId: string; reason: string }
  /** A quarantined worker returned a result in time: it gets microtasks again. */
  | { type: "workerReinstated"; workerId: string }
  /** Every shard is covered: `parts` are disjoint tree nodes that tile the K shards, in shard order. */
  | { type: "phaseComplete"; step: number; phase: number; parts: TreePart[] }
  /** Every chunk of an evaluation phase is covered: `parts` tile its chunks, in chunk order. */
  | { type: "evaluationComplete"; step: number; parts: TreePart<FeatureSums>[] };

interface Member {
  id: string;
  name: string;
  /** The worker process's instance id from its Join ("" from a worker that sends none). */
  instance: string;
  /** Connected with an open Work stream: can take tasks. */
  live: boolean;
  leaseUntil: number;
  /** Join order, for a stable ownership layout. */
  seq: number;
  /** When it last delivered a valid result (-Infinity before its first). */
  lastResultAt: number;
  /** Consecutive phases in which it missed a deadline. */
  misses: number;
  missedThisPhase: boolean;
  /** Heartbeats but misses deadlines: gets only duplicate (probe) microtasks until one is in time. */
  quarantined: boolean;
  /** Answered an evaluation microtask with EvaluationFailed: gets no evaluation microtasks. */
  cannotEvaluate: boolean;
}

interface TaskState {
  ref: TaskRef;
  /** Workers that currently hold this task (more than one after a re-issue or a probe), with when each got it. */
  holders: Map<string, number>;
}

/** How the scheduler sets microtask deadlines and treats members that miss them. */
export interface DeadlinePolicy {
  /** Deadline before any microtask of a phase kind has been measured (compile, warm-up). Default 30 s. */
  firstMs: number;
  /** Never shorter than this. Default 2 s. */
  minMs: number;
  /** Deadline = factor × the measured compute time of one microtask of the kind. Default 4. */
  factor: number;
  /** Quarantine a member after this many consecutive phases with a missed deadline. Default 2. */
  quarantineAfter: number;
}

export const DEFAULT_DEADLINES: DeadlinePolicy = {
  firstMs: 30_000,
  minMs: 2000,
  factor: 4,
  quarantineAfter: 2,
};

export type SubmitVerdict = { ok: true } | { ok: false; reason: string };

export class Scheduler {
  private readonly members = new Map<string, Member>();
  private nextSeq = 0;
  private tasks: TaskState[] = [];
  /** Node values received this phase, by `lo:hi`; none nested in another. */
  private readonly parts = new Map<string, TreePart<PhaseResult>>();
  /** Whether shard k's value is in (alone or inside a received node). */
  private covered: boolean[] = [];
  private current: {
    step: number;
    phase: number;
    kind: string;
    versions: { G: number; D: number };
    evaluation: boolean;
  } | null = null;
  /** Shards of the current phase: K, or an evaluation phase's chunk count. */
  private width: number;
  /** Deadline per shard of a task: a task of n shards has n times as long. */
  private deadlineMs = Number.POSITIVE_INFINITY;
  /**
   * Per phase kind: the lower median of the last phase's per-shard service
   * times (ms from a worker's previous result, or from the task's issue, to
   * this result, over the task's shards). A stalled task never yields a
   * sample, so a hung member cannot stretch the deadline.
   */
  private readonly computeMs = new Map<string, number>();
  private samples: number[] = [];
  private readonly policy: DeadlinePolicy;

  constructor(
    private readonly shards: number,
    readonly leaseMs: number,
    policy: Partial<DeadlinePolicy> = {},
  ) {
    this.policy = { ...DEFAULT_DEADLINES, ...policy };
    this.width = shards;
  }

  /**
   * The member that holds `name` for another worker process, if a Join of `name` from process
   * `instance` must be refused: its instance differs, and its lease still runs. A Join from the
   * holder's own process (a re-join after a blip) is not refused, nor one where either side
   * sent no instance (a worker from before instance ids), nor one after the lease ran out.
   */
  nameHolder(
    name: string,
    instance: string,
    now: number,
  ): { workerId: string; instance: string; leaseLeftMs: number } | null {
    for (const m of this.members.values()) {
      if (m.name !== name || m.instance === "" || instance === "") continue;
      if (m.instance !== instance && now <= m.leaseUntil)
        return { workerId: m.id, instance: m.instance, leaseLeftMs: m.leaseUntil - now };
    }
    return null;
  }

  /**
   * A worker joined (or re-joined by name). Returns its id; any old session of that name is
   * dropped. Ask nameHolder first: this replaces whoever holds the name.
   */
  join(name: string, now: number, instance = ""): { workerId: string; actions: Action[] } {
    const actions: Action[] = [];
    for (const m of this.members.values()) {
      if (m.name === name) actions.push(...this.lose(m.id, "re-joined under the same name", now));
    }
    const workerId = `${name}#${this.nextSeq}`;
    this.members.set(workerId, {
      id: workerId,
      name,
      instance,
      live: false,
      leaseUntil: now + this.leaseMs,
      seq: this.nextSeq++,
      lastResultAt: Number.NEGATIVE_INFINITY,
      misses: 0,
      missedThisPhase: false,
      quarantined: false,
      cannotEvaluate: false,
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
    for (const t of [...this.tasks]) t.holders.delete(workerId);
    actions.push(...this.rehome(workerId, now));
    return actions;
  }

  /** Expires leases, re-issues stragglers and quarantines members late phase after phase; call periodically. */
  tick(now: number): Action[] {
    const actions: Action[] = [];
    for (const m of [...this.members.values()]) {
      if (now > m.leaseUntil) {
        actions.push(
          ...this.lose(m.id, `lease expired (${this.leaseMs} ms without a heartbeat)`, now),
        );
      }
    }
    // A late task's missing shards go, one per idle worker, to the idle workers, taken from the
    // node's end (its holder works from the start).
    for (const t of [...this.tasks]) {
      if (this.finished(t)) continue;
      const active = this.activeHolders(t);
      if (active.length !== 1) continue;
      const holder = this.members.get(active[0])!;
      if (now - this.progressSince(t, holder) <= this.deadlineMs * this.size(t)) continue;
      if (!holder.missedThisPhase) {
        holder.missedThisPhase = true;
        holder.misses++;
        const others = this.liveMembers().some((x) => x.id !== holder.id && !x.quarantined);
        if (holder.misses >= this.policy.quarantineAfter && others) {
          actions.push(...this.quarantine(holder, now));
          continue;
        }
      }
      for (const idle of this.liveMembers()) {
        if (idle.quarantined || t.holders.has(idle.id) || this.load(idle.id) > 0) continue;
        let k = t.ref.shardEnd - 1;
        while (k >= t.ref.shard && (this.covered[k] || this.heldElsewhere(k, t))) k--;
        if (k < t.ref.shard) break;
        const leaf = this.size(t) === 1 ? t : this.leafTask(k);
        leaf.holders.set(idle.id, now);
        actions.push({
          type: "taskReissued",
          taskId: leaf.ref.taskId,
          holder: holder.id,
          to: idle.id,
        });
        actions.push({ type: "assign", workerId: idle.id, task: leaf.ref });
        if (leaf === t) break;
      }
    }
    return actions;
  }

  /**
   * Starts phase (step, phase) of `kind` (e.g. "D", "G"): live, not
   * quarantined worker i of W (join order) owns the contiguous shards
   * [⌊iK/W⌋, ⌊(i+1)K/W⌋) and gets one task per tree node of their cover; each
   * quarantined member gets a duplicate of one leaf as a probe. With no live
   * worker the K leaves wait as orphans. A worker that holds an unfinished
   * task and has delivered nothing for the deadline (the kind's measured
   * per-shard compute time × factor × the task's shards, see DeadlinePolicy,
   * or `deadlineMs` per shard when given) is late: the task's missing shards
   * are re-issued to idle workers (first result wins), and a member late in
   * `quarantineAfter` phases in a row is quarantined. With `evaluation` the
   * phase is an evaluation over `width` chunks (in place of the K shards).
   */
  startPhase(
    step: number,
    phase: number,
    versions: { G: number; D: number },
    now: number,
    opts: { kind?: string; deadlineMs?: number; evaluation?: { width: number } } = {},
  ): Action[] {
    const kind = opts.kind ?? "";
    const evaluation = opts.evaluation !== undefined;
    this.current = { step, phase, kind, versions: { ...versions }, evaluation };
    this.width = opts.evaluation?.width ?? this.shards;
    const measured = this.computeMs.get(kind);
    this.deadlineMs =
      opts.deadlineMs ??
      (measured === undefined
        ? this.policy.firstMs
        : Math.max(this.policy.minMs, this.policy.factor * measured));
    this.samples = [];
    for (const m of this.members.values()) m.missedThisPhase = false;
    this.tasks = [];
    this.parts.clear();
    this.covered = new Array<boolean>(this.width).fill(false);
    const all = this.liveMembers();
    const healthy = all.filter((m) => !m.quarantined);
    // Better a slow member than none.
    const owners = healthy.length > 0 ? healthy : all;
    const actions: Action[] = [];
    if (owners.length === 0) {
      for (let k = 0; k < this.width; k++) this.leafTask(k);
      return actions;
    }
    owners.forEach((m, i) => {
      const range = ownedRange(i, owners.length, this.width);
      for (const node of treeCover(range.lo, range.hi, this.width)) {
        const t = this.newTask(node.lo, node.hi);
        t.holders.set(m.id, now);
        actions.push({ type: "assign", workerId: m.id, task: t.ref });
      }
    });
    // Probes: the last leaves (last in their owners' queues), so a probe that is in time can win.
    if (owners === healthy) {
      all
        .filter((m) => m.quarantined)
        .forEach((m, i) => {
          const t = this.leafTask(this.width - 1 - (i % this.width));
          t.holders.set(m.id, now);
          actions.push({ type: "assign", workerId: m.id, task: t.ref });
        });
    }
    return actions;
  }

  /** The per-shard deadline (ms) of the current phase; for status displays and tests. */
  get deadline(): number {
    return this.deadlineMs;
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
    result: PhaseResult,
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
    const inTime =
      t?.holders.has(workerId) === true &&
      now - this.progressSince(t, m) <= this.deadlineMs * this.size(t);
    const actions: Action[] = [];
    if (inTime) {
      m.misses = 0;
      if (m.quarantined) {
        m.quarantined = false;
        actions.push({ type: "workerReinstated", workerId });
      }
    }
    if (!t)
      return {
        verdict: { ok: false, reason: `task ${taskId} is not part of the current phase` },
        actions,
      };
    if (!t.holders.has(workerId)) {
      return {
        verdict: { ok: false, reason: `task ${taskId} is not assigned to ${workerId}` },
        actions,
      };
    }
    if (this.finished(t))
      return { verdict: { ok: false, reason: `duplicate result for ${taskId}` }, actions };
    if (m.live) this.samples.push((now - this.progressSince(t, m)) / this.size(t));
    m.lastResultAt = now;
    const { shard: lo, shardEnd: hi } = t.ref;
    const open = this.tasks.filter((x) => !this.finished(x));
    for (const [key, p] of this.parts) if (lo <= p.lo && p.hi <= hi) this.parts.delete(key);
    this.parts.set(`${lo}:${hi}`, { lo, hi, result });
    for (let k = lo; k < hi; k++) this.covered[k] = true;
    for (const x of open) {
      if (!this.finished(x)) continue;
      for (const other of x.holders.keys()) {
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
      if (this.samples.length > 0) this.computeMs.set(this.current.kind, lowerMedian(this.samples));
      const parts = [...this.parts.values()].sort((a, b) => a.lo - b.lo);
      const { step, phase } = this.current;
      // The service checked each result's kind against its task's.
      if (this.current.evaluation)
        actions.push({ type: "evaluationComplete", step, parts: parts as TreePart<FeatureSums>[] });
      else actions.push({ type: "phaseComplete", step, phase, parts: parts as TreePart[] });
      this.tasks = [];
      this.parts.clear();
      this.current = null;
    }
    return { verdict: { ok: true }, actions };
  }

  /**
   * Gives up the current phase when it is an evaluation (a worker cannot evaluate): every
   * holder of an unfinished task is told to cancel it, and results for it are refused
   * from now on. Returns [] when no evaluation phase is under way.
   */
  abandonEvaluation(reason: string): Action[] {
    if (!this.current?.evaluation) return [];
    const actions: Action[] = [];
    for (const t of this.tasks) {
      if (this.finished(t)) continue;
      for (const workerId of t.holders.keys())
        actions.push({ type: "cancel", workerId, taskId: t.ref.taskId, reason });
    }
    this.tasks = [];
    this.parts.clear();
    this.current = null;
    return actions;
  }

  /** What a task a worker submits for looks like, for validating versions before decoding. */
  task(taskId: string): TaskRef | undefined {
    return this.tasks.find((x) => x.ref.taskId === taskId)?.ref;
  }

  /** Whether `workerId` holds the unfinished task `taskId` of the current phase. */
  holds(workerId: string, taskId: string): boolean {
    const t = this.tasks.find((x) => x.ref.taskId === taskId);
    return t !== undefined && !this.finished(t) && t.holders.has(workerId);
  }

  isMember(workerId: string): boolean {
    return this.members.has(workerId);
  }

  /** Shards each live worker holds in the current phase (for status displays). */
  ownership(): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const m of this.liveMembers()) out.set(m.id, []);
    for (const t of this.tasks) {
      for (const h of t.holders.keys()) {
        for (let k = t.ref.shard; k < t.ref.shardEnd; k++) out.get(h)?.push(k);
      }
    }
    for (const shards of out.values()) shards.sort((a, b) => a - b);
    return out;
  }

  liveCount(): number {
    return [...this.members.values()].filter((m) => m.live).length;
  }

  memberName(workerId: string): string | undefined {
    return this.members.get(workerId)?.name;
  }

  /** Live members that can take the current phase's microtasks (in an evaluation: those that can evaluate), in join order. */
  private liveMembers(): Member[] {
    const evaluation = this.current?.evaluation === true;
    return [...this.members.values()]
      .filter((m) => m.live && !(evaluation && m.cannotEvaluate))
      .sort((a, b) => a.seq - b.seq);
  }

  /** Whether some live member can evaluate (none answered EvaluationFailed). */
  canEvaluate(): boolean {
    return [...this.members.values()].some((m) => m.live && !m.cannotEvaluate);
  }

  /**
   * `workerId` answered an evaluation microtask with EvaluationFailed: it gets no
   * evaluation microtasks from now on (its training microtasks go on), the evaluation
   * microtasks it holds are cancelled and their missing chunks handed to the members that
   * can evaluate. Returns null when none is left (the caller gives the evaluation up), [] outside an evaluation.
   */
  cannotEvaluate(workerId: string, now: number, reason: string): Action[] | null {
    const m = this.members.get(workerId);
    if (m) m.cannotEvaluate = true;
    if (!this.current?.evaluation) return [];
    if (!this.canEvaluate()) return null;
    const actions: Action[] = [];
    for (const t of this.tasks) {
      if (!t.holders.has(workerId)) continue;
      t.holders.delete(workerId);
      if (!this.finished(t))
        actions.push({ type: "cancel", workerId, taskId: t.ref.taskId, reason });
    }
    actions.push(...this.rehome(workerId, now));
    return actions;
  }

  private assignOrphans(now: number): Action[] {
    const orphans = this.tasks.filter(
      (t) => !this.finished(t) && this.activeHolders(t).length === 0 && this.size(t) === 1,
    );
    return this.handOut(
      orphans.sort((a, b) => a.ref.shard - b.ref.shard),
      now,
    );
  }

  /**
   * The unfinished tasks with no active holder left (after `from` was lost or
   * quarantined) break up into their missing shards, handed out per leaf.
   */
  private rehome(from: string, now: number): Action[] {
    const orphans: number[] = [];
    for (const t of [...this.tasks]) {
      if (this.finished(t) || this.activeHolders(t).length > 0) continue;
      for (let k = t.ref.shard; k < t.ref.shardEnd; k++) if (!this.covered[k]) orphans.push(k);
      if (this.size(t) > 1 && t.holders.size === 0) this.tasks.splice(this.tasks.indexOf(t), 1);
    }
    const leaves = [...new Set(orphans)]
      .sort((a, b) => a - b)
      .filter((k) => !this.heldElsewhere(k, null))
      .map((k) => this.leafTask(k))
      .filter((t) => this.activeHolders(t).length === 0);
    // Leaves nobody can take stay orphans until a worker connects.
    return this.handOut(leaves, now, from);
  }

  /**
   * Gives leaf tasks without an active holder (in shard order), one at a
   * time, to the least-loaded worker; then the leaves one worker got that
   * make up whole tree nodes become one task per node, so it sends their sum.
   * `from`: the worker they come from, for taskReassigned actions.
   */
  private handOut(leaves: TaskState[], now: number, from?: string): Action[] {
    const given = new Map<string, TaskState[]>();
    for (const t of leaves) {
      const to = this.leastLoaded();
      if (!to) break;
      t.holders.set(to, now);
      given.set(to, [...(given.get(to) ?? []), t]);
    }
    const actions: Action[] = [];
    for (const [to, mine] of given) {
      for (let i = 0; i < mine.length; ) {
        let j = i + 1;
        while (j < mine.length && mine[j].ref.shard === mine[j - 1].ref.shard + 1) j++;
        for (const node of treeCover(mine[i].ref.shard, mine[j - 1].ref.shard + 1, this.width)) {
          let task = mine[i + node.lo - mine[i].ref.shard];
          if (node.hi - node.lo > 1) {
            const inside = (x: TaskState) =>
              node.lo <= x.ref.shard && x.ref.shardEnd <= node.hi && x.holders.size === 1;
            this.tasks = this.tasks.filter((x) => !(mine.includes(x) && inside(x)));
            task = this.newTask(node.lo, node.hi);
            task.holders.set(to, now);
          }
          if (from) actions.push({ type: "taskReassigned", taskId: task.ref.taskId, from, to });
          actions.push({ type: "assign", workerId: to, task: task.ref });
        }
        i = j;
      }
    }
    return actions;
  }

  /** Holders of `t` that are not quarantined (a quarantined one holds it only as a probe). */
  private activeHolders(t: TaskState): string[] {
    return [...t.holders.keys()].filter((id) => !this.members.get(id)?.quarantined);
  }

  /** Since when `m` owes progress on `t`: its last result, or when it got `t` if later. */
  private progressSince(t: TaskState, m: Member): number {
    return Math.max(t.holders.get(m.id) ?? Number.POSITIVE_INFINITY, m.lastResultAt);
  }

  /** Quarantines `m` and moves the unfinished shards only it holds to the least loaded healthy workers. */
  private quarantine(m: Member, now: number): Action[] {
    m.quarantined = true;
    const actions: Action[] = [
      {
        type: "workerQuarantined",
        workerId: m.id,
        reason: `missed the microtask deadline (${Math.round(this.deadlineMs)} ms) in ${m.misses} phases in a row while heartbeating`,
      },
    ];
    actions.push(...this.rehome(m.id, now));
    return actions;
  }

  /** The live, not quarantined worker holding the fewest missing shards (ties: earliest joined); any live one if all are quarantined. */
  private leastLoaded(): string | undefined {
    let best: { id: string; load: number } | undefined;
    const live = this.liveMembers();
    const healthy = live.filter((m) => !m.quarantined);
    for (const m of healthy.length > 0 ? healthy : live) {
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

  /** Shards in the task's node. */
  private size(t: TaskState): number {
    return t.ref.shardEnd - t.ref.shard;
  }

  /** Every shard of the task's node is in. */
  private finished(t: TaskState): boolean {
    for (let k = t.ref.shard; k < t.ref.shardEnd; k++) if (!this.covered[k]) return false;
    return true;
  }

  /** Some task other than `except` with an active holder covers shard k. */
  private heldElsewhere(k: number, except: TaskState | null): boolean {
    return this.tasks.some(
      (x) =>
        x !== except && this.activeHolders(x).length > 0 && x.ref.shard <= k && k < x.ref.shardEnd,
    );
  }

  /** The leaf task of shard k in this phase, made when first needed. */
  private leafTask(k: number): TaskState {
    return (
      this.tasks.find((x) => x.ref.shard === k && x.ref.shardEnd === k + 1) ??
      this.newTask(k, k + 1)
    );
  }

  private newTask(lo: number, hi: number): TaskState {
    const { step, phase, versions, evaluation } = this.current!;
    // An evaluation's tasks are `step.eval.chunk(s)`.
    const at = evaluation ? `${step}.eval` : `${step}.${phase}`;
    const id = hi - lo === 1 ? `${at}.${lo}` : `${at}.${lo}-${hi}`;
    const ref: TaskRef = {
      taskId: id,
      step,
      phase,
      shard: lo,
      shardEnd: hi,
      versions: { ...versions },
    };
    if (evaluation) ref.evaluation = true;
    const t: TaskState = { ref, holders: new Map<string, number>() };
    this.tasks.push(t);
    return t;
  }
}

/** The lower median: with as many slow samples as fast ones, the fast side wins. */
function lowerMedian(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}
