// What the coordinator sends out on NATS: each network's parameters after every
// update (kept encoded, so FetchParams serves the same bytes and checksum), and
// the run's events, metrics and sample grids. A publish never throws.
import type { NatsConnection } from "@nats-io/transport-node";
import type { RunConfig } from "../shared/config.js";
import { subjects } from "../shared/nats.js";
import { type Net, publishParams } from "../shared/params-bus.js";
import { type EncodedArray, encodeArray } from "../shared/wire.js";

/** One network as last published. */
export interface Published {
  version: number;
  /** The weights as they travel (transport.params), with the sha256 of those bytes. */
  encoded: EncodedArray;
}

export class Publisher {
  private readonly published = new Map<Net, Published>();
  private nc: NatsConnection | null = null;
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

  /** Publishes unless the connection is going away (stopping, or NATS gone for good). */
  private send(subject: string, data: string | Uint8Array): void {
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
