// Runs the real `agon` command as a child process, the way a user would.
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const AGON = resolve(import.meta.dirname, "../../shared/cli/agon.js");

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runAgon(
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {},
): Promise<CliResult> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), AGON, ...args], {
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 110_000);
    child.on("error", fail);
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

export function tempDir(prefix = "agon-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Config flags of a tiny MLP GAN on the ring: trains a step in milliseconds. */
export function tinyRing(opts: {
  steps: number;
  shards?: number;
  batch?: number;
  size?: number;
}): string[] {
  return [
    "--dataset",
    "ring",
    "--model",
    "mlp",
    "--set",
    "model.latentDim=4",
    "model.gHidden=[16,16]",
    "model.dHidden=[16,16]",
    `dataset.size=${opts.size ?? 512}`,
    "--steps",
    String(opts.steps),
    "--shards",
    String(opts.shards ?? 4),
    "--batch",
    String(opts.batch ?? 32),
  ];
}

/** tinyRing with K = 6 shards of 6 samples (a 600-point ring) and extra `--set` overrides: the cluster tests' run. */
export function ringK6(steps: number, sets: string[] = []): string[] {
  const base = tinyRing({ steps, shards: 6, batch: 36, size: 600 });
  return sets.length > 0 ? [...base, "--set", ...sets] : base;
}

/** The weight hashes `agon train` ends with for these config flags: the reference every distributed run must match. */
export async function referenceHashes(config: string[]): Promise<{ G: string; D: string }> {
  const r = await runAgon([
    "train",
    ...config,
    "--run-dir",
    tempDir(),
    "--backend",
    "wasm",
    "--json",
  ]);
  if (r.code !== 0) throw new Error(`agon train failed (${r.code}): ${r.stderr}`);
  return (JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { hashes: { G: string; D: string } })
    .hashes;
}

/** The weight hashes `agon local --workers N` (wasm, the given NATS) ends with for these config flags. */
export async function localHashes(
  config: string[],
  workers: number,
  natsUrl: string,
  runDir = tempDir(),
): Promise<{ G: string; D: string }> {
  const r = await runAgon([
    "local",
    ...config,
    "--workers",
    String(workers),
    "--nats",
    natsUrl,
    "--backend",
    "wasm",
    "--run-dir",
    runDir,
    "--json",
  ]);
  if (r.code !== 0) throw new Error(`agon local failed (${r.code}): ${r.stderr}`);
  return (JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { hashes: { G: string; D: string } })
    .hashes;
}
