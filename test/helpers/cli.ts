// Runs the real `agon` command as a child process, the way a user would.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildTestCli } from "./cli-build.js";

/**
 * The `agon` entry point tests start: the current sources, compiled
 * (helpers/cli-build.ts), so no process pays for transpiling TypeScript at start-up.
 */
export const AGON = await buildTestCli();

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A running `agon` child whose stdout and stderr are collected as they come. */
export interface AgonChild {
  child: ChildProcess;
  /** Resolves with the exit code once the process and its streams are closed. */
  exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
}

/** Starts `agon args` (output collected); `runAgon` when only the result matters. */
export function spawnAgon(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {},
): AgonChild {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), AGON, ...args], {
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (b: Buffer) => {
    stdout += b.toString();
  });
  child.stderr!.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise<number | null>((done, fail) => {
    child.on("error", fail);
    child.on("close", (code) => done(code));
  });
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

export async function runAgon(
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {},
): Promise<CliResult> {
  const run = spawnAgon(args, opts);
  const timer = setTimeout(() => run.child.kill("SIGKILL"), opts.timeoutMs ?? 110_000);
  try {
    const code = await run.exited;
    return { code, stdout: run.stdout(), stderr: run.stderr() };
  } finally {
    clearTimeout(timer);
  }
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

/**
 * A tiny `model` on 120 MNIST digits (latent 4), K = 6 shards of batch 2: the determinism
 * tests' run. `sets` are more `--set` overrides, `flags` more flags before them (e.g. a loss).
 */
export function tinyMnistK6(
  model: string,
  steps: number,
  sets: string[],
  flags: string[] = [],
): string[] {
  return [
    "--dataset",
    "mnist",
    "--model",
    model,
    ...flags,
    "--set",
    "dataset.limit=120",
    "model.latentDim=4",
    ...sets,
    "--steps",
    String(steps),
    "--shards",
    "6",
    "--batch",
    "12",
  ];
}

/** tinyRing with K = 6 shards of 6 samples (a 600-point ring) and extra `--set` overrides: the cluster tests' run. */
export function ringK6(steps: number, sets: string[] = []): string[] {
  const base = tinyRing({ steps, shards: 6, batch: 36, size: 600 });
  return sets.length > 0 ? [...base, "--set", ...sets] : base;
}

/** Weight hashes from a run's `--json` summary: G and D, plus the EMA generator's when kept. */
export type Hashes = { G: string; D: string; ema?: string };

/**
 * Runs `agon <args> --backend <backend> --json` (wasm unless told) and returns the summary's
 * weight hashes; throws on a non-zero exit.
 */
export async function hashesOf(
  args: string[],
  timeoutMs?: number,
  backend = "wasm",
): Promise<Hashes> {
  const r = await runAgon([...args, "--backend", backend, "--json"], { timeoutMs });
  if (r.code !== 0) throw new Error(`agon ${args[0]} failed (${r.code}): ${r.stderr}`);
  return (JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { hashes: Hashes }).hashes;
}

/** The weight hashes `agon train` ends with for these config flags: the reference every distributed run must match. */
export function referenceHashes(config: string[], timeoutMs?: number): Promise<Hashes> {
  return hashesOf(["train", ...config, "--run-dir", tempDir()], timeoutMs);
}

/**
 * The weight hashes `agon local --workers N` (wasm unless told, the given NATS) ends with for
 * these config flags, under a run id of its own (so runs sharing one NATS never mix).
 */
export function localHashes(
  config: string[],
  workers: number,
  natsUrl: string,
  runDir = tempDir(),
  timeoutMs?: number,
  backend = "wasm",
): Promise<Hashes> {
  const runId = `t-${process.pid}-${workers}-${Math.random().toString(36).slice(2, 8)}`;
  return hashesOf(
    [
      "local",
      ...config,
      "--set",
      `run.id=${runId}`,
      "--workers",
      String(workers),
      "--nats",
      natsUrl,
      "--run-dir",
      runDir,
    ],
    timeoutMs,
    backend,
  );
}

/**
 * The runs of the determinism tests, with the 170 s limit their tiny networks need on a
 * loaded 2-core CI machine: `hashesOf(args)` (agon train and others) and `local(flags,
 * workers)` (agon local on the suite's NATS, in a fresh run dir).
 */
export function contractRuns(
  nats: { readonly url: string },
  timeoutMs = 170_000,
  backend = "wasm",
) {
  return {
    hashesOf: (args: string[]) => hashesOf(args, timeoutMs, backend),
    local: (flags: string[], workers: number) =>
      localHashes(flags, workers, nats.url, tempDir(), timeoutMs, backend),
  };
}
