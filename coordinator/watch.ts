// `agon watch`: follows a run from anywhere that reaches its NATS server. It
// subscribes to agon.<run>.metrics and agon.<run>.events and either prints
// every message as one JSON line (--json, for piping) or keeps a live view
// redrawn in place on a terminal (plain lines when stdout is not a TTY). It
// exits 0 by itself once it sees the run's last step done (unless --follow),
// and on Ctrl-C.
//
// Rendering is pure: `reduceWatch` folds messages into a WatchState and
// `renderWatch` turns a state into text, so both are unit-testable.
import { RUN_ID_PATTERN } from "../shared/config.js";
import type { MetricsMessage } from "../shared/metrics.js";
import { connectNats, type NatsConnection, NatsError, subjects } from "../shared/nats.js";
import { formatDuration } from "../shared/progress.js";
import type { NatsAuthFiles } from "../shared/security.js";

/** `agon watch` failed; the message is the one line shown to the user. */
export class WatchError extends Error {
  override name = "WatchError";
}

/** A metrics message (schema 1, docs/ARCHITECTURE.md "Metrics"); NaN arrives as null. */
export type WatchMetrics = MetricsMessage;

/** An event message (schema 1, docs/ARCHITECTURE.md "Events"). */
export interface WatchEvent {
  schema?: number;
  time?: string;
  type: string;
  message: string;
  [key: string]: unknown;
}

export interface WatchState {
  run: string;
  nats: string;
  /** Total steps of the run (from the metrics), null before the first message. */
  steps: number | null;
  /** Steps completed: the last step seen done + 1. */
  stepsDone: number;
  /** The last phase seen. */
  last: { step: number; phase: number; kind: "D" | "G" } | null;
  /** D loss and D(x) come from D phases; G loss and D(G(z)) from the latest phase. */
  dLoss: number | null;
  gLoss: number | null;
  dReal: number | null;
  dFake: number | null;
  workers: number | null;
  /** Recent D losses (one per D phase) and G losses (one per G phase), oldest first. */
  dHistory: Array<number | null>;
  gHistory: Array<number | null>;
  /** The last few events, oldest first. */
  events: Array<{ time: string; type: string; message: string }>;
  /** For the rate and ETA: the first step-done seen, and the latest, with local times (ms). */
  firstDone: { stepsDone: number; at: number } | null;
  lastDone: { stepsDone: number; at: number } | null;
  messages: number;
  done: boolean;
}

export const HISTORY = 60;
export const EVENTS_SHOWN = 5;

export function initialWatchState(run: string, nats: string): WatchState {
  return {
    run,
    nats,
    steps: null,
    stepsDone: 0,
    last: null,
    dLoss: null,
    gLoss: null,
    dReal: null,
    dFake: null,
    workers: null,
    dHistory: [],
    gHistory: [],
    events: [],
    firstDone: null,
    lastDone: null,
    messages: 0,
    done: false,
  };
}

const num = (v: unknown): number | null => (typeof v === "number" ? v : null);

function push<T>(list: T[], value: T, keep: number): void {
  list.push(value);
  if (list.length > keep) list.splice(0, list.length - keep);
}

/** True for the metrics message that completes the run's last step. */
export function isLastStep(m: Pick<WatchMetrics, "step" | "steps" | "stepDone">): boolean {
  return m.stepDone === true && m.step + 1 >= m.steps;
}

/**
 * Folds one message into the state (mutates and returns it). `kind` says which
 * subject it came on; `at` is the local receive time in ms.
 */
export function reduceWatch(
  state: WatchState,
  kind: "metrics" | "events",
  data: unknown,
  at: number,
): WatchState {
  state.messages += 1;
  if (data === null || typeof data !== "object") return state;
  if (kind === "events") {
    const e = data as WatchEvent;
    push(
      state.events,
      {
        time: typeof e.time === "string" ? e.time : new Date(at).toISOString(),
        type: String(e.type ?? "event"),
        message: String(e.message ?? ""),
      },
      EVENTS_SHOWN,
    );
    return state;
  }
  const m = data as WatchMetrics;
  if (typeof m.step !== "number" || (m.kind !== "D" && m.kind !== "G")) return state;
  if (typeof m.steps === "number") state.steps = m.steps;
  state.last = { step: m.step, phase: m.phase, kind: m.kind };
  if (m.kind === "D") {
    state.dLoss = num(m.dLoss);
    state.dReal = num(m.dReal);
    push(state.dHistory, num(m.dLoss), HISTORY);
  } else {
    push(state.gHistory, num(m.gLoss), HISTORY);
  }
  state.gLoss = num(m.gLoss);
  state.dFake = num(m.dFake);
  if (typeof m.workers === "number") state.workers = m.workers;
  if (m.stepDone) {
    state.stepsDone = m.step + 1;
    const mark = { stepsDone: state.stepsDone, at };
    state.firstDone ??= mark;
    state.lastDone = mark;
  }
  // A phase after the "last" step means the run was extended: not done any more.
  state.done = isLastStep(m);
  return state;
}

