// The coordinator's HTTP face: Prometheus metrics, a health check, the status
// as JSON and a live dashboard. Everything it shows comes from the run's
// subjects (metrics, events, samples): on NATS, so it works the same inside the
// coordinator process or beside it, or, in a run without NATS, straight from
// the coordinator's publisher; only status() is read from the caller.
//
//   GET /                   the dashboard (self-contained: no CDN, no external requests)
//   GET /metrics            Prometheus text format (own registry; every series has a `run` label)
//   GET /healthz            200 {"status":"ok",...status()} when healthy, else 503
//   GET /api/status         {"runId",...status()}
//   GET /events             Server-Sent Events: `hello`, then the recent history
//                           (≤ 2000 metrics, ≤ 50 events, the latest sample), then live
//                           `metrics`, `event` and `sample` messages
//   GET /samples/latest.png the latest sample grid, from memory
import { readFileSync } from "node:fs";
import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { MetricsMessage } from "../shared/metrics.js";
import { type NatsConnection, subjects } from "../shared/nats.js";

export interface WorkerStatus {
  workerId: string;
  workerName: string;
  shards: number[];
}

export interface RunStatus {
  step: number;
  steps: number;
  phase: number;
  workers: WorkerStatus[];
  done: boolean;
  healthy: boolean;
}

export interface HttpOptions {
  /** Interface to bind, e.g. "127.0.0.1" or "0.0.0.0". */
  host: string;
  /** TCP port; 0 picks a free one (see the returned address). */
  port: number;
  runId: string;
  /** The connection to read the run's metrics, events and samples from (not closed by close()). */
  nats?: NatsConnection;
  /** Where to read them from instead when there is no NATS (the coordinator's Publisher). */
  feed?: RunFeed;
  log?: (line: string) => void;
  /** The coordinator's view of the run, read on every /healthz and /api/status request. */
  status: () => RunStatus;
  /** Also export prom-client's default process metrics (`process_*`, `nodejs_*`). Default true. */
  processMetrics?: boolean;
}

/**
 * The run's messages by subject, in process: what a NATS subscription would
 * deliver, for a coordinator that runs without NATS. `onData` gets each
 * message's payload (JSON text as UTF-8, or PNG bytes).
 */
export interface RunFeed {
  subscribe(subject: string, onData: (data: Uint8Array) => void): { unsubscribe(): void };
}

/** A NATS connection seen as a RunFeed. */
function natsFeed(nc: NatsConnection): RunFeed {
  return {
    subscribe: (subject, onData) =>
      nc.subscribe(subject, {
        callback: (err, msg) => {
          if (!err) onData(msg.data);
        },
      }),
  };
}

export interface HttpServerHandle {
  /** `http://host:port` with the port actually bound. */
  address: string;
  /** Ends the SSE streams, unsubscribes from NATS and closes the server. */
  close(): Promise<void>;
}

export const METRICS_HISTORY = 2000;
export const EVENTS_HISTORY = 50;
/** An SSE client this far behind (bytes queued) is dropped; the browser reconnects and replays. */
const MAX_SSE_BACKLOG = 16 * 1024 * 1024;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const DASHBOARD_HTML = readFileSync(new URL("./dashboard.html", import.meta.url), "utf8");

const finite = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** prom-client default metrics that are gauges named `*_total`, which `promtool check metrics` flags. */
const GAUGES_NAMED_LIKE_COUNTERS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

/** The training series, all in one registry of their own. */
class TrainingMetrics {
  readonly registry = new Registry();
  private readonly step: Gauge;
  private readonly stepsTarget: Gauge;
  private readonly dLoss: Gauge;
  private readonly gLoss: Gauge;
  private readonly dReal: Gauge;
  private readonly dFake: Gauge;
  private readonly gradNorm: Gauge<"net">;
  private readonly workers: Gauge;
  private readonly version: Gauge<"net">;
  private readonly phases: Counter<"kind">;
  private readonly bytesIn: Counter;
  private readonly bytesOut: Counter;
  private readonly events: Counter<"type">;
  private readonly phaseSeconds: Histogram;
  private readonly computeSeconds: Histogram;
  private readonly lastUpdate: Gauge;
  private readonly samples: Counter;
  private readonly evalFd: Gauge;
  private readonly evalFid: Gauge;
  private readonly evalStep: Gauge;

