// Runs with nothing but Node: on a machine without a nats-server, `agon local`
// still trains (parameters over gRPC FetchParams, progress and the dashboard
// from the coordinator) and says once what going without NATS changes; a
// coordinator or worker given no --nats runs without it too.
// AGON_NATS_SERVER=none hides Debian's /usr/sbin/nats-server (shared/nats.ts).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AGON, runAgon, tempDir, tinyRing } from "./helpers/cli.js";

const ringFlags = (dir: string, steps: number) => [
  ...tinyRing({ steps }),
  "--run-dir",
  dir,
  "--backend",
  "wasm",
];

/** No nats-server anywhere this process could find one. */
const noNats = () => ({
  ...process.env,
  PATH: tempDir("agon-empty-path-"),
  AGON_NATS_SERVER: "none",
});

/** Reads `url` (Server-Sent Events) and collects the metrics messages until the server ends the stream. */
async function collectMetrics(
  url: string,
  onFirst: () => void,
): Promise<{ step: number; kind: string }[]> {
  const res = await fetch(url);
  const got: { step: number; kind: string }[] = [];
  const decoder = new TextDecoder();
  let text = "";
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      for (let end = text.indexOf("\n\n"); end >= 0; end = text.indexOf("\n\n")) {
        const frame = text.slice(0, end);
        text = text.slice(end + 2);
        const data = /^data: (.*)$/m.exec(frame)?.[1];
        if (/^event: metrics$/m.test(frame) && data) {
          got.push(JSON.parse(data));
          if (got.length === 1) onFirst();
        }
      }
    }
  } catch {
    // The coordinator closes the dashboard when the run is done.
  }
  return got;
}

