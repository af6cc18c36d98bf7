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
  /** The worker missed its deadline in `quarantineAfter` phases in a row: no new microtasks, its own go elsewhere. */
  | { type: "workerQuarantined"; workerId: string; reason: string }
  /** A quarantined worker returned a result in time: it gets microtasks again. */
  | { type: "workerReinstated"; workerId: string }
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
  /** When it last delivered a valid result (-Infinity before its first). */
  lastResultAt: number;
  /** Consecutive phases in which it missed a deadline. */
  misses: number;
  missedThisPhase: boolean;
  /** Heartbeats but misses deadlines: gets only duplicate (probe) microtasks until one is in time. */
  quarantined: boolean;
}

interface TaskState {
  ref: TaskRef;
  /** Workers that currently hold this task (more than one after a re-issue or a probe), with when each got it. */
  holders: Map<string, number>;
  result: MicrotaskResult | null;
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
  private current: { step: number; phase: number; kind: string } | null = null;
  private deadlineMs = Number.POSITIVE_INFINITY;
  /**
   * Per phase kind: the lower median of the last phase's per-microtask service
   * times (ms from a worker's previous result, or from the task's issue, to
   * this result). A stalled microtask never yields a sample, so a hung member
   * cannot stretch the deadline; honest workers hold most samples.
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
  }

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
      lastResultAt: Number.NEGATIVE_INFINITY,
      misses: 0,
      missedThisPhase: false,
      quarantined: false,
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
      if (t.holders.delete(workerId) && t.result === null && this.activeHolders(t).length === 0) {
        const to = this.leastLoaded();
        if (to) {
          t.holders.set(to, now);
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
      if (t.result !== null) continue;
      const active = this.activeHolders(t);
      if (active.length !== 1) continue;
      const holder = this.members.get(active[0])!;
      if (now - this.progressSince(t, holder) <= this.deadlineMs) continue;
      if (!holder.missedThisPhase) {
        holder.missedThisPhase = true;
        holder.misses++;
        const others = this.liveMembers().some((x) => x.id !== holder.id && !x.quarantined);
        if (holder.misses >= this.policy.quarantineAfter && others) {
          actions.push(...this.quarantine(holder, now));
          continue;
        }
      }
      const idle = this.liveMembers().find(
        (m) =>
          !t.holders.has(m.id) && !this.tasks.some((x) => x.result === null && x.holders.has(m.id)),
      );
      if (!idle) continue;
      t.holders.set(idle.id, now);
      actions.push({ type: "taskReissued", taskId: t.ref.taskId, holder: holder.id, to: idle.id });
      actions.push({ type: "assign", workerId: idle.id, task: t.ref });
    }
    return actions;
  }

  /**
   * Starts phase (step, phase) of `kind` (e.g. "D", "G"): K tasks, shard k to
   * owner k mod live-count in join order, quarantined members left out; each
   * quarantined member gets a duplicate of one task as a probe. A worker that
   * holds an unfinished task and has delivered nothing for the deadline (the
   * kind's measured compute time × factor, see DeadlinePolicy, or
   * `deadlineMs` when given) is late: that task also goes to an idle worker
   * (first result wins), and a member late in `quarantineAfter` phases in a
   * row is quarantined.
   */
  startPhase(
    step: number,
    phase: number,
    versions: { G: number; D: number },
    now: number,
    opts: { kind?: string; deadlineMs?: number } = {},
  ): Action[] {
    const kind = opts.kind ?? "";
    this.current = { step, phase, kind };
    const measured = this.computeMs.get(kind);
    this.deadlineMs =
      opts.deadlineMs ??
      (measured === undefined
        ? this.policy.firstMs
        : Math.max(this.policy.minMs, this.policy.factor * measured));
    this.samples = [];
    for (const m of this.members.values()) m.missedThisPhase = false;
    const all = this.liveMembers();
    const healthy = all.filter((m) => !m.quarantined);
    // Better a slow member than none.
    const owners = healthy.length > 0 ? healthy : all;
    this.tasks = Array.from({ length: this.shards }, (_, shard) => ({
      ref: { taskId: `${step}.${phase}.${shard}`, step, phase, shard, versions: { ...versions } },
      holders: new Map<string, number>(),
      result: null,
    }));
    const actions: Action[] = [];
    if (owners.length === 0) return actions;
    for (const t of this.tasks) {
      const owner = owners[t.ref.shard % owners.length].id;
      t.holders.set(owner, now);
      actions.push({ type: "assign", workerId: owner, task: t.ref });
    }
    // Probes: the last shards (last in their owners' queues), so a probe that is in time can win.
    if (owners === healthy) {
      all
        .filter((m) => m.quarantined)
        .forEach((m, i) => {
          const t = this.tasks[this.shards - 1 - (i % this.shards)];
          t.holders.set(m.id, now);
          actions.push({ type: "assign", workerId: m.id, task: t.ref });
        });
    }
    return actions;
  }

