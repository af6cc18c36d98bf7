// Checkpoints: a directory written under a temporary name, fsync'd, then
// renamed into place, with the sha256 of every blob in its manifest so a torn
// or corrupted checkpoint is detected on load instead of trained from.
import { closeSync, existsSync, fsyncSync, openSync } from "node:fs";
import {
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  writeFile,
} from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import type { AdamState } from "../shared/adam.js";
import {
  CHECKPOINT_IGNORES,
  canonicalJson,
  configDifferences,
  type RunConfig,
} from "../shared/config.js";
import { sha256 } from "../shared/hash.js";
import { asWriteError } from "./rundir.js";

export const CHECKPOINT_FORMAT = 1;
const PREFIX = "ckpt-";

export interface CheckpointData {
  step: number;
  phase: number;
  versions: { G: number; D: number };
  weights: { G: Float32Array; D: Float32Array };
  adam: { G: AdamState; D: AdamState };
  /** The EMA generator's flat array (G's layout), when the run keeps one. */
  ema?: Float32Array;
}

export interface Manifest {
  format: number;
  step: number;
  phase: number;
  versions: { G: number; D: number };
  seed: number;
  configHash: string;
  config: RunConfig;
  /** Data cursors are pure functions of the step: shard k's next D draw is step·kD. */
  dataCursors: { shard: number; nextDraw: number }[];
  adamSteps: { G: number; D: number };
  blobs: Record<string, { bytes: number; sha256: string }>;
  createdAt: string;
}

export class CheckpointError extends Error {
  override name = "CheckpointError";
}

/**
 * Hash of the fields that decide the training trajectory. Steps, run dir,
 * checkpoint, sample and evaluation cadence, health settings and the EMA
 * generator's half-life (it never feeds back into G or D) are left out, so a run
 * can be extended, moved or watched differently. The transport precision rounds
 * gradients and weights, so it is in; at its default (fp32 both ways) it is
 * left out, so checkpoints from before the setting existed still resume.
 * `schedule.reuseFakes` is in when true and left out at its default (false), so
 * checkpoints from before the setting existed still resume.
 */
