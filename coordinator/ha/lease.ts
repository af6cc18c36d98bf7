// Leadership of a run: a lease in a JetStream key-value bucket (agon_<run>,
// key "leader"). Every write is a compare-and-set on the key's revision, so two
// coordinators never both believe a write of theirs succeeded; the value's
// epoch grows by one with each new leader and fences the old one out.
import type { KV } from "@nats-io/kv";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";

/** What the bucket holds under "leader". */
export interface LeaseValue {
  /** Fencing epoch: 1 for the first leader, +1 per takeover. */
  epoch: number;
  /** Who holds it (host name and pid), for log lines. */
  holder: string;
  /** The leader's gRPC address, for workers and people. */
  address: string;
  /** Stream sequence of the newest snapshot entry in the log; where a new follower starts. */
  snapshotSeq: number;
  /**
   * Set by a leader that let go on purpose (its run finished, or it was
   * stopped with SIGTERM/SIGINT): the lease is free now, without waiting it out.
   */
  released?: boolean;
}

/** The lease as last read: its value and the key's revision (for compare-and-set). */
export interface LeaseRecord {
  value: LeaseValue;
  revision: number;
}

/** Default lease (ms): a leader silent this long is replaced. Renewed every quarter of it. */
export const DEFAULT_LEASE_MS = 1500;

/** The run's lease bucket. */
export class LeaseBucket {
  private constructor(private readonly kv: KV) {}

  /** Opens (creating when missing) the bucket agon_<runId>. Throws when JetStream is off. */
  static async open(nc: NatsConnection, runId: string): Promise<LeaseBucket> {
    const kv = await new Kvm(nc).create(`agon_${runId}`, { history: 1 });
    return new LeaseBucket(kv);
  }

  /** The current lease, or null when no leader ever held one. */
  async read(): Promise<LeaseRecord | null> {
    const e = await this.kv.get("leader");
    if (e?.operation !== "PUT" || e.length === 0) return null;
    return { value: e.json<LeaseValue>(), revision: e.revision };
  }

  /**
   * Writes `value` if the key is still at `revision` (null: if it does not
   * exist yet). Resolves the new revision, or null when someone else wrote
   * first; rejects on other errors (NATS unreachable).
   */
  async write(value: LeaseValue, revision: number | null): Promise<number | null> {
    const data = JSON.stringify(value);
    try {
      return revision === null
        ? await this.kv.create("leader", data)
        : await this.kv.update("leader", data, revision);
    } catch (err) {
      if (isCasFailure(err)) return null;
      throw err;
    }
  }
}

/** A compare-and-set that lost (the key moved on, or already exists). */
function isCasFailure(err: unknown): boolean {
  const e = err as { message?: string; code?: number; cause?: { code?: number } };
  const code = e.cause?.code ?? e.code;
  return (
    code === 10071 || code === 10164 || /wrong last sequence|key exists/i.test(e.message ?? "")
  );
}

/**
 * The leader's hold on the lease: renewed every leaseMs/4 by compare-and-set.
 * `valid()` is true only within leaseMs of the last renewal that succeeded,
 * measured from when it was sent on this process's monotonic clock; a follower
 * waits at least leaseMs after it last saw the key change, so a leader that
 * was frozen (SIGSTOP, a partition) knows it may have been replaced before it
 * does anything. `onLost` runs once, when a renewal finds a newer writer.
 */
export class Leadership {
  private timer: NodeJS.Timeout | undefined;
  private validUntil: number;
  private lost = false;
  private renewing: Promise<void> | null = null;

  constructor(
    private readonly bucket: LeaseBucket,
    private record: LeaseRecord,
    readonly leaseMs: number,
    private readonly onLost: (reason: string) => void,
    acquiredAt: number,
  ) {
    this.validUntil = acquiredAt + leaseMs;
    this.timer = setInterval(() => void this.renew(), Math.max(10, Math.floor(leaseMs / 4)));
  }

  get epoch(): number {
    return this.record.value.epoch;
  }

  /** Whether this process may still act as leader (publish, apply, append). */
  valid(): boolean {
    return !this.lost && performance.now() < this.validUntil;
  }

  /** Records where the newest snapshot entry starts; written with the next renewal. */
  set snapshotSeq(seq: number) {
    this.record = { ...this.record, value: { ...this.record.value, snapshotSeq: seq } };
  }

  /** One compare-and-set renewal (also run on a timer); joins the one in flight, if any. */
  renew(): Promise<void> {
    this.renewing ??= this.renewOnce().finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }

  private async renewOnce(): Promise<void> {
    if (this.lost) return;
    const sent = performance.now();
    let revision: number | null;
    try {
      revision = await this.bucket.write(this.record.value, this.record.revision);
    } catch {
      return; // NATS unreachable: the lease simply runs out; a later renewal may still win
    }
    if (this.lost) return;
    if (revision === null) {
      this.lost = true;
      this.stop();
      const now = await this.bucket.read().catch(() => null);
      this.onLost(
        now
          ? `epoch ${now.value.epoch} is held by ${now.value.holder} at ${now.value.address}`
          : "the lease was taken",
      );
      return;
    }
    this.record = { ...this.record, revision };
    this.validUntil = sent + this.leaseMs;
  }

  /**
   * Lets go of the lease on purpose (the run finished, or a planned stop):
   * stops renewing and marks the value released, by compare-and-set, so a
   * standby takes over at once instead of waiting the lease out. After it,
   * valid() is false. Nothing happens when the lease was already lost; a
   * failed write (NATS gone, someone else wrote) is ignored: the lease then
   * lapses as it would have.
   */
  async release(): Promise<void> {
    this.stop();
    await this.renewing;
    if (this.lost) return;
    this.lost = true;
    await this.bucket
      .write({ ...this.record.value, released: true }, this.record.revision)
      .catch(() => null);
  }

  /** Stops renewing (the lease lapses within leaseMs). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** How often a follower reads the lease while it waits for a lapse (ms): a released lease is seen this fast. */
export function pollMs(leaseMs: number): number {
  return Math.max(10, Math.min(100, Math.floor(leaseMs / 8)));
}

/**
 * Watches the lease from a follower: reads it every pollMs(leaseMs) and
 * reports the record once its revision has not changed for leaseMs (the
 * leader stopped renewing), at once when the leader released it, or null
 * when stopped.
 */
export async function awaitLapse(
  bucket: LeaseBucket,
  leaseMs: number,
  stopped: () => boolean,
  onChange?: (r: LeaseRecord | null) => void,
): Promise<LeaseRecord | null> {
  let last: LeaseRecord | null = null;
  let changedAt = performance.now();
  for (;;) {
    if (stopped()) return null;
    const r = await bucket.read().catch(() => undefined);
    const now = performance.now();
    if (r?.value.released) return r;
    if (r !== undefined && (r?.revision ?? 0) !== (last?.revision ?? 0)) {
      last = r;
      changedAt = now;
      onChange?.(r);
    } else if (r !== undefined && now - changedAt >= leaseMs) {
      if (last) return last;
    }
    await new Promise((res) => setTimeout(res, pollMs(leaseMs)));
  }
}
