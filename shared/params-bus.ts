// Parameters over NATS: after every optimizer update the coordinator publishes
// the updated network on agon.<run>.params.<net> as chunked core-NATS messages
// with version, dtype (transport.params) and sha256 in headers; workers
// reassemble and verify them. A missed or corrupted chunk just means the worker
// fetches over gRPC instead.
import { headers, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { subjects } from "./nats.js";
import type { Dtype } from "./precision.js";
import {
  ChunkAssembler,
  checkDtype,
  chunksOf,
  type EncodedArray,
  encodeArray,
  WireError,
} from "./wire.js";

export type Net = "G" | "D";

export interface ParamSet {
  net: Net;
  version: number;
  /** As decoded from the wire (rounded to the run's transport.params). */
  weights: Float32Array;
  /** sha256 (hex) of the weights' encoded bytes, verified on arrival. */
  checksum: string;
}

/** Versions of each network kept by a ParamSubscriber (most recent arrivals). */
const KEEP_VERSIONS = 3;

/** Publishes a network's parameters (a Float32Array travels as fp32); returns the bytes sent. */
export function publishParams(
  nc: NatsConnection,
  runId: string,
  net: Net,
  version: number,
  weights: Float32Array | EncodedArray,
): number {
  const encoded = weights instanceof Float32Array ? encodeArray(weights, "fp32") : weights;
  const chunks = chunksOf(encoded.bytes);
  let bytes = 0;
  chunks.forEach((data, index) => {
    const h = headers();
    h.set("Agon-Version", String(version));
    h.set("Agon-Sha256", encoded.checksum);
    h.set("Agon-Length", String(encoded.length));
    h.set("Agon-Dtype", encoded.dtype);
    h.set("Agon-Chunk", String(index));
    h.set("Agon-Chunks", String(chunks.length));
    nc.publish(subjects(runId).params(net), data, { headers: h });
    bytes += data.byteLength;
  });
  return bytes;
}

/**
 * Keeps the last few verified versions of each network seen on NATS (by
 * arrival, so a forged "version 10⁹" cannot shadow the real ones). Anyone who
 * can publish on NATS can still offer self-consistent weights, so callers
 * compare `checksum` with the one the coordinator sent over gRPC before use.
 */
export class ParamSubscriber {
  private readonly recent: Record<Net, ParamSet[]> = { G: [], D: [] };
  private readonly pending = new Map<Net, { version: number; assembler: ChunkAssembler }>();
  private readonly waiters: Array<{
    net: Net;
    version: number;
    resolve: (p: ParamSet | null) => void;
    timer: NodeJS.Timeout;
  }> = [];
  private readonly subs: Subscription[] = [];
  /** Chunks rejected (bad headers, out of order, checksum): counted for metrics and tests. */
  rejected = 0;

  constructor(
    nc: NatsConnection | null,
    runId: string,
    private readonly sizes: Record<Net, number>,
    /** The run's transport.params: chunks in any other encoding are dropped. */
    private readonly dtype: Dtype = "fp32",
    private readonly log: (line: string) => void = () => {},
  ) {
    for (const net of ["G", "D"] as const) {
      if (!nc) break;
      const sub = nc.subscribe(subjects(runId).params(net), {
        callback: (err, msg) => {
          if (err) return;
          this.onChunk(net, msg.headers, msg.data);
        },
      });
      this.subs.push(sub);
    }
  }

  /** Puts parameters obtained another way (FetchParams) in the same cache. */
  offer(p: ParamSet): void {
    const list = this.recent[p.net].filter((x) => x.version !== p.version);
    list.push(p);
    this.recent[p.net] = list.slice(-KEEP_VERSIONS);
    this.wake();
  }

  get(net: Net, version: number): ParamSet | undefined {
    return this.recent[net].find((p) => p.version === version);
  }

  /** Drops a cached version that turned out not to be the coordinator's. */
  discard(net: Net, version: number): void {
    this.recent[net] = this.recent[net].filter((p) => p.version !== version);
  }

  /**
   * Resolves with the parameters once that version arrives, or null after
   * `ms` without a chunk of it: a big network's broadcast that is still
   * coming in is waited for (each of its chunks restarts the wait), rather
   * than fetched a second time over gRPC.
   */
  waitFor(net: Net, version: number, ms: number): Promise<ParamSet | null> {
    const have = this.get(net, version);
    if (have) return Promise.resolve(have);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          resolve(null);
        }
      }, ms);
      const waiter = { net, version, resolve, timer };
      this.waiters.push(waiter);
    });
  }

  /** Forgets everything cached, e.g. after the coordinator resumed from an older checkpoint. */
  reset(): void {
    this.recent.G = [];
    this.recent.D = [];
    this.pending.clear();
  }

  close(): void {
    for (const s of this.subs) s.unsubscribe();
  }

  private onChunk(net: Net, h: { get(k: string): string } | undefined, data: Uint8Array): void {
    try {
      if (!h) throw new WireError("parameter chunk without headers");
      const version = Number(h.get("Agon-Version"));
      const index = Number(h.get("Agon-Chunk"));
      const chunks = Number(h.get("Agon-Chunks"));
      const length = Number(h.get("Agon-Length"));
      if (!Number.isSafeInteger(version) || version < 0)
        throw new WireError("bad Agon-Version header");
      if (length !== this.sizes[net])
        throw new WireError(
          `${net} chunk announces ${length} values, model has ${this.sizes[net]}`,
        );
      checkDtype(h.get("Agon-Dtype"), this.dtype, `${net} chunk`);
      let p = this.pending.get(net);
      if (index === 0) {
        p = {
          version,
          assembler: new ChunkAssembler(length, chunks, h.get("Agon-Sha256"), this.dtype),
        };
        this.pending.set(net, p);
      }
      if (!p || p.version !== version)
        throw new WireError(`chunk ${index} of ${net} v${version} without its start`);
      p.assembler.add(index, data);
      for (const w of this.waiters) if (w.net === net && w.version === version) w.timer.refresh();
      if (p.assembler.complete) {
        this.pending.delete(net);
        const weights = p.assembler.finish(true);
        this.offer({ net, version, weights, checksum: p.assembler.checksum });
      }
    } catch (err) {
      this.pending.delete(net);
      this.rejected += 1;
      this.log(
        `params: dropped a ${net} chunk from NATS (${(err as Error).message}); will fetch over gRPC if needed`,
      );
    }
  }

  private wake(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i];
      const p = this.get(w.net, w.version);
      if (p) {
        this.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(p);
      }
    }
  }
}