export function configHash(cfg: RunConfig): string {
  const { transport } = cfg;
  // Everything but the fields a resume may change (CHECKPOINT_IGNORES, which
  // configDifferences leaves out too); canonicalJson sorts the keys.
  const trajectory = Object.fromEntries(
    Object.entries(cfg).filter(([k]) => k !== "transport" && !CHECKPOINT_IGNORES.includes(k)),
  ) as Pick<RunConfig, "dataset" | "schedule">;
  const fp32 = transport.gradients === "fp32" && transport.params === "fp32";
  // A prepared dataset is identified by its fingerprint: where it is mounted and
  // how much of it is cached do not change the trajectory.
  const dataset =
    trajectory.dataset.name === "prepared"
      ? (({ path: _path, cacheMB: _cacheMB, ...rest }) => rest)(trajectory.dataset)
      : trajectory.dataset;
  const { reuseFakes, ...schedule } = trajectory.schedule;
  const common = { ...trajectory, dataset, schedule: reuseFakes ? trajectory.schedule : schedule };
  const hashed = fp32 ? common : { ...common, transport };
  return sha256(new TextEncoder().encode(canonicalJson(hashed)));
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function blobsOf(data: CheckpointData): Record<string, Float32Array> {
  return {
    ...(data.ema ? { "G.ema.f32": data.ema } : {}),
    "G.weights.f32": data.weights.G,
    "D.weights.f32": data.weights.D,
    "G.adam.m.f32": data.adam.G.m,
    "G.adam.v.f32": data.adam.G.v,
    "D.adam.m.f32": data.adam.D.m,
    "D.adam.v.f32": data.adam.D.v,
  };
}

/** The first blob (weights or optimizer state) holding NaN or ±Inf, or null when all are finite. */
export function nonFiniteBlob(data: CheckpointData): string | null {
  for (const [file, array] of Object.entries(blobsOf(data))) {
    for (let i = 0; i < array.length; i++) if (!Number.isFinite(array[i])) return file;
  }
  return null;
}

function fsyncPath(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes a checkpoint atomically and prunes all but the newest `keep`. Returns its path. */
export async function writeCheckpoint(
  runDir: string,
  cfg: RunConfig,
  data: CheckpointData,
  keep: number,
): Promise<string> {
  const bad = nonFiniteBlob(data);
  if (bad) {
    throw new CheckpointError(
      `refusing to write the checkpoint of step ${data.step}: ${bad} holds NaN or Inf (the older checkpoints are kept)`,
    );
  }
  const name = `${PREFIX}${String(data.step).padStart(8, "0")}`;
  const finalPath = join(runDir, name);
  const tmpPath = join(runDir, `.tmp-${name}-${process.pid}`);
  try {
    return await writeCheckpointAt(runDir, cfg, data, keep, name, tmpPath);
  } catch (err) {
    // A half-written one goes (it frees what it took of a full disk); the older ones stay.
    await rm(tmpPath, { recursive: true, force: true }).catch(() => {});
    throw asWriteError(finalPath, err);
  }
}

async function writeCheckpointAt(
  runDir: string,
  cfg: RunConfig,
  data: CheckpointData,
  keep: number,
  name: string,
  tmpPath: string,
): Promise<string> {
  const finalPath = join(runDir, name);
  await rm(tmpPath, { recursive: true, force: true });
  await mkdir(tmpPath, { recursive: true });
  const blobs: Manifest["blobs"] = {};
  for (const [file, array] of Object.entries(blobsOf(data))) {
    const bytes = bytesOf(array);
    await writeFile(join(tmpPath, file), bytes);
    fsyncPath(join(tmpPath, file));
    blobs[file] = { bytes: bytes.byteLength, sha256: sha256(bytes) };
  }
  const manifest: Manifest = {
    format: CHECKPOINT_FORMAT,
    step: data.step,
    phase: data.phase,
    versions: data.versions,
    seed: cfg.seed,
    configHash: configHash(cfg),
    config: cfg,
    dataCursors: Array.from({ length: cfg.shards }, (_, shard) => ({
      shard,
      nextDraw: data.step * cfg.schedule.kD,
    })),
    adamSteps: { G: data.adam.G.t, D: data.adam.D.t },
    blobs,
    createdAt: new Date().toISOString(),
  };
  await writeFile(join(tmpPath, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  fsyncPath(join(tmpPath, "manifest.json"));
  fsyncPath(tmpPath);
  await discard(runDir, name);
  await rename(tmpPath, finalPath);
  fsyncPath(runDir);
  await pruneCheckpoints(runDir, keep);
  return finalPath;
}

async function checkpointNames(runDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(runDir);
  } catch {
    return [];
  }
  // Ordered by step (the number), not by name: a step past 99,999,999 has more digits.
  return names
    .filter((n) => /^ckpt-\d{8,}$/.test(n))
    .sort((a, b) => Number(a.slice(PREFIX.length)) - Number(b.slice(PREFIX.length)));
}

async function pruneCheckpoints(runDir: string, keep: number): Promise<void> {
  const names = await checkpointNames(runDir);
  for (const old of names.slice(0, Math.max(0, names.length - keep))) await discard(runDir, old);
}

/**
 * Removes a checkpoint directory without ever leaving a half-deleted one under
 * its final name: rename it aside (atomic), then delete.
 */
async function discard(runDir: string, name: string): Promise<void> {
  const trash = join(runDir, `.trash-${name}-${process.pid}`);
  try {
    await rename(join(runDir, name), trash);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  await rm(trash, { recursive: true, force: true });
}

/** Reads and verifies one checkpoint directory; throws CheckpointError naming what is wrong. */
export async function readCheckpoint(
  dir: string,
): Promise<{ manifest: Manifest; data: CheckpointData }> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8")) as Manifest;
  } catch (err) {
    throw new CheckpointError(
      `${dir}: unreadable manifest.json (${(err as Error).message.split("\n")[0]})`,
    );
  }
  if (manifest?.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(
      manifest?.format === undefined
        ? `${dir}: not an agon checkpoint (its manifest.json has no format); give a ckpt-NNNNNNNN dir written by agon`
        : manifest.format === ("agon-prepared-dataset" as unknown) // shared/data/prepared.ts PREPARED_FORMAT
          ? `${dir}: is a prepared dataset (agon data prepare), not a checkpoint; give a run dir or a ckpt-NNNNNNNN dir`
          : `${dir}: uses checkpoint format ${String(manifest.format)}, this agon reads format ${CHECKPOINT_FORMAT}; use the agon version that wrote it`,
    );
  }
  const arrays: Record<string, Float32Array> = {};
  for (const [file, meta] of Object.entries(manifest.blobs ?? {})) {
    let bytes: Buffer;
    try {
      bytes = await readFile(join(dir, file));
    } catch {
      throw new CheckpointError(`${dir}: missing blob ${file}`);
    }
    if (bytes.byteLength !== meta.bytes || sha256(bytes) !== meta.sha256) {
      throw new CheckpointError(`${dir}: blob ${file} fails its checksum (torn or corrupted)`);
    }
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    arrays[file] = new Float32Array(copy.buffer);
  }
  const need = [
    "G.weights.f32",
    "D.weights.f32",
    "G.adam.m.f32",
    "G.adam.v.f32",
    "D.adam.m.f32",
    "D.adam.v.f32",
  ];
  for (const file of need) {
    if (!arrays[file]) throw new CheckpointError(`${dir}: manifest lists no ${file}`);
  }
  return {
    manifest,
    data: {
      step: manifest.step,
      phase: manifest.phase,
      versions: manifest.versions,
      weights: { G: arrays["G.weights.f32"], D: arrays["D.weights.f32"] },
      adam: {
        G: { t: manifest.adamSteps.G, m: arrays["G.adam.m.f32"], v: arrays["G.adam.v.f32"] },
        D: { t: manifest.adamSteps.D, m: arrays["D.adam.m.f32"], v: arrays["D.adam.v.f32"] },
      },
      ...(arrays["G.ema.f32"] ? { ema: arrays["G.ema.f32"] } : {}),
    },
  };
}

export type FoundCheckpoint = { dir: string; manifest: Manifest; data: CheckpointData };

/**
 * The newest checkpoint in a run dir that verifies; corrupt ones are reported
 * and skipped. Read-only, so it is safe on a run that is still writing.
 */
export async function latestValidCheckpoint(
  runDir: string,
  onRejected: (dir: string, reason: string) => void = () => {},
): Promise<FoundCheckpoint | null> {
  const names = await checkpointNames(runDir);
  for (const name of names.reverse()) {
    const dir = join(runDir, name);
    try {
      return { dir, ...(await readCheckpoint(dir)) };
    } catch (err) {
      onRejected(dir, (err as Error).message);
    }
  }
  return null;
}

/**
 * The line that says a checkpoint was skipped: "checkpoint rejected: DIR: why" (the reason's own
 * leading DIR is not repeated); what comes next (an older checkpoint, step 0) is the caller's.
 */
export function rejectionLine(dir: string, reason: string): string {
  return `checkpoint rejected: ${reason.startsWith(`${dir}: `) ? reason : `${dir}: ${reason}`}`;
}

/**
 * A checkpoint dir as given (one holding manifest.json), or the newest checkpoint
 * of a run dir that verifies (read-only, safe on a live run); `onRejected` hears
 * of each newer one that did not. Used by eval, sample and export alike. The dir
 * is made absolute and a link (a run's `best`) is resolved to what it points at
 * (best-checkpoints/ckpt-NNNNNNNN), so `found.dir` names the checkpoint itself.
 * @throws CheckpointError when neither (or when the named checkpoint is damaged,
 * or a link's target is gone).
 */
export async function readCheckpointOrNewest(
  given: string,
  onRejected: (dir: string, reason: string) => void = () => {},
): Promise<FoundCheckpoint> {
  let dir = resolve(given);
  const link = await lstat(dir).catch(() => null);
  if (link?.isSymbolicLink()) {
    const target = await readlink(dir).catch(() => "?");
    try {
      dir = await realpath(dir);
    } catch {
      throw new CheckpointError(
        `${dir}: a dangling link (its target ${target} is gone; give the run dir for its newest checkpoint)`,
      );
    }
  }
  if (existsSync(join(dir, "manifest.json"))) return { dir, ...(await readCheckpoint(dir)) };
  if (!existsSync(dir)) {
    throw new CheckpointError(
      basename(dir) === BEST_LINK_NAME
        ? `${dir}: does not exist (${await whyNoBest(dirname(dir))}; give the run dir for its newest checkpoint)`
        : `${dir}: does not exist (expected a ckpt-NNNNNNNN dir or a run dir)`,
    );
  }
  const found = await latestValidCheckpoint(dir, onRejected);
  if (found) return found;
  throw new CheckpointError(
    `${dir}: no valid checkpoint (neither a ckpt-NNNNNNNN dir nor a run dir holding one)`,
  );
}

/**
 * What a (re)starting trainer resumes from: removes what a killed writer left
 * behind, then the newest valid checkpoint, refused if it was written with a
 * different trajectory unless `force`. Null when there is none.
 */
/** The name of a run's link to its best checkpoint (best.ts's BEST_LINK; best.ts imports this module). */
const BEST_LINK_NAME = "best";

/**
 * Why a run dir has no `best` link, from its newest checkpoint's config (read, not verified):
 * the run does not keep best checkpoints, or it does but none has been kept yet.
 */
async function whyNoBest(runDir: string): Promise<string> {
  const names = await checkpointNames(runDir);
  const newest = names[names.length - 1];
  let config: { eval?: unknown; checkpoint?: { keepBest?: unknown } } | undefined;
  if (newest) {
    try {
      config = JSON.parse(await readFile(join(runDir, newest, "manifest.json"), "utf8"))?.config;
    } catch {
      config = undefined;
    }
  }
  if (config?.eval && config.checkpoint?.keepBest !== undefined)
    return "this run keeps best/ (eval.every and checkpoint.keepBest), but no evaluation has completed yet or none was kept";
  return "a run keeps best/ only with eval.every and checkpoint.keepBest";
}

export async function resumableCheckpoint(
  cfg: RunConfig,
  force: boolean,
  onRejected: (dir: string, reason: string) => void,
): Promise<FoundCheckpoint | null> {
  const runDir = cfg.run.dir;
  for (const name of await readdir(runDir).catch(() => [] as string[])) {
    if (name.startsWith(".tmp-ckpt-") || name.startsWith(".trash-ckpt-")) {
      await rm(join(runDir, name), { recursive: true, force: true });
    }
  }
  const found = await latestValidCheckpoint(runDir, onRejected);
  if (found && found.manifest.configHash !== configHash(cfg) && !force) {
    throw new CheckpointError(
      `${found.dir} was written with a different config (${configDifferences(found.manifest.config, cfg, CHECKPOINT_IGNORES)}); use --fresh to start over or --force to resume anyway`,
    );
  }
  return found;
}
