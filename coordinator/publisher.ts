// What the coordinator sends out on NATS: each network's parameters after every
// update (kept encoded, so FetchParams serves the same bytes and checksum), and
// the run's events, metrics and sample grids, which in-process readers (the
// dashboard of a run without NATS) can subscribe to as well. A publish never throws.
import type { NatsConnection } from "@nats-io/transport-node";
import type { RunConfig } from "../shared/config.js";
import { subjects } from "../shared/nats.js";
import { type Net, publishParams } from "../shared/params-bus.js";
import { type EncodedArray, encodeArray } from "../shared/wire.js";
import type { RunFeed } from "./http.js";

/** One network as last published. */
export interface Published {
  version: number;
  /** The weights as they travel (transport.params), with the sha256 of those bytes. */
  encoded: EncodedArray;
}

export class Publisher implements RunFeed {
  private readonly published = new Map<Net, Published>();
  private nc: NatsConnection | null = null;
  /** The generator of the current evaluation (FetchParams net "EVAL"), fp32, by step. */
  private evaluated: Published | null = null;
  /** In-process subscribers by subject (see subscribe). */
  private readonly local = new Map<string, Set<(data: Uint8Array) => void>>();
  /** Parameter bytes sent so far (NATS broadcasts and FetchParams replies). */
  bytesOut = 0;

  constructor(
    private readonly cfg: RunConfig,
    private readonly log: (line: string) => void,
  ) {}

  /** The NATS connection to publish on; nothing is sent before it is set. */
  attach(nc: NatsConnection): void {
    this.nc = nc;
  }

  /** Whether messages can still go out (connected, not closing). */
  get open(): boolean {
    return this.nc !== null && !this.nc.isClosed() && !this.nc.isDraining();
  }

  /**
   * Encodes `weights` (version `version` of `net`) as transport.params says,
   * keeps them for FetchParams and broadcasts them on agon.<run>.params.<net>.
   */
  params(net: Net, version: number, weights: Float32Array): void {
    const dtype = this.cfg.transport.params;
    // fp32 encodes as a view of the array: copy it, the master weights change with the next update.
    const encoded = encodeArray(dtype === "fp32" ? weights.slice() : weights, dtype);
    this.published.set(net, { version, encoded });
    if (!this.open) return;
    this.bytesOut += publishParams(this.nc!, this.cfg.run.id, net, version, encoded);
  }

  /**
   * Keeps the generator an evaluation at `step` evaluates (the EMA generator when the
   * run has one), always as fp32 so the workers' statistics are those of `agon eval`
   * on the checkpoint. Served by FetchParams only (never broadcast: it is not trained
   * on, and each worker fetches it once per evaluation). Returns its sha256.
   */
  evaluation(step: number, weights: Float32Array): string {
    this.evaluated = { version: step, encoded: encodeArray(weights.slice(), "fp32") };
    return this.evaluated.encoded.checksum;
  }

  /** The generator of the current evaluation, if any. */
  currentEvaluation(): Published | undefined {
    return this.evaluated ?? undefined;
  }

  /** The last published parameters of `net`, if any. */
  current(net: Net): Published | undefined {
    return this.published.get(net);
  }

  /** The sha256 of `net` at `version` when that is the published version, else "". */
  checksumOf(net: Net, version: number): string {
    const p = this.published.get(net);
    return p && p.version === version ? p.encoded.checksum : "";
  }

  /** Publishes an event (schema 1) on agon.<run>.events. */
  event(type: string, message: string, fields: object): void {
    const event = {
      schema: 1,
      runId: this.cfg.run.id,
      time: new Date().toISOString(),
      type,
      message,
      ...fields,
    };
    this.send(subjects(this.cfg.run.id).events, JSON.stringify(event));
  }

  /** Publishes one phase's metrics message on agon.<run>.metrics. */
  metrics(json: string): void {
    this.send(subjects(this.cfg.run.id).metrics, json);
  }

  /** Publishes a sample grid (PNG) on agon.<run>.samples. */
  samples(png: Uint8Array): void {
    this.send(subjects(this.cfg.run.id).samples, png);
  }

  /**
   * Delivers every later event, metrics message or sample grid on `subject` to
   * `onData` in this process, with or without NATS (parameters are not fed).
   */
  subscribe(subject: string, onData: (data: Uint8Array) => void): { unsubscribe(): void } {
    const listeners = this.local.get(subject) ?? new Set();
    this.local.set(subject, listeners);
    listeners.add(onData);
    return { unsubscribe: () => listeners.delete(onData) };
  }

  /** Hands the message to in-process subscribers, then publishes it unless the connection is going away. */
  private send(subject: string, data: string | Uint8Array): void {
    const listeners = this.local.get(subject);
    if (listeners?.size) {
      const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
      for (const onData of listeners) {
        try {
          onData(bytes);
        } catch (err) {
          this.log(`coordinator: a reader of ${subject} failed: ${(err as Error).message}`);
        }
      }
    }
    if (!this.open) return;
    // nats.js throws on a payload over the server's max_payload; a publish must
    // never take the coordinator down (events quote what peers sent).
    try {
      this.nc!.publish(subject, data);
    } catch (err) {
      this.log(`coordinator: could not publish on ${subject}: ${(err as Error).message}`);
    }
  }
}
