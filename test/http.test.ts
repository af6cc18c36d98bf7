// The coordinator's HTTP server against a real nats-server: Prometheus
// metrics, health, status, Server-Sent Events, the sample grid and 404s.
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type HttpServerHandle, type RunStatus, startHttpServer } from "../coordinator/http.js";
import { connectNats, type NatsConnection, subjects } from "../shared/nats.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();
const RUN = "httptest";
const subj = subjects(RUN);

// A 1×1 PNG (what the coordinator sends is a real grid; the server only checks the signature).
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
  "base64",
);

function metricsMessage(step: number, phase: 0 | 1, extra: Record<string, unknown> = {}) {
  const kind = phase === 0 ? "D" : "G";
  return {
    schema: 1,
    runId: RUN,
    step,
    phase,
    kind,
    dLoss: kind === "D" ? 1.25 + step / 100 : null,
    gLoss: kind === "D" ? 0.5 : 0.75 + step / 100,
    dReal: kind === "D" ? 0.625 : null,
    dFake: 0.375,
    gradNorm: kind === "D" ? 2.5 : 1.5,
    versions: { G: step + phase, D: step + 1 },
    steps: 100,
    stepDone: phase === 1,
    workers: 2,
    time: new Date().toISOString(),
    phaseSeconds: 0.02,
    computeSeconds: 0.015,
    bytesIn: 1000 * (2 * step + phase + 1),
    bytesOut: 3000 * (2 * step + phase + 1),
    ...extra,
  };
}

function event(type: string, message: string, fields: Record<string, unknown> = {}) {
  return { schema: 1, runId: RUN, time: new Date().toISOString(), type, message, ...fields };
}