  constructor(runId: string, processMetrics: boolean) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ run: runId });
    if (processMetrics) {
      // The standard names, as every Node exporter has them, less three gauges whose
      // `_total` suffix promtool rejects (nodejs_active_handles etc. carry the same by type).
      collectDefaultMetrics({ register: this.registry });
      for (const name of GAUGES_NAMED_LIKE_COUNTERS) this.registry.removeSingleMetric(name);
    }
    const gauge = <L extends string = string>(name: string, help: string, labelNames: L[] = []) =>
      new Gauge<L>({ name, help, labelNames, registers });
    const counter = <L extends string = string>(name: string, help: string, labelNames: L[] = []) =>
      new Counter<L>({ name, help, labelNames, registers });
    this.step = gauge("agon_step", "Training steps completed");
    this.stepsTarget = gauge("agon_steps_target", "Training steps the run is configured for");
    // Spelled out: promtool reads a `_d_` token as the unit "days".
    this.dLoss = gauge("agon_discriminator_loss", "Discriminator loss of the last D phase");
    this.gLoss = gauge("agon_generator_loss", "Generator loss of the last G phase");
    this.dReal = gauge(
      "agon_discriminator_output_real",
      "Mean D(x) on real data in the last D phase",
    );
    this.dFake = gauge(
      "agon_discriminator_output_fake",
      "Mean D(G(z)) on generated data in the last D phase",
    );
    this.gradNorm = gauge("agon_grad_norm", "L2 norm of the last aggregated gradient", ["net"]);
    this.workers = gauge("agon_workers", "Live workers at the end of the last phase");
    this.version = gauge("agon_weights_version", "Optimizer updates applied to a network", ["net"]);
    this.lastUpdate = gauge(
      "agon_last_phase_timestamp_seconds",
      "Unix time of the last metrics message received",
    );
    this.phases = counter("agon_phases_total", "Optimizer phases completed (seen here)", ["kind"]);
    // The coordinator sends running totals: reset() + inc() sets the counter, and a
    // restarted coordinator (totals back at 0) reads as an ordinary counter reset.
    this.bytesIn = counter("agon_bytes_in_total", "Gradient bytes received by the coordinator");
    this.bytesOut = counter("agon_bytes_out_total", "Parameter bytes sent by the coordinator");
    this.events = counter("agon_events_total", "Coordinator events, by type", ["type"]);
    this.samples = counter("agon_sample_grids_total", "Sample grids received");
    this.evalFd = gauge(
      "agon_eval_fd",
      "Fréchet distance of the last evaluation during training (own classifier's features)",
    );
    this.evalFid = gauge(
      "agon_eval_fid",
      "FID (Inception-v3 features) of the last evaluation during training (eval.features inception)",
    );
    this.evalStep = gauge("agon_eval_step", "Step of the last evaluation during training");
    const buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
    this.phaseSeconds = new Histogram({
      name: "agon_phase_seconds",
      help: "Wall time of an optimizer phase, start to all gradients in",
      buckets,
      registers,
    });
    this.computeSeconds = new Histogram({
      name: "agon_phase_compute_seconds",
      help: "The busiest worker's compute time in a phase",
      buckets,
      registers,
    });
  }

  observe(m: MetricsMessage): void {
    const done = m.stepDone ? m.step + 1 : m.step;
    this.step.set(done);
    if (finite(m.steps)) this.stepsTarget.set(m.steps);
    if (m.kind === "D") {
      if (finite(m.dLoss)) this.dLoss.set(m.dLoss);
      if (finite(m.dReal)) this.dReal.set(m.dReal);
      if (finite(m.dFake)) this.dFake.set(m.dFake);
    } else if (finite(m.gLoss)) this.gLoss.set(m.gLoss);
    if (finite(m.gradNorm)) this.gradNorm.set({ net: m.kind }, m.gradNorm);
    if (finite(m.workers)) this.workers.set(m.workers);
    if (m.versions) {
      if (finite(m.versions.G)) this.version.set({ net: "G" }, m.versions.G);
      if (finite(m.versions.D)) this.version.set({ net: "D" }, m.versions.D);
    }
    this.phases.inc({ kind: m.kind });
    setTotal(this.bytesIn, m.bytesIn);
    setTotal(this.bytesOut, m.bytesOut);
    if (finite(m.phaseSeconds) && m.phaseSeconds >= 0) this.phaseSeconds.observe(m.phaseSeconds);
    if (finite(m.computeSeconds) && m.computeSeconds > 0)
      this.computeSeconds.observe(m.computeSeconds);
    this.lastUpdate.set(Date.now() / 1000);
  }

  event(type: string): void {
    this.events.inc({ type });
  }

  /** An `evaluation` event (eval.every): its step and FD, or FID (Inception features). */
  evaluation(step: unknown, fd: unknown, fid: unknown): void {
    if (!finite(step)) return;
    if (finite(fid)) this.evalFid.set(fid);
    else if (finite(fd)) this.evalFd.set(fd);
    else return;
    this.evalStep.set(step);
  }

  sample(): void {
    this.samples.inc();
  }
}