const BARS = "▁▂▃▄▅▆▇█";

/** A sparkline of the values, scaled to their own min..max; gaps (null, NaN) are spaces. */
export function sparkline(values: ReadonlyArray<number | null>): string {
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (finite.length === 0) return " ".repeat(values.length);
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  return values
    .map((v) => {
      if (v === null || !Number.isFinite(v)) return " ";
      if (hi === lo) return BARS[3];
      return BARS[Math.min(BARS.length - 1, Math.floor(((v - lo) / (hi - lo)) * BARS.length))];
    })
    .join("");
}

/** Steps per second over the steps this watcher saw done. */
export function watchRate(state: WatchState): number | null {
  const a = state.firstDone;
  const b = state.lastDone;
  if (!a || !b || b.at <= a.at || b.stepsDone <= a.stepsDone) return null;
  return ((b.stepsDone - a.stepsDone) / (b.at - a.at)) * 1000;
}

const fmt = (v: number | null, digits = 3): string => (v === null ? "-" : v.toFixed(digits));

function bar(fraction: number, width: number): string {
  const f = Math.max(0, Math.min(1, fraction));
  const filled = Math.round(f * width);
  return `${"█".repeat(filled)}${"░".repeat(width - filled)}`;
}

function etaText(state: WatchState): { rate: string; eta: string } {
  const rate = watchRate(state);
  if (state.done) return { rate: rate === null ? "-" : rate.toFixed(2), eta: "done" };
  if (rate === null || state.steps === null) return { rate: "-", eta: "--" };
  return {
    rate: rate.toFixed(2),
    eta: formatDuration((state.steps - state.stepsDone) / rate),
  };
}

/** The one-line status (plain mode, and the summary a pipe gets every few seconds). */
export function statusLine(state: WatchState): string {
  const total = state.steps ?? 0;
  const pct = total > 0 ? (state.stepsDone / total) * 100 : 0;
  const { rate, eta } = etaText(state);
  return (
    `step ${state.stepsDone}/${state.steps ?? "?"} ${pct.toFixed(0)}%` +
    ` | D ${fmt(state.dLoss)} G ${fmt(state.gLoss)}` +
    ` | D(x) ${fmt(state.dReal)} D(G(z)) ${fmt(state.dFake)}` +
    ` | workers ${state.workers ?? "-"} | ${rate} steps/s | ETA ${eta}`
  );
}

function clock(time: string): string {
  const m = /T(\d\d:\d\d:\d\d)/.exec(time);
  return m ? m[1] : time;
}

/** The live view: a pure function of the state. Lines are cut to `columns` when given. */
export function renderWatch(state: WatchState, opts: { columns?: number } = {}): string {
  const total = state.steps;
  const fraction = total ? state.stepsDone / total : 0;
  const { rate, eta } = etaText(state);
  const where = state.last
    ? `  (last: step ${state.last.step} phase ${state.last.phase} ${state.last.kind})`
    : "";
  const lines = [
    `agon watch  run ${state.run}  ${state.nats}${state.done ? "  — run complete" : ""}`,
    total === null
      ? "waiting for metrics…"
      : `step ${state.stepsDone}/${total} ${bar(fraction, 30)} ${(fraction * 100).toFixed(0)}%  ${rate} steps/s  ETA ${eta}`,
    `D loss ${fmt(state.dLoss)}  G loss ${fmt(state.gLoss)}  D(x) ${fmt(state.dReal)}  D(G(z)) ${fmt(state.dFake)}  workers ${state.workers ?? "-"}${where}`,
    `D ${sparkline(state.dHistory)}`,
    `G ${sparkline(state.gHistory)}`,
    `events (last ${EVENTS_SHOWN}):`,
    ...Array.from({ length: EVENTS_SHOWN }, (_, i) => {
      const e = state.events[i];
      return e ? `  ${clock(e.time)} ${e.type}: ${e.message}` : "";
    }),
  ];
  const cols = opts.columns;
  const cut = (line: string) => {
    if (!cols || cols < 2) return line;
    const chars = Array.from(line);
    return chars.length > cols - 1 ? `${chars.slice(0, cols - 2).join("")}…` : line;
  };
  return `${lines.map(cut).join("\n")}\n`;
}

