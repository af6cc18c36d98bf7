// Phase tracing for `npm run bench -- distributed`: when AGON_TRACE names a
// file, the coordinator and the workers append one JSON line per event of a
// phase's path (task sent, received, computed, uploaded, applied, published)
// with a time in milliseconds that processes on one machine share.
// Off (one branch per call) when AGON_TRACE is unset.
import { appendFileSync } from "node:fs";

const FILE = process.env.AGON_TRACE;
const lines: string[] = [];

/** A traced event: what happened, where, and to which phase it belongs. */
export interface TraceEvent {
  /** e.g. "task.sent", "compute.end" (see bench/distributed.ts for the list). */
  event: string;
  /** "coordinator" or the worker's id. */
  who: string;
  step: number;
  phase: number;
  /** The microtask, when the event concerns one. */
  taskId?: string;
}

/** The fields of a microtask a trace line keeps. */
export function traceIds(task: { step: number; phase: number; taskId: string }): {
  step: number;
  phase: number;
  taskId: string;
} {
  return { step: task.step, phase: task.phase, taskId: task.taskId };
}

/** Whether tracing is on (AGON_TRACE set): callers skip building events otherwise. */
export const tracing = FILE !== undefined && FILE !== "";

/**
 * Records `e` at the current time: ms on the system's monotonic clock
 * (process.hrtime, CLOCK_MONOTONIC), which every process on the machine
 * shares (performance.timeOrigin may differ between processes by
 * milliseconds). Lines are
 * buffered and appended to AGON_TRACE every 200 events and at exit.
 */
export function trace(e: TraceEvent): void {
  if (!tracing) return;
  lines.push(JSON.stringify({ t: Number(process.hrtime.bigint()) / 1e6, ...e }));
  if (lines.length >= 200) flush();
}

function flush(): void {
  if (lines.length === 0 || !FILE) return;
  appendFileSync(FILE, `${lines.join("\n")}\n`);
  lines.length = 0;
}

if (tracing) process.on("exit", flush);
