// The replicated log: a JetStream stream (AGON_LOG_<run>, subject
// agon.<run>.log) of entries (entry.ts), each cut into chunks under the
// server's max_payload. The leader appends with an expected last sequence, so
// an append from a deposed leader fails once anyone else has written; followers
// read it with an ordered consumer and reassemble entries.
import {
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  StorageType,
} from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { decodeEntry, encodeEntry, type LogEntry } from "./entry.js";

/** An append lost its compare-and-set: another leader wrote to the log. */
export class LogFencedError extends Error {
  override name = "LogFencedError";
}

/** The stream name and subject of run `runId`'s log. */
export function logNames(runId: string): { stream: string; subject: string } {
  return { stream: `AGON_LOG_${runId}`, subject: `agon.${runId}.log` };
}

export class ReplicatedLog {
  /** The stream's last sequence as this writer knows it (the expected last sequence of the next append). */
  lastSeq = 0;
  private readonly chunkBytes: number;

  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly names: { stream: string; subject: string },
    maxPayload: number,
  ) {
    // Room for headers under the server's max_payload.
    this.chunkBytes = Math.max(64 * 1024, Math.min(1024 * 1024, maxPayload) - 8192);
  }

  /** Opens (creating when missing) run `runId`'s log stream. Throws when JetStream is off. */
  static async open(nc: NatsConnection, runId: string): Promise<ReplicatedLog> {
    const jsm = await jetstreamManager(nc);
    const names = logNames(runId);
    try {
      await jsm.streams.info(names.stream);
    } catch {
      await jsm.streams.add({
        name: names.stream,
        subjects: [names.subject],
        storage: StorageType.File,
      });
    }
    return new ReplicatedLog(jetstream(nc), jsm, names, nc.info?.max_payload ?? 1024 * 1024);
  }

  /** The stream's last sequence now (0 when empty). */
  async tail(): Promise<number> {
    const info = await this.jsm.streams.info(this.names.stream);
    return info.state.last_seq;
  }

  /**
   * Appends `entry` after `lastSeq`; resolves the sequence of its first chunk.
   * Rejects with LogFencedError when the stream has moved past `lastSeq`
   * (another leader appended), with other errors when NATS fails.
   */
  async append(entry: LogEntry): Promise<number> {
    const bytes = encodeEntry(entry);
    const n = Math.max(1, Math.ceil(bytes.length / this.chunkBytes));
    let first = 0;
    for (let i = 0; i < n; i++) {
      const h = headers();
      h.set("Agon-Chunk", `${i}/${n}`);
      h.set("Agon-Epoch", String(entry.epoch));
      try {
        const ack = await this.js.publish(
          this.names.subject,
          bytes.subarray(i * this.chunkBytes, (i + 1) * this.chunkBytes),
          { headers: h, expect: { lastSequence: this.lastSeq } },
        );
        this.lastSeq = ack.seq;
        if (i === 0) first = ack.seq;
      } catch (err) {
        const e = err as { code?: number; message?: string };
        if (e.code === 10071 || /wrong last sequence/i.test(e.message ?? ""))
          throw new LogFencedError(`the log moved past sequence ${this.lastSeq}`);
        throw err;
      }
    }
    return first;
  }

  /** Drops every message before sequence `seq` (an older snapshot and its phases). */
  async purgeBefore(seq: number): Promise<void> {
    await this.jsm.streams.purge(this.names.stream, { seq });
  }

  /**
   * Reads entries from sequence `from` on, calling `onEntry` with each
   * complete one and the sequence of its last chunk, in order; a partial
   * entry (its writer was replaced mid-append) is skipped. Returns a handle to stop.
   */
  async follow(
    from: number,
    onEntry: (entry: LogEntry, lastSeq: number) => Promise<void> | void,
    onSeq: (seq: number) => void,
  ): Promise<{ stop(): void; done: Promise<void> }> {
    const consumer = await this.js.consumers.get(this.names.stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: Math.max(1, from),
    });
    const messages: ConsumerMessages = await consumer.consume();
    let parts: Uint8Array[] = [];
    let expected = 0;
    const done = (async () => {
      for await (const m of messages) {
        const [iStr, nStr] = (m.headers?.get("Agon-Chunk") ?? "").split("/");
        const i = Number(iStr);
        const n = Number(nStr);
        if (i === 0) {
          parts = [];
          expected = 0;
        }
        if (Number.isInteger(i) && Number.isInteger(n) && i === expected && i === parts.length) {
          parts.push(m.data);
          expected = i + 1;
          if (expected === n) {
            expected = 0;
            const entry = decodeEntry(Buffer.concat(parts));
            parts = [];
            await onEntry(entry, m.seq);
          }
        } else {
          parts = [];
          expected = 0;
        }
        onSeq(m.seq);
      }
    })();
    return { stop: () => void messages.close(), done };
  }
}