// ---------------------------------------------------------------------------
// Running it.

/** Where output goes: process.stdout, or anything with write() in tests. */
export interface WatchOutput {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface WatchOptions {
  /** NATS credentials and TLS files. */
  natsAuth?: NatsAuthFiles;
  /** Run id (names the subjects). Default "agon". */
  run?: string;
  /** NATS URL(s), comma-separated or a list. Default $NATS_URL or nats://127.0.0.1:4222. */
  nats?: string | string[];
  /** Print each message as one JSON line `{"subject": …, "data": …}`. */
  json?: boolean;
  /** Keep watching after the last step is done (the run may be extended). */
  follow?: boolean;
  /** Stops the watch (Ctrl-C): the promise resolves with reason "stopped". */
  signal?: AbortSignal;
  /** Redraw in place; default out.isTTY. */
  tty?: boolean;
  /** Minimum time between redraws on a terminal. Default 100 ms. */
  redrawMs?: number;
  /** Status line interval when not a terminal. Default 5000 ms. */
  plainEveryMs?: number;
  /** After the last step, how long to keep reading (for the final checkpoint event). Default 500 ms. */
  doneGraceMs?: number;
  /** Log lines (NATS reconnects): default to stderr. */
  log?: (line: string) => void;
  now?: () => number;
}

export interface WatchResult {
  reason: "done" | "stopped";
  state: WatchState;
}

export interface WatchHandle {
  /** Resolves when the watch ends (run complete, or stopped). */
  readonly done: Promise<WatchResult>;
  stop(): void;
}

export function defaultNatsUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.NATS_URL || "nats://127.0.0.1:4222";
}

export function parseNatsList(value: string | string[]): string[] {
  const urls = (Array.isArray(value) ? value : value.split(","))
    .map((u) => u.trim())
    .filter((u) => u !== "");
  for (const u of urls) {
    if (!/^(nats|tls|ws|wss):\/\/[^\s]+$/.test(u) && !/^[A-Za-z0-9.-]+:\d+$/.test(u)) {
      throw new WatchError(`--nats: "${u}" is not a NATS URL (nats://host:port)`);
    }
  }
  if (urls.length === 0) throw new WatchError("--nats: give at least one URL");
  return urls;
}

/**
 * Connects and subscribes; resolves once subscribed (so nothing published
 * after that is missed). `done` resolves when the watch ends.
 */
