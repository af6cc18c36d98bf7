// A standby coordinator's loop: replay the leader's log into its own
// TrainingState (checking the weight hashes after every entry) and record each
// phase as the leader did, until the leader's lease lapses; then claim the
// lease with the next epoch, read the log to its end and hand over to serve.
import type { RunRecorder } from "../recorder.js";
import { trimAfterCheckpoint } from "../rundir.js";
import type { TrainingState } from "../state.js";
import type { EntryHashes, LogEntry } from "./entry.js";
import { awaitLapse, type LeaseBucket, type LeaseRecord, pollMs } from "./lease.js";
import type { ReplicatedLog } from "./log.js";

/** What the follower needs from the coordinator around it. */
export interface FollowerHost {
  readonly state: TrainingState;
  readonly recorder: RunRecorder;
  readonly runDir: string;
  readonly holder: string;
  readonly address: string;
  /** configHash of the run's config (coordinator/checkpoint.ts); a snapshot of another config is refused. */
  readonly configHash: string;
  log(line: string): void;
  /** Logs a line and publishes the event. */
  event(type: string, message: string, fields: object): void;
  /** Asks the leader to append a snapshot entry soon (after its phase in flight). */
  requestSnapshot(): void;
}

/** While a resync waits for the leader's snapshot, the request is repeated this often (ms). */
const RESYNC_RETRY_MS = 5000;

/** The lease won by this follower: its record, and when the winning write was sent (performance.now()). */
export interface Takeover {
  record: LeaseRecord;
  sentAt: number;
  /** Whether the state came from the log (false: no snapshot was seen; resume from a checkpoint). */
  inMemory: boolean;
}

/** What replay() did. */
export interface Replay {
  /** Phases applied from the log (0: the state was already as far as the log). */
  applied: number;
  /** Whether a snapshot entry of the log replaced the state (it was ahead of it). */
  restored: boolean;
}

/** The standby's weights differ from the leader's after an entry: it refuses to go on. */
export class StandbyMismatchError extends Error {
  override name = "StandbyMismatchError";
}

export class Follower {
  /** A snapshot has been applied: the state is the leader's. */
  synced = false;
  /** Sequence of the last log message read and of the last entry applied. */
  private readSeq = 0;
  /** Highest epoch seen in the log; entries of lower epochs (a deposed leader) are ignored. */
  private maxEpoch = 0;
  private failure: Error | null = null;
  private stopped = false;
  /** Phases applied since the follower started. */
  applied = 0;
  private announcedInSync = false;
  /**
   * replay() mode: a snapshot entry replaces the state only when it is ahead
   * of it (the state came from this run dir's own checkpoint).
   */
  private keepNewer = false;
  /** Whether replay() restored a snapshot. */
  private restored = false;
  /** A hash mismatch made this follower drop its state; it waits for the leader's next snapshot. */
  private resyncing: NodeJS.Timeout | undefined;
  /** Phases applied with matching hashes since the last snapshot restored; a mismatch at 0 is not resynced again. */
  private cleanSinceSnapshot = 0;
  /** Resyncs done (a mismatch answered with the leader's snapshot). */
  resyncs = 0;

  constructor(
    private readonly host: FollowerHost,
    private readonly hlog: ReplicatedLog,
    private readonly bucket: LeaseBucket,
    private readonly leaseMs: number,
  ) {}

  /** Stops following (the coordinator is stopping). */
  stop(): void {
    this.stopped = true;
    clearInterval(this.resyncing);
  }

