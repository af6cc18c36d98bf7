// Live progress for long runs: a redrawn status line on a terminal, a plain
// line every few seconds when output goes to a file or a pipe.
export interface ProgressInfo {
  step: number;
  total: number;
  dLoss: number | null;
  gLoss: number | null;
  dReal: number | null;
  dFake: number | null;
  workers?: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m${String(sec).padStart(2, "0")}s`;
  return `${sec}s`;
}

const fmt = (v: number | null | undefined, digits = 3): string =>
  v === null || v === undefined ? "-" : v.toFixed(digits);

export class Progress {
  private readonly started: number;
  private readonly startStep: number;
  private lastPrint = 0;
  private readonly tty: boolean;

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly now: () => number = () => performance.now(),
    startStep = 0,
    private readonly plainEveryMs = 5000,
  ) {
    this.started = now();
    this.startStep = startStep;
    this.tty = Boolean(out.isTTY);
  }

  /** The status line for the given state (also what tests read). */
  line(info: ProgressInfo): string {
    const elapsed = (this.now() - this.started) / 1000;
    const done = info.step - this.startStep;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const eta = rate > 0 ? (info.total - info.step) / rate : Number.NaN;
    // A run resumed past its steps shows a full bar, not a negative one.
    const pct = info.total > 0 ? Math.min(1, info.step / info.total) : 0;
    const width = 20;
    const filled = Math.round(pct * width);
    const bar = `${"#".repeat(filled)}${".".repeat(width - filled)}`;
    const workers = info.workers === undefined ? "" : ` | workers ${info.workers}`;
    return (
      `step ${info.step}/${info.total} [${bar}] ${(pct * 100).toFixed(0)}%` +
      ` | D ${fmt(info.dLoss)} G ${fmt(info.gLoss)} | D(x) ${fmt(info.dReal)} D(G(z)) ${fmt(info.dFake)}` +
      ` | ${rate.toFixed(2)} steps/s${workers} | ETA ${formatDuration(eta)}`
    );
  }

  update(info: ProgressInfo, force = false): void {
    const t = this.now();
    if (this.tty) {
      if (!force && t - this.lastPrint < 100) return;
      this.out.write(`\r\x1b[2K${this.line(info)}`);
    } else {
      if (!force && t - this.lastPrint < this.plainEveryMs) return;
      this.out.write(`${this.line(info)}\n`);
    }
    this.lastPrint = t;
  }

  /** Leaves the final state on its own line. */
  finish(info: ProgressInfo): void {
    this.update(info, true);
    if (this.tty) this.out.write("\n");
  }
}