function setTotal(c: Counter, total: unknown): void {
  if (!finite(total) || total < 0) return;
  c.reset();
  if (total > 0) c.inc(total);
}

/** A metrics message with the fields the dashboard and the gauges rely on, or null. */
function parseMetrics(data: Uint8Array): MetricsMessage | null {
  const m = parseJson(data) as Partial<MetricsMessage> | null;
  if (!m || typeof m !== "object") return null;
  if (!Number.isInteger(m.step) || !Number.isInteger(m.phase)) return null;
  if (m.kind !== "D" && m.kind !== "G") return null;
  return m as MetricsMessage;
}

function parseEvent(data: Uint8Array): { type: string } | null {
  const e = parseJson(data) as { type?: unknown } | null;
  if (!e || typeof e !== "object" || typeof e.type !== "string" || !e.type) return null;
  return e as { type: string };
}

function parseJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"));
  } catch {
    return null;
  }
}

function sseFrame(event: string, json: string): string {
  return `event: ${event}\ndata: ${json}\n\n`;
}

/** Starts the HTTP server and its NATS subscriptions; resolves once it listens. */
export async function startHttpServer(opts: HttpOptions): Promise<HttpServerHandle> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const subj = subjects(opts.runId);
  const metrics = new TrainingMetrics(opts.runId, opts.processMetrics ?? true);
  const feed = opts.feed ?? (opts.nats ? natsFeed(opts.nats) : null);
  if (!feed) throw new Error("startHttpServer: give nats or feed");

  // Bounded history, kept as the JSON text sent to SSE clients.
  const metricsHistory: string[] = [];
  const eventsHistory: string[] = [];
  let sample: { png: Buffer; seq: number; step: number | null } | null = null;
  let lastStepDone: number | null = null;
  let badMessages = 0;
  const clients = new Set<ServerResponse>();

  const broadcast = (frame: string) => {
    for (const res of clients) {
      if (res.writableLength > MAX_SSE_BACKLOG) {
        clients.delete(res);
        res.destroy();
        continue;
      }
      res.write(frame);
    }
  };
  const bad = (what: string) => {
    badMessages += 1;
    // One line for the first bad message and then every 100th: enough to notice, never a flood.
    if (badMessages === 1 || badMessages % 100 === 0)
      log(`http: ignored ${badMessages} malformed message(s), the latest on ${what}`);
  };
  const sampleJson = () =>
    sample ? JSON.stringify({ step: sample.step, url: `/samples/latest.png?v=${sample.seq}` }) : "";

  const subs = [
    feed.subscribe(subj.metrics, (data) => {
      const m = parseMetrics(data);
      if (!m) return bad(subj.metrics);
      metrics.observe(m);
      if (m.stepDone) lastStepDone = m.step + 1;
      const json = JSON.stringify(m);
      metricsHistory.push(json);
      if (metricsHistory.length > METRICS_HISTORY)
        metricsHistory.splice(0, metricsHistory.length - METRICS_HISTORY);
      broadcast(sseFrame("metrics", json));
    }),
    feed.subscribe(subj.events, (data) => {
      const e = parseEvent(data);
      if (!e) return bad(subj.events);
      metrics.event(e.type);
      if (e.type === "evaluation") {
        const { step, fd, fid } = e as { step?: unknown; fd?: unknown; fid?: unknown };
        metrics.evaluation(step, fd, fid);
      }
      const json = JSON.stringify(e);
      eventsHistory.push(json);
      if (eventsHistory.length > EVENTS_HISTORY)
        eventsHistory.splice(0, eventsHistory.length - EVENTS_HISTORY);
      broadcast(sseFrame("event", json));
    }),
    feed.subscribe(subj.samples, (data) => {
      const png = Buffer.from(data); // a copy: the client may reuse its buffer
      if (png.length < 8 || !png.subarray(0, 8).equals(PNG_SIGNATURE)) return bad(subj.samples);
      metrics.sample();
      sample = { png, seq: (sample?.seq ?? 0) + 1, step: lastStepDone };
      broadcast(sseFrame("sample", sampleJson()));
    }),
  ];
  // Comments keep idle SSE connections open through proxies.
  const keepalive = setInterval(() => broadcast(": keepalive\n\n"), 15_000);
  keepalive.unref();

  const readStatus = (): { ok: true; status: RunStatus } | { ok: false; error: string } => {
    try {
      return { ok: true, status: opts.status() };
    } catch (err) {
      return { ok: false, error: (err as Error).message ?? String(err) };
    }
  };

  const send = (
    req: IncomingMessage,
    res: ServerResponse,
    code: number,
    body: string | Buffer,
    headers: OutgoingHttpHeaders,
  ) => {
    res.writeHead(code, {
      "content-length": Buffer.byteLength(body),
      "x-content-type-options": "nosniff",
      ...headers,
    });
    res.end(req.method === "HEAD" ? undefined : body);
  };
  const sendJson = (req: IncomingMessage, res: ServerResponse, code: number, value: unknown) =>
    send(req, res, code, `${JSON.stringify(value)}\n`, {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
    });
  const sendText = (req: IncomingMessage, res: ServerResponse, code: number, text: string) =>
    send(req, res, code, `${text}\n`, { "content-type": "text/plain; charset=utf-8" });

  const openEvents = (res: ServerResponse) => {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    res.socket?.setNoDelay(true);
    let frames = `retry: 2000\n\n${sseFrame("hello", JSON.stringify({ runId: opts.runId }))}`;
    for (const json of metricsHistory) frames += sseFrame("metrics", json);
    for (const json of eventsHistory) frames += sseFrame("event", json);
    if (sample) frames += sseFrame("sample", sampleJson());
    res.write(frames);
    clients.add(res);
    res.on("close", () => clients.delete(res));
  };

  const routes: Record<
    string,
    (req: IncomingMessage, res: ServerResponse) => void | Promise<void>
  > = {
    "/": (req, res) =>
      send(req, res, 200, DASHBOARD_HTML, {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
        // The page talks to this server only.
        "content-security-policy":
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      }),
    "/metrics": async (req, res) => {
      const text = await metrics.registry.metrics();
      send(req, res, 200, text, { "content-type": metrics.registry.contentType });
    },
    "/healthz": (req, res) => {
      const s = readStatus();
      if (!s.ok) return sendJson(req, res, 503, { status: "error", error: s.error });
      sendJson(req, res, s.status.healthy ? 200 : 503, {
        status: s.status.healthy ? "ok" : "unhealthy",
        ...s.status,
      });
    },
    "/api/status": (req, res) => {
      const s = readStatus();
      if (!s.ok) return sendJson(req, res, 500, { error: s.error });
      sendJson(req, res, 200, { runId: opts.runId, ...s.status });
    },
    "/events": (req, res) => {
      if (req.method === "HEAD")
        return send(req, res, 200, "", { "content-type": "text/event-stream" });
      openEvents(res);
    },
    // Browsers ask for it; nothing to show, and no 404 in their console.
    "/favicon.ico": (_req, res) => {
      res.writeHead(204, { "cache-control": "max-age=86400" });
      res.end();
    },
    "/samples/latest.png": (req, res) => {
      if (!sample) return sendText(req, res, 404, "no sample grid yet");
      send(req, res, 200, sample.png, {
        "content-type": "image/png",
        "cache-control": "no-store",
      });
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    let path: string;
    try {
      path = new URL(req.url ?? "/", "http://localhost").pathname;
    } catch {
      return sendText(req, res, 400, "bad request");
    }
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (!route) return sendText(req, res, 404, "not found");
    if (req.method !== "GET" && req.method !== "HEAD") {
      return send(req, res, 405, "method not allowed\n", {
        "content-type": "text/plain; charset=utf-8",
        allow: "GET, HEAD",
      });
    }
    await route(req, res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      log(`http: ${req.method} ${req.url}: ${err.message}`);
      if (!res.headersSent) sendText(req, res, 500, "internal error");
      else res.destroy();
    });
  });
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    else socket.destroy();
  });

  const cleanup = () => {
    clearInterval(keepalive);
    for (const s of subs) s.unsubscribe();
  };
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port, opts.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    cleanup();
    const e = err as NodeJS.ErrnoException;
    const why = e.code === "EADDRINUSE" ? "address in use" : e.message;
    throw new Error(`cannot serve HTTP on ${opts.host}:${opts.port}: ${why}`);
  }
  server.on("error", (err) => log(`http: ${err.message}`));
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;

  let closing: Promise<void> | null = null;
  return {
    address: `http://${host}:${port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        cleanup();
        for (const res of clients) res.end();
        clients.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