  /** The deadline (ms) of the current phase; for status displays and tests. */
  get deadline(): number {
    return this.deadlineMs;
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
    const inTime =
      t?.holders.has(workerId) === true && now - this.progressSince(t, m) <= this.deadlineMs;
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
        actions: [],
      };
    if (!t.holders.has(workerId)) {
      return {
        verdict: { ok: false, reason: `task ${taskId} is not assigned to ${workerId}` },
        actions: [],
      };
    }
    if (t.result !== null)
      return { verdict: { ok: false, reason: `duplicate result for ${taskId}` }, actions };
    if (m.live) this.samples.push(now - this.progressSince(t, m));
    m.lastResultAt = now;
    t.result = result;
    for (const other of t.holders.keys()) {
      if (other !== workerId)
        actions.push({ type: "cancel", workerId: other, taskId, reason: "result already in" });
    }
    if (this.tasks.every((x) => x.result !== null) && this.current) {
      const results = this.tasks.map((x) => x.result!);
      if (this.samples.length > 0) this.computeMs.set(this.current.kind, lowerMedian(this.samples));
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
    for (const t of this.tasks) for (const h of t.holders.keys()) out.get(h)?.push(t.ref.shard);
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
      if (t.result === null && this.activeHolders(t).length === 0) {
        const to = this.leastLoaded();
        if (!to) break;
        t.holders.set(to, now);
        actions.push({ type: "assign", workerId: to, task: t.ref });
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

  /** Quarantines `m` and moves the unfinished tasks only it holds to the least loaded healthy workers. */
  private quarantine(m: Member, now: number): Action[] {
    m.quarantined = true;
    const actions: Action[] = [
      {
        type: "workerQuarantined",
        workerId: m.id,
        reason: `missed the microtask deadline (${Math.round(this.deadlineMs)} ms) in ${m.misses} phases in a row while heartbeating`,
      },
    ];
    for (const t of this.tasks) {
      if (t.result !== null || !t.holders.has(m.id) || this.activeHolders(t).length > 0) continue;
      const to = this.leastLoaded();
      if (!to) break;
      t.holders.set(to, now);
      actions.push({ type: "taskReassigned", taskId: t.ref.taskId, from: m.id, to });
      actions.push({ type: "assign", workerId: to, task: t.ref });
    }
    return actions;
  }

  /** The live, not quarantined worker holding the fewest unfinished tasks (ties: earliest joined); any live one if all are quarantined. */
  private leastLoaded(): string | undefined {
    let best: { id: string; load: number } | undefined;
    const live = this.liveMembers();
    const healthy = live.filter((m) => !m.quarantined);
    for (const m of healthy.length > 0 ? healthy : live) {
      let load = 0;
      for (const t of this.tasks) if (t.result === null && t.holders.has(m.id)) load++;
      if (!best || load < best.load) best = { id: m.id, load };
    }
    return best?.id;
  }
}

/** The lower median: with as many slow samples as fast ones, the fast side wins. */
function lowerMedian(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}
