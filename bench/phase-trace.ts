// Reads an AGON_TRACE file (shared/trace.ts) of a distributed run and splits
// each phase's wall time along its critical path: the worker whose gradient
// arrived last. The segments add up to the phase's wall time.
import { readFileSync } from "node:fs";
import { median } from "./stats.js";

interface Line {
  t: number;
  event: string;
  who: string;
  step: number;
  phase: number;
  taskId?: string;
}

/** The critical path's segments, in order (ms each). */
export const SEGMENTS = [
  "schedule", // phase.start → the critical task sent
  "push", // task sent → received by the worker
  "params", // received → compute starts (weights from NATS or FetchParams, queue)
  "compute", // the worker's compute of its node (all its shards, thread hops included)
  "upload", // computed → the coordinator accepted the gradient (encode, send, verify)
  "aggregate", // accepted → the phase applies (the scheduler completes the tree)
  "update", // tree sum, mean, optimizer, state (applyPhase)
  "publish", // encode + sha256 + NATS publish of the new weights
  "record", // metrics line, TensorBoard, health, samples/checkpoints when due
  "next", // recorded → the next phase starts
] as const;

export type Segment = (typeof SEGMENTS)[number];

export interface PhaseBreakdown {
  /** Phases measured (steady state, with a complete trace). */
  phases: number;
  /** Median of each segment over the phases (ms). */
  segments: Record<Segment, number>;
  /** Median phase wall time, phase.start to the next phase.start (ms). */
  wallMs: number;
  /** Median of the slowest worker's compute per phase (ms). */
  computeMs: number;
  /** Median of (wall − slowest compute) per phase (ms): the phase overhead. */
  overheadMs: number;
}

/**
 * The breakdown of the phases in `file` from step `fromStep` on (earlier
 * steps are warm-up). Throws when no phase has a complete trace.
 */
export function phaseBreakdown(file: string, fromStep: number): PhaseBreakdown {
  const lines = readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Line);
  const byPhase = new Map<string, Line[]>();
  for (const l of lines) {
    const key = `${l.step}.${l.phase}`;
    const list = byPhase.get(key);
    if (list) list.push(l);
    else byPhase.set(key, [l]);
  }
  const starts = lines
    .filter((l) => l.event === "phase.start")
    .sort((a, b) => a.t - b.t)
    .map((l) => ({ key: `${l.step}.${l.phase}`, t: l.t, step: l.step }));
  const rows: Array<{ seg: Record<Segment, number>; wall: number; compute: number }> = [];
  for (let i = 0; i + 1 < starts.length; i++) {
    const { key, t: start, step } = starts[i];
    if (step < fromStep) continue;
    const ev = byPhase.get(key) ?? [];
    const one = (event: string) => ev.find((l) => l.event === event)?.t;
    const uploads = ev.filter((l) => l.event === "upload.end").sort((a, b) => a.t - b.t);
    const last = uploads.at(-1);
    if (!last?.taskId) continue;
    const ofTask = (event: string) =>
      ev.find((l) => l.event === event && l.taskId === last.taskId && l.who === last.who)?.t;
    const sent = ofTask("task.sent");
    const recv = ofTask("task.recv");
    const cStart = ofTask("compute.start");
    const cEnd = ofTask("compute.end");
    const complete = one("phase.complete");
    const updated = one("update.done");
    const published = one("publish.done");
    const recorded = one("record.done");
    const next = starts[i + 1].t;
    const points = [sent, recv, cStart, cEnd, last.t, complete, updated, published, recorded];
    if (points.some((p) => p === undefined)) continue;
    const p = points as number[];
    const seg: Record<Segment, number> = {
      schedule: p[0] - start,
      push: p[1] - p[0],
      params: p[2] - p[1],
      compute: p[3] - p[2],
      upload: p[4] - p[3],
      aggregate: p[5] - p[4],
      update: p[6] - p[5],
      publish: p[7] - p[6],
      record: p[8] - p[7],
      next: next - p[8],
    };
    // The slowest worker's compute: per worker, the sum of its tasks' compute this phase.
    const perWorker = new Map<string, number>();
    for (const s of ev.filter((l) => l.event === "compute.start")) {
      const end = ev.find(
        (l) => l.event === "compute.end" && l.taskId === s.taskId && l.who === s.who,
      );
      if (end) perWorker.set(s.who, (perWorker.get(s.who) ?? 0) + end.t - s.t);
    }
    rows.push({ seg, wall: next - start, compute: Math.max(0, ...perWorker.values()) });
  }
  if (rows.length === 0) throw new Error(`no complete phase in ${file}`);
  const segments = Object.fromEntries(
    SEGMENTS.map((s) => [s, median(rows.map((r) => r.seg[s]))]),
  ) as Record<Segment, number>;
  return {
    phases: rows.length,
    segments,
    wallMs: median(rows.map((r) => r.wall)),
    computeMs: median(rows.map((r) => r.compute)),
    overheadMs: median(rows.map((r) => r.wall - r.compute)),
  };
}
