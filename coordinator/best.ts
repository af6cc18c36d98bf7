// The k best checkpoints by the evaluation's Fréchet distance (`checkpoint.keepBest`, as
// Ray Train's checkpoint_score_attribute): kept in <run dir>/best-checkpoints/, apart from
// the rotated latest ones, with their scores in scores.json; <run dir>/best is a symlink
// to the best one, so `agon eval|sample|export --checkpoint runs/x/best` take it.
import { readFileSync } from "node:fs";
import { mkdir, readdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import type { RunConfig } from "../shared/config.js";
import { metricOfConfig } from "../shared/evaluation.js";
import { type CheckpointData, configHash, writeCheckpoint } from "./checkpoint.js";

export const BEST_DIR = "best-checkpoints";
export const BEST_LINK = "best";
const SCORES = "scores.json";

/**
 * One kept checkpoint: its step, its FD (lower is better), its dir name in best-checkpoints/,
 * and what makes scores comparable: the trajectory (config hash) and the evaluation's n and
 * latent seed.
 */
export interface BestEntry {
  step: number;
  /** The score, lower is better: the FD, or the FID when `metric` is "fid". */
  fd: number;
  /** "fid" for Inception features (eval.features inception); absent: the own features' FD. */
  metric?: "fid";
  name: string;
  configHash: string;
  n: number;
  seed: number;
}

/** Best first: lower FD, then the earlier step. */
function byScore(a: BestEntry, b: BestEntry): number {
  return a.fd - b.fd || a.step - b.step;
}

/** The scores of the kept best checkpoints of a run dir, best first ([] when there are none). */
export function readBestScores(runDir: string): BestEntry[] {
  try {
    const raw = JSON.parse(readFileSync(join(runDir, BEST_DIR, SCORES), "utf8")) as BestEntry[];
    return Array.isArray(raw) ? raw.sort(byScore) : [];
  } catch {
    return [];
  }
}

export class BestCheckpoints {
  private entries: BestEntry[];
  private readonly hash: string;
  /**
   * What an earlier incarnation kept that this run cannot compare with, and why: each such
   * entry's step and the first setting that differs ("eval.n 500, now 400"). Its checkpoint
   * dir is deleted at the next write. Empty when nothing was dropped.
   */
  readonly dropped: { step: number; name: string; why: string }[];

  /**
   * Reads what an earlier incarnation of the run kept. Entries written with another
   * trajectory (config hash), another eval.n / eval.seed or another metric (FD, FID) are dropped at the next write; a resumed run re-evaluating a
   * step replaces that step's entry (deterministic, so with the same score).
   */
  constructor(
    private readonly cfg: RunConfig,
    private readonly k: number,
  ) {
    this.hash = configHash(cfg);
    const read = readBestScores(cfg.run.dir).map((e) => ({ e, why: this.mismatch(e) }));
    this.entries = read.filter((r) => r.why === null).map((r) => r.e);
    this.dropped = read
      .filter((r) => r.why !== null)
      .map((r) => ({ step: r.e.step, name: r.e.name, why: r.why as string }));
  }

  /** Why an entry's score does not compare with this run's (null: it does). */
  private mismatch(e: BestEntry): string | null {
    const cfg = this.cfg;
    if (e.configHash !== this.hash) return "another trajectory (config hash)";
    if (e.n !== cfg.eval?.n) return `eval.n ${e.n}, now ${cfg.eval?.n}`;
    if (e.seed !== cfg.eval?.seed) return `eval.seed ${e.seed}, now ${cfg.eval?.seed}`;
    const metric = e.metric ?? "fd";
    if (metric !== metricOfConfig(cfg)) return `${metric}, now ${metricOfConfig(cfg)}`;
    return null;
  }

  /**
   * One line on what the constructor dropped (null when nothing): "best checkpoints dropped:
   * step 4 (eval.n 500, now 400), step 6 (...); their dirs in best-checkpoints/ are deleted when
   * the next best checkpoint is written".
   */
  droppedLine(): string | null {
    if (this.dropped.length === 0) return null;
    const list = this.dropped.map((d) => `step ${d.step} (${d.why})`).join(", ");
    return `best checkpoints dropped, their scores do not compare with this run's: ${list}; their dirs in ${BEST_DIR}/ are deleted when the next best checkpoint is written`;
  }

  private get dir(): string {
    return join(this.cfg.run.dir, BEST_DIR);
  }

  /** The kept entries, best first. */
  get scores(): readonly BestEntry[] {
    return this.entries;
  }

  /** Whether a checkpoint at `step` scoring `fd` would be kept. */
  qualifies(step: number, fd: number): boolean {
    const others = this.entries.filter((e) => e.step !== step);
    if (!Number.isFinite(fd)) return false;
    if (others.length < this.k) return true;
    const worst = others[others.length - 1];
    return byScore({ ...worst, step, fd }, worst) < 0;
  }

  /**
   * Offers the checkpoint of `snapshot` scored `fd`. If it ranks among the k best it is
   * written (atomically, as any checkpoint), the ones that drop out are deleted, and
   * scores.json and the `best` link are replaced. Returns whether it was kept.
   */
  async offer(snapshot: CheckpointData, fd: number): Promise<boolean> {
    const step = snapshot.step;
    if (!this.qualifies(step, fd)) return false;
    await mkdir(this.dir, { recursive: true });
    const path = await writeCheckpoint(this.dir, this.cfg, snapshot, Number.POSITIVE_INFINITY);
    const entry: BestEntry = {
      step,
      fd,
      name: basename(path),
      configHash: this.hash,
      n: this.cfg.eval?.n ?? 0,
      seed: this.cfg.eval?.seed ?? 0,
      ...(metricOfConfig(this.cfg) === "fid" ? { metric: "fid" as const } : {}),
    };
    this.entries = [...this.entries.filter((e) => e.step !== step), entry].sort(byScore);
    const dropped = this.entries.slice(this.k);
    this.entries = this.entries.slice(0, this.k);
    await this.writeScores();
    await this.link(this.entries[0].name);
    const keep = new Set(this.entries.map((e) => e.name));
    for (const e of dropped) if (!keep.has(e.name)) await removeDir(this.dir, e.name);
    // Checkpoints left by another trajectory, or by a crash between write and scores.
    for (const name of await readdir(this.dir)) {
      if (/^ckpt-\d{8}$/.test(name) && !keep.has(name)) await removeDir(this.dir, name);
    }
    return true;
  }

  private async writeScores(): Promise<void> {
    const tmp = join(this.dir, `.${SCORES}.${process.pid}`);
    await writeFile(tmp, `${JSON.stringify(this.entries, null, 2)}\n`);
    await rename(tmp, join(this.dir, SCORES));
  }

  /** Points <run dir>/best at best-checkpoints/<name> (a relative link, replaced atomically). */
  private async link(name: string): Promise<void> {
    const tmp = join(this.cfg.run.dir, `.${BEST_LINK}.${process.pid}`);
    await rm(tmp, { force: true });
    await symlink(join(BEST_DIR, name), tmp);
    await rename(tmp, join(this.cfg.run.dir, BEST_LINK));
  }
}

async function removeDir(dir: string, name: string): Promise<void> {
  const trash = join(dir, `.trash-${name}-${process.pid}`);
  try {
    await rename(join(dir, name), trash);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  await rm(trash, { recursive: true, force: true });
}