export async function startWatch(opts: WatchOptions, out: WatchOutput): Promise<WatchHandle> {
  const run = opts.run ?? "agon";
  if (!RUN_ID_PATTERN.test(run)) {
    throw new WatchError(`--run: "${run}" is not a run id (1-64 letters, digits, '-' or '_')`);
  }
  const servers = parseNatsList(opts.nats ?? defaultNatsUrl());
  const now = opts.now ?? (() => performance.now());
  const tty = opts.tty ?? Boolean(out.isTTY);
  const redrawMs = opts.redrawMs ?? 100;
  const plainEveryMs = opts.plainEveryMs ?? 5000;
  const graceMs = opts.doneGraceMs ?? 500;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const subs = subjects(run);
  const state = initialWatchState(run, servers.join(","));

  let nc: NatsConnection;
  try {
    nc = await connectNats(servers, `agon-watch-${run}`, log, opts.natsAuth);
  } catch (e) {
    // A run started without NATS (`agon local` on a machine without nats-server,
    // `--no-nats`) has nothing here to follow: say where its progress is instead.
    if (e instanceof NatsError) {
      throw new NatsError(
        `${e.message} (a run started without NATS is followed on its coordinator's dashboard, the "dashboard: http://…" line it printed at start)`,
      );
    }
    throw e;
  }

  let drawnLines = 0;
  let lastDraw = Number.NEGATIVE_INFINITY;
  let drawTimer: NodeJS.Timeout | undefined;
  let lastPlain = Number.NEGATIVE_INFINITY;
  const draw = () => {
    drawTimer = undefined;
    lastDraw = now();
    const frame = renderWatch(state, { columns: out.columns });
    // Back to the top of the previous frame, clear it, write the new one.
    const up = drawnLines > 0 ? `\r\x1b[${drawnLines}A\x1b[J` : "";
    out.write(`${up}${frame}`);
    drawnLines = frame.split("\n").length - 1;
  };
  const scheduleDraw = (force = false) => {
    if (force) {
      if (drawTimer) clearTimeout(drawTimer);
      draw();
      return;
    }
    if (drawTimer) return;
    const wait = Math.max(0, redrawMs - (now() - lastDraw));
    if (wait === 0) draw();
    else drawTimer = setTimeout(draw, wait);
  };

  let finish!: (reason: WatchResult["reason"]) => void;
  let graceTimer: NodeJS.Timeout | undefined;
  const done = new Promise<WatchResult>((resolve) => {
    let ended = false;
    finish = (reason) => {
      if (ended) return;
      ended = true;
      if (quietTimer) clearTimeout(quietTimer);
      if (graceTimer) clearTimeout(graceTimer);
      if (drawTimer) clearTimeout(drawTimer);
      if (!opts.json) {
        // Stopped before anything arrived: say so, not an empty status line.
        if (!heard) out.write(`stopped: nothing arrived from run ${run}\n`);
        else if (tty) draw();
        else out.write(`${statusLine(state)}\n`);
      }
      void nc
        .close()
        .catch(() => {})
        .then(() => resolve({ reason, state }));
    };
  });

  // Until the first message: say (on the log, not the view) what it waits for, after
  // 3 s and then every ~10 s.
  let heard = false;
  let quietTimer: NodeJS.Timeout | undefined;
  const sayWaiting = (afterMs: number, since: number) => {
    quietTimer = setTimeout(() => {
      if (heard) return;
      log(
        `watch: no run named ${run} is active on this NATS (${state.nats}); waiting (${Math.round((now() - since) / 1000)} s)`,
      );
      sayWaiting(10_000, since);
    }, afterMs);
    quietTimer.unref?.();
  };
  const onMessage = (kind: "metrics" | "events", subject: string, text: string) => {
    heard = true;
    if (quietTimer) clearTimeout(quietTimer);
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      data = text; // not JSON: passed through as a string, not shown in the view
    }
    reduceWatch(state, kind, data, now());
    if (opts.json) {
      out.write(`${JSON.stringify({ subject, data })}\n`);
    } else if (tty) {
      scheduleDraw();
    } else if (kind === "events" && typeof data === "object" && data !== null) {
      const e = state.events.at(-1)!;
      out.write(`${clock(e.time)} ${e.type}: ${e.message}\n`);
    } else if (now() - lastPlain >= plainEveryMs) {
      lastPlain = now();
      out.write(`${statusLine(state)}\n`);
    }
    if (state.done && !opts.follow && !graceTimer) {
      graceTimer = setTimeout(() => finish("done"), graceMs);
    }
  };

  for (const [kind, subject] of [
    ["metrics", subs.metrics],
    ["events", subs.events],
  ] as const) {
    nc.subscribe(subject, {
      callback: (err, msg) => {
        if (!err) onMessage(kind, msg.subject, msg.string());
      },
    });
  }
  await nc.flush();
  if (!heard) sayWaiting(3_000, now());
  if (!opts.json) {
    if (tty) scheduleDraw(true);
    else out.write(`watching run ${run} on ${state.nats}\n`);
  }

  const stop = () => finish("stopped");
  if (opts.signal) {
    if (opts.signal.aborted) stop();
    else opts.signal.addEventListener("abort", stop, { once: true });
  }
  return { done, stop };
}

/** Watches until the run's last step is done (or `signal` aborts). */
export async function runWatch(opts: WatchOptions, out: WatchOutput): Promise<WatchResult> {
  return (await startWatch(opts, out)).done;
}