  /**
   * Follows until the run is done ("done"), the follower is stopped ("stopped"),
   * or it won the lease (a Takeover). Rejects with StandbyMismatchError.
   */
  async run(): Promise<Takeover | "done" | "stopped"> {
    const { host } = this;
    // A released lease is an earlier run's (or a leader's that stopped on purpose): wait for a live one.
    let lease = await this.bucket.read();
    let nextLog = performance.now() + 2000;
    while ((!lease || lease.value.released) && !this.stopped) {
      if (performance.now() >= nextLog) {
        host.log(
          `standby: waiting for a leader to take the lease (${lease ? `released by ${lease.value.holder}, epoch ${lease.value.epoch}` : "no leader has held it yet"})`,
        );
        nextLog = performance.now() + 10_000;
      }
      await sleep(pollMs(this.leaseMs));
      lease = await this.bucket.read();
    }
    if (!lease || lease.value.released) return "stopped";
    host.log(
      `standby: following epoch ${lease.value.epoch} (${lease.value.holder} at ${lease.value.address}) from log sequence ${lease.value.snapshotSeq}`,
    );
    const reader = await this.readFrom(lease.value.snapshotSeq);
    try {
      for (;;) {
        const lapsed = await awaitLapse(
          this.bucket,
          this.leaseMs,
          () => this.stopped || this.failure !== null || host.state.done,
        );
        if (this.failure) throw this.failure;
        if (host.state.done) return "done";
        if (!lapsed) return "stopped";
        if (lapsed.value.released) {
          // Let go on purpose: a finished run's last phases may still be on their way here.
          await this.readToTail();
          if (host.state.done) return "done";
        }
        const won = await this.claim(lapsed);
        if (won) return won;
      }
    } finally {
      reader.stop();
    }
  }

  /** Tries to take over from a lapsed lease; null when another follower won. */
  private async claim(lapsed: LeaseRecord): Promise<Takeover | null> {
    const { state } = this.host;
    const old = lapsed.value;
    const why = old.released ? "released its lease" : `silent for ${this.leaseMs} ms`;
    this.host.event(
      "leaderLost",
      `leader of epoch ${old.epoch} (${old.holder}) ${why}; taking over at step ${state.step} phase ${state.phase}`,
      {
        epoch: old.epoch,
        holder: old.holder,
        step: state.step,
        phase: state.phase,
        released: old.released === true,
      },
    );
    const value = {
      epoch: old.epoch + 1,
      holder: this.host.holder,
      address: this.host.address,
      snapshotSeq: old.snapshotSeq,
    };
    const sentAt = performance.now();
    const revision = await this.bucket.write(value, lapsed.revision);
    if (revision === null) {
      this.host.log(`standby: another coordinator took epoch ${value.epoch}; following it`);
      return null;
    }
    // Everything the old leader appended before it lapsed is applied before this one serves.
    this.hlog.lastSeq = await this.readToTail();
    this.maxEpoch = value.epoch;
    return { record: { value, revision }, sentAt, inMemory: this.synced };
  }

  /** Waits until every message up to the log's current tail is read and applied; resolves the tail. Throws what applying threw. */
  private async readToTail(): Promise<number> {
    const tail = await this.hlog.tail();
    while (this.readSeq < tail && !this.failure) await sleep(2);
    if (this.failure) throw this.failure;
    return tail;
  }

  /**
   * A leader's catch-up before it leads (it won the lease; nobody else
   * appends): reads the log from sequence `from` (the lease's snapshot) to its
   * tail and applies what is ahead of the state, checking every hash. A
   * snapshot entry replaces the state only when it is ahead of it (the state
   * came from a checkpoint of this run dir, or step 0); the phases after it
   * that are ahead of the state are applied with this process's optimizer and
   * recorded in its run dir. Rejects with StandbyMismatchError (a hash or the
   * config differs) or what NATS threw.
   */
  async replay(from: number): Promise<Replay> {
    this.keepNewer = true;
    this.announcedInSync = true; // a leader catching up is no standby
    const reader = await this.readFrom(from);
    try {
      await this.readToTail();
    } finally {
      reader.stop();
    }
    return { applied: this.applied, restored: this.restored };
  }

  /** Reads the log from sequence `from` on, applying each entry; a reader failure is kept in `failure`. */
  private async readFrom(from: number) {
    const reader = await this.hlog.follow(
      from,
      (entry, seq) => this.apply(entry, seq),
      (seq) => {
        this.readSeq = seq;
      },
    );
    reader.done.catch((err: Error) => {
      this.failure ??= err;
    });
    return reader;
  }