describe("without NATS", () => {
  it("agon local --workers 2 with no nats-server ends with agon train's hashes, shows progress and a dashboard, and says so once", async () => {
    const steps = 20;
    const localDir = tempDir();
    const child = spawn(
      process.execPath,
      [AGON, "local", "--workers", "2", ...ringFlags(localDir, steps), "--json"],
      { env: noNats(), stdio: ["ignore", "pipe", "pipe"] },
    );
    const train = runAgon(["train", ...ringFlags(tempDir(), steps), "--json"]);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    // The dashboard, read while the run goes on: its SSE stream (history, then live) and one /metrics scrape.
    let dashboard: Promise<{ step: number; kind: string }[]> | null = null;
    let scrape: Promise<string> | null = null;
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
      const address = /^dashboard: (http:\/\/\S+)\//m.exec(stderr)?.[1];
      if (address && !dashboard) {
        dashboard = collectMetrics(`${address}/events`, () => {
          scrape = fetch(`${address}/metrics`).then((r) => r.text());
        });
      }
    });
    const killer = setTimeout(() => child.kill("SIGKILL"), 170_000);
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    clearTimeout(killer);

    expect(code, stderr).toBe(0);
    const t = await train;
    expect(t.code, t.stderr).toBe(0);
    const summary = JSON.parse(stdout.trim().split("\n").at(-1)!);
    expect(summary.step).toBe(steps);
    expect(summary.hashes).toEqual(JSON.parse(t.stdout.trim().split("\n").at(-1)!).hashes);

    // One line, from agon local, says NATS was not found and what that changes; the children say nothing of it.
    const natsLines = stderr.split("\n").filter((l) => /nats/i.test(l));
    expect(natsLines, stderr).toHaveLength(2);
    expect(natsLines[0]).toMatch(
      /^local: no nats-server found: running without NATS; workers fetch parameters over gRPC .*`agon watch` has nothing to follow/,
    );
    expect(natsLines[1]).toMatch(/^local: coordinator \(pid \d+\) on .*, no NATS$/);
    // The progress line comes from the coordinator directly.
    expect(stderr).toMatch(new RegExp(`^step ${steps}/${steps} \\[#+\\] 100% \\| D \\d`, "m"));

    expect(dashboard, stderr).not.toBeNull();
    const metrics = await dashboard!;
    expect(metrics.map((m) => `${m.step}${m.kind}`)).toEqual(
      Array.from({ length: steps }, (_, s) => [`${s}D`, `${s}G`]).flat(),
    );
    const text = await scrape!;
    expect(text).toMatch(/^agon_phases_total\{[^}]*kind="D"[^}]*\} [1-9]/m);
  }, 180_000);

  it("agon coordinator and agon worker with no --nats train without it, each says so in one line, and the dashboard serves", async () => {
    const child = spawn(
      process.execPath,
      [
        AGON,
        "coordinator",
        ...ringFlags(tempDir(), 5),
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
      ],
      { env: noNats(), stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    const killer = setTimeout(() => child.kill("SIGKILL"), 100_000);
    try {
      const addresses = await new Promise<{ grpc: string; http: string } | null>((resolve) => {
        child.stdout.on("data", (b: Buffer) => {
          stdout += b.toString();
          const grpc = /"event":"listening","address":"([^"]+)"/.exec(stdout)?.[1];
          const http = /"event":"http","address":"([^"]+)"/.exec(stdout)?.[1];
          if (grpc && http) resolve({ grpc, http });
        });
        void closed.then(() => resolve(null));
      });
      expect(addresses, stderr).not.toBeNull();
      const status = await (await fetch(`${addresses!.http}/api/status`)).json();
      expect(status).toMatchObject({ step: 0, steps: 5, workers: [], done: false });
      expect((await fetch(`${addresses!.http}/metrics`)).status).toBe(200);

      const worker = await runAgon(
        ["worker", "--coordinator", addresses!.grpc, "--name", "w1", "--backend", "wasm"],
        { env: noNats(), timeoutMs: 90_000 },
      );
      expect(worker.code, worker.stderr).toBe(0);
      expect(await closed, stderr).toBe(0);
      expect(stdout).toMatch(/"event":"done","step":5/);
      expect(worker.stderr.split("\n").filter((l) => /nats/i.test(l))).toEqual([
        "worker: no --nats: parameters come over gRPC (FetchParams) only",
      ]);
      expect(
        stderr.split("\n").filter((l) => /nats/i.test(l)),
        stderr,
      ).toEqual([
        "coordinator: no --nats: running without NATS; workers fetch parameters over gRPC (FetchParams), metrics, events and samples reach the run dir and the --http dashboard only (no broadcast, nothing for `agon watch`)",
      ]);
    } finally {
      clearTimeout(killer);
      child.kill("SIGKILL");
    }
  }, 110_000);

  it("agon local --no-nats goes without NATS quietly although nats-server is installed, with agon train's hashes", async () => {
    const steps = 4;
    const [local, train] = await Promise.all([
      runAgon(["local", "--no-nats", "--workers", "1", ...ringFlags(tempDir(), steps), "--json"]),
      runAgon(["train", ...ringFlags(tempDir(), steps), "--json"]),
    ]);
    expect(local.code, local.stderr).toBe(0);
    expect(train.code, train.stderr).toBe(0);
    const last = (out: string) => JSON.parse(out.trim().split("\n").at(-1)!);
    expect(last(local.stdout).hashes).toEqual(last(train.stdout).hashes);
    // No nats-server started, no "not found" line: only the coordinator's "no NATS" note.
    expect(local.stderr.split("\n").filter((l) => /nats/i.test(l))).toEqual([
      expect.stringMatching(/^local: coordinator \(pid \d+\) on .*, no NATS$/),
    ]);
    const standby = await runAgon([
      "local",
      "--no-nats",
      "--standby",
      ...ringFlags(tempDir(), 2),
      "--workers",
      "1",
    ]);
    expect(standby.code).toBe(2);
    expect(standby.stderr.trim().split("\n")).toEqual([
      "agon: error: --standby needs NATS with JetStream (the replicated log and the leader's lease live there): drop --no-nats",
    ]);
  }, 120_000);

  it("NATS credentials without --nats, and --standby without NATS, are refused in one line", async () => {
    const r = await runAgon(["worker", "--coordinator", "127.0.0.1:1", "--nats-creds", "x.creds"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual([
      "agon: error: --nats-creds: give --nats <urls> too (NATS credentials without a NATS server)",
    ]);
    // A hot standby cannot go without NATS: refused before anything starts.
    const dir = tempDir();
    const standby = await runAgon(["local", ...ringFlags(dir, 2), "--workers", "1", "--standby"], {
      env: noNats(),
    });
    expect(standby.code).toBe(2);
    expect(standby.stderr.trim().split("\n")).toHaveLength(1);
    expect(standby.stderr).toMatch(/^agon: error: --standby needs NATS with JetStream/);
    expect(existsSync(join(dir, "metrics.jsonl"))).toBe(false);
  });
});