/** Parses Prometheus text exposition format strictly enough to catch malformed output. */
function parseProm(text: string) {
  const types = new Map<string, string>();
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m) {
      if (m[1] === "TYPE") {
        expect(["counter", "gauge", "histogram", "summary", "untyped"]).toContain(m[3]);
        types.set(m[2], m[3]);
      }
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$/.exec(line);
    if (!m) throw new Error(`not Prometheus text format: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g))
      labels[l[1]] = l[2];
    const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    if (m[3] !== "NaN" && Number.isNaN(value)) throw new Error(`bad value in ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  const value = (name: string, labels: Record<string, string> = {}) =>
    samples.find(
      (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    )?.value;
  return { types, samples, value };
}

/** Reads SSE frames from /events until `until` says stop. */
async function readSse(
  url: string,
  until: (frames: Array<{ event: string; data: string }>) => boolean,
  onOpen?: () => void,
  timeoutMs = 10_000,
) {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  const frames: Array<{ event: string; data: string }> = [];
  try {
    const res = await fetch(url, { signal: ac.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    onOpen?.();
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    while (!until(frames)) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut = buf.indexOf("\n\n");
      while (cut >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        cut = buf.indexOf("\n\n");
        let ev = "message";
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) ev = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length) frames.push({ event: ev, data: data.join("\n") });
      }
    }
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return frames;
}

describe("coordinator HTTP server", () => {
  let nc: NatsConnection;
  let http: HttpServerHandle;
  const status: RunStatus = {
    step: 3,
    steps: 100,
    phase: 0,
    workers: [
      { workerId: "w-1", workerName: "alpha", shards: [0, 2] },
      { workerId: "w-2", workerName: "beta", shards: [1, 3] },
    ],
    done: false,
    healthy: true,
  };

  beforeAll(async () => {
    nc = await connectNats(nats.url, "http-test");
    http = await startHttpServer({
      host: "127.0.0.1",
      port: 0,
      runId: RUN,
      nats: nc,
      status: () => ({ ...status }),
      log: () => {},
    });
    for (let step = 0; step < 3; step++) {
      nc.publish(subj.metrics, JSON.stringify(metricsMessage(step, 0)));
      nc.publish(subj.metrics, JSON.stringify(metricsMessage(step, 1)));
    }
    nc.publish(subj.metrics, "not json"); // ignored
    nc.publish(
      subj.events,
      JSON.stringify(event("workerJoined", "w-1 joined", { workerId: "w-1" })),
    );
    nc.publish(
      subj.events,
      JSON.stringify(event("workerJoined", "w-2 joined", { workerId: "w-2" })),
    );
    nc.publish(
      subj.events,
      JSON.stringify(event("workerLost", "w-2 lost: lease expired", { workerId: "w-2" })),
    );
    nc.publish(
      subj.events,
      JSON.stringify(event("evaluation", "step 2: fd 123.500", { step: 2, fd: 123.5, n: 2000 })),
    );
    nc.publish(subj.samples, PNG);
    await nc.flush();
    // The server's subscriptions share this connection's server: one more round trip and they have it all.
    await new Promise((r) => setTimeout(r, 100));
  });

  afterAll(async () => {
    await http?.close();
    await nc?.close();
  });

  it("serves the training series in Prometheus text format", async () => {
    const res = await fetch(`${http.address}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const prom = parseProm(text);
    expect(text).toContain("# TYPE agon_d_loss gauge");
    expect(text).toMatch(/^agon_d_loss\{run="httptest"\} 1\.27$/m);
    const run = { run: RUN };
    expect(prom.value("agon_step", run)).toBe(3);
    expect(prom.value("agon_steps_target", run)).toBe(100);
    expect(prom.value("agon_g_loss", run)).toBe(0.77);
    expect(prom.value("agon_d_real", run)).toBe(0.625);
    expect(prom.value("agon_d_fake", run)).toBe(0.375);
    expect(prom.value("agon_grad_norm", { ...run, net: "D" })).toBe(2.5);
    expect(prom.value("agon_grad_norm", { ...run, net: "G" })).toBe(1.5);
    expect(prom.value("agon_workers", run)).toBe(2);
    expect(prom.value("agon_weights_version", { ...run, net: "G" })).toBe(3);
    expect(prom.value("agon_weights_version", { ...run, net: "D" })).toBe(3);
    expect(prom.types.get("agon_phases_total")).toBe("counter");
    expect(prom.value("agon_phases_total", { ...run, kind: "D" })).toBe(3);
    expect(prom.value("agon_phases_total", { ...run, kind: "G" })).toBe(3);
    expect(prom.types.get("agon_bytes_in_total")).toBe("counter");
    expect(prom.value("agon_bytes_in_total", run)).toBe(6000);
    expect(prom.value("agon_bytes_out_total", run)).toBe(18000);
    expect(prom.value("agon_events_total", { ...run, type: "workerJoined" })).toBe(2);
    expect(prom.value("agon_events_total", { ...run, type: "workerLost" })).toBe(1);
    expect(prom.value("agon_eval_fd", run)).toBe(123.5);
    expect(prom.value("agon_eval_step", run)).toBe(2);
    expect(prom.types.get("agon_phase_seconds")).toBe("histogram");
    expect(prom.value("agon_phase_seconds_count", run)).toBe(6);
    expect(prom.value("agon_phase_seconds_bucket", { ...run, le: "0.025" })).toBe(6);
    expect(prom.value("agon_phase_seconds_bucket", { ...run, le: "0.01" })).toBe(0);
    // Default process metrics, prefixed, in the same registry.
    expect(prom.types.get("agon_process_cpu_user_seconds_total")).toBe("counter");
    // Every series carries the run label.
    for (const s of prom.samples) expect(s.labels.run, s.name).toBe(RUN);
  });

  it("answers /healthz with 200 when healthy and 503 when not", async () => {
    let res = await fetch(`${http.address}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "ok", step: 3, steps: 100, healthy: true });
    status.healthy = false;
    try {
      res = await fetch(`${http.address}/healthz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: "unhealthy", healthy: false });
    } finally {
      status.healthy = true;
    }
  });

  it("serves the status as JSON", async () => {
    const res = await fetch(`${http.address}/api/status`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({ runId: RUN, ...status });
  });

  it("streams the history, then live messages, over SSE", async () => {
    const frames = await readSse(
      `${http.address}/events`,
      (f) => f.some((x) => x.event === "event" && x.data.includes("live event")),
      () => {
        // Published once the stream is open: it must arrive after the history.
        setTimeout(() => {
          nc.publish(subj.metrics, JSON.stringify(metricsMessage(3, 0)));
          nc.publish(subj.events, JSON.stringify(event("checkpointWritten", "live event")));
        }, 200);
      },
    );
    expect(frames[0]).toEqual({ event: "hello", data: JSON.stringify({ runId: RUN }) });
    const kinds = frames.map((f) => f.event);
    const metrics = frames.filter((f) => f.event === "metrics").map((f) => JSON.parse(f.data));
    expect(metrics.map((m) => [m.step, m.phase])).toEqual([
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
      [2, 0],
      [2, 1],
      [3, 0],
    ]);
    const events = frames.filter((f) => f.event === "event").map((f) => JSON.parse(f.data));
    expect(events.map((e) => e.type)).toEqual([
      "workerJoined",
      "workerJoined",
      "workerLost",
      "evaluation",
      "checkpointWritten",
    ]);
    // History order: metrics, events, sample; then the live ones.
    const sampleAt = kinds.indexOf("sample");
    expect(sampleAt).toBeGreaterThan(kinds.indexOf("event"));
    expect(kinds.lastIndexOf("metrics")).toBeGreaterThan(sampleAt);
    const sample = JSON.parse(frames[sampleAt].data) as { step: number; url: string };
    expect(sample.step).toBe(3);
    const png = await fetch(`${http.address}${sample.url}`);
    expect(png.status).toBe(200);
    expect(png.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await png.arrayBuffer()).equals(PNG)).toBe(true);
  });

  it("serves the dashboard page, self-contained", async () => {
    const res = await fetch(`${http.address}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).toContain("<canvas");
    expect(html).toContain('new EventSource("/events")');
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
  });

  it("answers 404, 405 and 400 and keeps serving", async () => {
    expect((await fetch(`${http.address}/nope`)).status).toBe(404);
    expect((await fetch(`${http.address}/metrics/x`)).status).toBe(404);
    expect((await fetch(`${http.address}/metrics`, { method: "POST", body: "x" })).status).toBe(
      405,
    );
    // A malformed request line: the server answers 400 and stays up.
    const raw = await new Promise<string>((resolve, reject) => {
      const { port } = new URL(http.address);
      const req = request({ host: "127.0.0.1", port, path: "/", method: "GET" });
      req.on("socket", (s) => {
        s.write("GARBAGE \x00\x01 HTTP/9\r\n\r\n");
        let out = "";
        s.on("data", (b: Buffer) => {
          out += b.toString();
        });
        s.on("close", () => resolve(out));
        s.on("error", reject);
      });
      req.on("error", () => {});
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect((await fetch(`${http.address}/api/status`)).status).toBe(200);
  });

  it("close() ends SSE streams and stops listening", async () => {
    const extra = await startHttpServer({
      host: "127.0.0.1",
      port: 0,
      runId: RUN,
      nats: nc,
      status: () => status,
      processMetrics: false,
      log: () => {},
    });
    const res = await fetch(`${extra.address}/events`);
    const reader = res.body!.getReader();
    await reader.read(); // the hello frame
    const ended = (async () => {
      for (;;) if ((await reader.read()).done) return true;
    })();
    await extra.close();
    expect(await ended).toBe(true);
    await expect(fetch(`${extra.address}/healthz`)).rejects.toThrow();
    // A second close is harmless.
    await extra.close();
  });

  it("reports a port in use in one line", async () => {
    const { port } = new URL(http.address);
    await expect(
      startHttpServer({
        host: "127.0.0.1",
        port: Number(port),
        runId: RUN,
        nats: nc,
        status: () => status,
        processMetrics: false,
      }),
    ).rejects.toThrow(`cannot serve HTTP on 127.0.0.1:${port}: address in use`);
  });
});