  private apply(entry: LogEntry, seq: number): Promise<void> | undefined {
    if (entry.epoch < this.maxEpoch) {
      this.host.log(
        `standby: ignored a log entry of epoch ${entry.epoch} (epoch ${this.maxEpoch} leads)`,
      );
      return;
    }
    this.maxEpoch = entry.epoch;
    const { state } = this.host;
    if (entry.type === "snapshot") {
      if (entry.configHash !== undefined && entry.configHash !== this.host.configHash) {
        throw new StandbyMismatchError(
          `the log's snapshot at step ${entry.data.step} is of another config (config hash ${entry.configHash.slice(0, 12)}…, this one's ${this.host.configHash.slice(0, 12)}…); refusing to follow it (use the leader's config, or --fresh)`,
        );
      }
      const ahead =
        entry.data.step > state.step ||
        (entry.data.step === state.step && entry.data.phase > state.phase);
      if (this.keepNewer && !ahead) {
        // This run dir's checkpoint is as far as the snapshot: its phases past it are checked as they come.
        this.synced = true;
        return;
      }
      state.restore(entry.data);
      this.restored = this.keepNewer;
      this.check(entry.hashes, `snapshot at step ${entry.data.step}`);
      this.synced = true;
      this.cleanSinceSnapshot = 0;
      if (this.resyncing) {
        clearInterval(this.resyncing);
        this.resyncing = undefined;
        this.resyncs += 1;
        this.announcedInSync = false;
        this.host.log(
          `standby: resynced from the leader's snapshot at step ${entry.data.step} phase ${entry.data.phase}`,
        );
      }
      // What this run dir recorded past the snapshot (an earlier life) is cut, as on resume.
      trimAfterCheckpoint(this.host.runDir, entry.data);
      this.inSync(seq);
      return;
    }
    if (!this.synced) return;
    const u = entry.update;
    if (u.step < state.step || (u.step === state.step && u.phase < state.phase)) return;
    const summary = state.applyUpdate(u);
    try {
      this.check(entry.hashes, `step ${u.step} phase ${u.phase}`);
    } catch (err) {
      // A standby drops its state and asks the leader for a snapshot, once per clean
      // stretch: a mismatch right after a resync is no accident (another backend, other
      // code), and it refuses as a leader catching up does.
      if (this.keepNewer || this.cleanSinceSnapshot === 0) throw err;
      this.resync((err as Error).message);
      return;
    }
    this.cleanSinceSnapshot += 1;
    this.applied += 1;
    return this.host.recorder
      .afterPhase(state, summary, entry.metrics)
      .then(() => this.inSync(seq));
  }

  /** Drops the state (phases are skipped until a snapshot comes) and asks the leader for a snapshot. */
  private resync(why: string): void {
    this.synced = false;
    this.host.event(
      "standbyResync",
      `standby: ${why}; asking the leader for a snapshot to resync from`,
      {
        reason: why,
      },
    );
    this.host.requestSnapshot();
    clearInterval(this.resyncing);
    this.resyncing = setInterval(() => this.host.requestSnapshot(), RESYNC_RETRY_MS);
  }

  private inSync(seq: number): void {
    if (this.announcedInSync) return;
    this.announcedInSync = true;
    const { state } = this.host;
    this.host.event(
      "standbyInSync",
      `standby in sync with the leader at step ${state.step} phase ${state.phase} (log sequence ${seq})`,
      { step: state.step, phase: state.phase, seq },
    );
  }

  /** Compares the state's hashes with the leader's; throws StandbyMismatchError. */
  private check(expected: EntryHashes, what: string): void {
    const mine = this.host.state.hashes();
    for (const k of ["G", "D", "ema"] as const) {
      const want = expected[k];
      if (want !== undefined && mine[k] !== want) {
        throw new StandbyMismatchError(
          `${k} after ${what} hashes to ${mine[k]?.slice(0, 12)}… here, to ${want.slice(0, 12)}… in the leader's log; refusing to follow it (run with the leader's config and backend, or --fresh)`,
        );
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
