// A hostile gRPC client for fuzz tests. It holds the run's join token and
// joins under its own names, then sends malformed and unauthorised messages of
// every kind the coordinator must reject (chosen by a seeded PRNG, counted by
// category). "Outsider" identities never open a Work stream, so they never
// hold a microtask and even their well-formed gradients can only be refused;
// one "squatter" identity does open one, takes real microtasks and answers
// them only with garbage (NaN, bad checksums, a dropped stream), so its tasks
// must move on to the honest workers.
import * as grpc from "@grpc/grpc-js";
import { headers, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { CoordinatorClient } from "../../proto/gen/agon/v1/Coordinator.js";
import type { CoordinatorMessage__Output } from "../../proto/gen/agon/v1/CoordinatorMessage.js";
import type { GradientChunk } from "../../proto/gen/agon/v1/GradientChunk.js";
import type { GradientHeader } from "../../proto/gen/agon/v1/GradientHeader.js";
import type { ParamChunk__Output } from "../../proto/gen/agon/v1/ParamChunk.js";
import type { WorkerMessage } from "../../proto/gen/agon/v1/WorkerMessage.js";
import { microBatch, parseConfig, type RunConfig } from "../../shared/config.js";
import { sha256 } from "../../shared/hash.js";
import { subjects } from "../../shared/nats.js";
import { Rng } from "../../shared/rng.js";
import { phaseKind, phasesPerStep } from "../../shared/schedule.js";
import { callMetadata } from "../../shared/security.js";
import {
  CHANNEL_OPTIONS,
  CHUNK_BYTES,
  chunksOf,
  floatBytes,
  loadAgonProto,
} from "../../shared/wire.js";

type Net = "G" | "D";

interface Identity {
  name: string;
  workerId: string;
  session: string;
  joinedAt: number;
}

interface Payload {
  length: number;
  sha: string;
  chunks: Uint8Array[];
}

type Reply = { accepted: boolean; reason: string } | { code: number; details: string };

/** Outsiders re-join before their 2 s lease runs out, so their strikes keep counting. */
const REJOIN_AFTER_MS = 1500;
const CALL_DEADLINE_MS = 5000;

function payload(values: Float32Array): Payload {
  const chunks = chunksOf(values);
  return { length: values.length, sha: sha256(floatBytes(values)), chunks };
}

export class HostileClient {
  /** Hostile messages sent, by category. */
  readonly sent = new Map<string, number>();
  /** Replies to hostile gradient submissions that said accepted: must stay 0. */
  accepted = 0;
  /** Identities evicted after sending nothing but stale results: must stay 0. */
  staleEvictions = 0;
  private bursts = 0;
  /** Joins the hostile client made under its own names (not counted as hostile messages). */
  joins = 0;
  private readonly proto = loadAgonProto();
  private readonly client: CoordinatorClient;
  /** A client without the 2 MiB send limit, for messages over the coordinator's receive limit. */
  private readonly bigClient: CoordinatorClient;
  private readonly rng: Rng;
  private cfg!: RunConfig;
  private sizes!: Record<Net, number>;
  private payloads!: Record<Net, { valid: Payload; nan: Payload; inf: Payload }>;
  private status = { step: 0, phase: 0, workers: [] as string[], done: false };
  private readonly outsiders: Array<Identity | null>;
  /** Microtasks the squatter already answered with NaN: never twice, so no microtask looks like real divergence. */
  private readonly nanAnswered = new Set<string>();
  private stopped = false;
  private readonly pending = new Set<Promise<void>>();
  private readonly categories: Array<{ name: string; weight: number; run: () => Promise<void> }>;

  constructor(
    address: string,
    private readonly token: string,
    seed: number,
    outsiders = 3,
  ) {
    this.rng = new Rng(seed);
    const insecure = grpc.credentials.createInsecure();
    const Coordinator = this.proto.agon.v1.Coordinator;
    this.client = new Coordinator(
      address,
      insecure,
      CHANNEL_OPTIONS,
    ) as unknown as CoordinatorClient;
    this.bigClient = new Coordinator(address, insecure, {
      ...CHANNEL_OPTIONS,
      "grpc.max_send_message_length": -1,
    }) as unknown as CoordinatorClient;
    this.outsiders = Array.from({ length: outsiders }, () => null);
    this.categories = this.table();
  }

  get total(): number {
    let n = 0;
    for (const v of this.sent.values()) n += v;
    return n;
  }

  /** Learns the run config and network sizes (with a legitimate join and FetchParams). */
  async start(): Promise<void> {
    const id = await this.join("intruder-0");
    if (!id) throw new Error("hostile client: could not join with the token");
    this.outsiders[0] = id;
    this.sizes = {
      G: await this.fetchLength("G"),
      D: await this.fetchLength("D"),
    };
    const make = (n: number) => {
      const valid = new Float32Array(n);
      for (let i = 0; i < n; i++) valid[i] = (this.rng.nextFloat() - 0.5) * 1e-3;
      const nan = valid.slice();
      nan[this.rng.nextInt(n)] = Number.NaN;
      const inf = valid.slice();
      inf[n - 1] = this.rng.nextFloat() < 0.5 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
      return { valid: payload(valid), nan: payload(nan), inf: payload(inf) };
    };
    this.payloads = { G: make(this.sizes.G), D: make(this.sizes.D) };
  }

  /** Sends hostile messages (three at a time, plus the squatter) until `until` settles or stop(). */
  async run(until: Promise<unknown>): Promise<void> {
    let over = false;
    const end = () => {
      over = true;
    };
    void until.then(end, end);
    const done = () => over || this.stopped || this.status.done;
    const watcher = (async () => {
      while (!done()) {
        await this.refreshStatus();
        await sleep(50);
      }
    })();
    const loop = async () => {
      while (!done()) await this.pick().run();
    };
    await Promise.all([watcher, loop(), loop(), loop(), this.squatter(done)]);
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  stop(): void {
    this.stopped = true;
  }

  close(): void {
    this.client.close();
    this.bigClient.close();
  }

  /** Keeps track of a submission the squatter started, so run() waits for it. */
  private background(work: Promise<unknown> | (() => Promise<unknown>)): void {
    const p = (typeof work === "function" ? work() : work).then(
      () => {},
      () => {},
    );
    this.pending.add(p);
    void p.then(() => this.pending.delete(p));
  }

  private count(category: string, n = 1): void {
    this.sent.set(category, (this.sent.get(category) ?? 0) + n);
  }

  private pick() {
    const total = this.categories.reduce((s, c) => s + c.weight, 0);
    let x = this.rng.nextFloat() * total;
    for (const c of this.categories) {
      x -= c.weight;
      if (x < 0) return c;
    }
    return this.categories[this.categories.length - 1];
  }

  // -------------------------------------------------------------------------
  // What the hostile client knows about the run.

  private async refreshStatus(): Promise<void> {
    const reply = await new Promise<{
      step: number;
      phase: number;
      done: boolean;
      workers: Array<{ workerId: string }>;
    } | null>((resolve) =>
      this.client.Status({}, this.md(), { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res) =>
        resolve(err || !res ? null : res),
      ),
    );
    if (reply) {
      this.status = {
        step: reply.step,
        phase: reply.phase,
        done: reply.done,
        workers: reply.workers.map((w) => w.workerId),
      };
    }
  }

  /** Microtask ids of the current phase and the network its gradients are for. */
  private current(): { taskId: string; net: Net } {
    const { step, phase } = this.status;
    return {
      taskId: `${step}.${phase}.${this.rng.nextInt(this.cfg.shards)}`,
      net: phaseKind(this.cfg, phase),
    };
  }

  /** A microtask of an earlier phase (stale). */
  private stale(): { taskId: string; net: Net } {
    let { step, phase } = this.status;
    const back = 1 + this.rng.nextInt(3);
    for (let i = 0; i < back; i++) {
      if (phase > 0) phase -= 1;
      else if (step > 0) {
        step -= 1;
        phase = phasesPerStep(this.cfg) - 1;
      }
    }
    return {
      taskId: `${step}.${phase}.${this.rng.nextInt(this.cfg.shards)}`,
      net: phaseKind(this.cfg, phase),
    };
  }

  private md(session?: string): grpc.Metadata {
    return callMetadata(this.token, session);
  }

  private join(name: string, backend = "hostile"): Promise<Identity | null> {
    return new Promise((resolve) =>
      this.client.Join(
        { workerName: name, backend },
        this.md(),
        { deadline: Date.now() + CALL_DEADLINE_MS },
        (err, res) => {
          if (err || !res) return resolve(null);
          this.joins += 1;
          this.cfg ??= parseConfig(JSON.parse(res.configJson), "config from coordinator");
          resolve({ name, workerId: res.workerId, session: res.session, joinedAt: Date.now() });
        },
      ),
    );
  }

  /** An outsider identity with a live session (re-joined when evicted or near its lease end). */
  private async outsider(): Promise<Identity | null> {
    const i = this.rng.nextInt(this.outsiders.length);
    const id = this.outsiders[i];
    if (id && Date.now() - id.joinedAt < REJOIN_AFTER_MS) return id;
    const fresh = await this.join(`intruder-${i}`);
    this.outsiders[i] = fresh;
    return fresh;
  }

  private fetchLength(net: Net): Promise<number> {
    return new Promise((resolve, reject) => {
      const call = this.client.FetchParams({ net, version: 0 }, this.md());
      call.on("data", (chunk: ParamChunk__Output) => {
        resolve(chunk.length);
        call.cancel();
      });
      call.on("error", (err: grpc.ServiceError) => {
        if (err.code !== grpc.status.CANCELLED) reject(err);
      });
    });
  }

  // -------------------------------------------------------------------------
  // Sending.

  private header(id: Identity, taskId: string, p: Payload, over: Partial<GradientHeader> = {}) {
    return {
      workerId: id.workerId,
      taskId,
      length: p.length,
      sha256: p.sha,
      chunks: p.chunks.length,
      count: microBatch(this.cfg),
      dLoss: 0.7,
      gLoss: 0.7,
      dReal: 0.5,
      dFake: 0.5,
      hasD: true,
      computeSeconds: 0.01,
      ...over,
    } satisfies GradientHeader;
  }

  /** The chunks of a payload in order, the header on the first. */
  private chunks(header: GradientHeader | null, p: Payload): GradientChunk[] {
    return p.chunks.map((data, index) =>
      index === 0 && header ? { header, index, data } : { index, data },
    );
  }

  /**
   * One SubmitGradients stream: writes `msgs`, then half-closes (or cancels,
   * for an abandoned stream). Resolves with the reply or the call's status.
   */
  private submit(
    md: grpc.Metadata,
    msgs: GradientChunk[],
    opts: { abandon?: boolean; big?: boolean } = {},
  ): Promise<Reply> {
    return new Promise((resolve) => {
      const client = opts.big ? this.bigClient : this.client;
      const call = client.SubmitGradients(
        md,
        { deadline: Date.now() + CALL_DEADLINE_MS },
        (err, res) => {
          if (res?.accepted) this.accepted += 1;
          resolve(err || !res ? { code: err?.code ?? -1, details: err?.details ?? "" } : res);
        },
      );
      for (const m of msgs) call.write(m);
      if (opts.abandon) setTimeout(() => call.cancel(), 20);
      else call.end();
    });
  }

  /** Sends a gradient as outsider `id` (joined first); `build` makes the chunks. */
  private async asOutsider(
    category: string,
    build: (id: Identity) => GradientChunk[],
    opts: { abandon?: boolean; big?: boolean; session?: (id: Identity) => string | undefined } = {},
  ): Promise<void> {
    const id = await this.outsider();
    if (!id) return sleep(20);
    const session = opts.session ? opts.session(id) : id.session;
    this.count(category);
    const reply = await this.submit(this.md(session), build(id), opts);
    // Evicted (or superseded): the next use of this slot joins again.
    if ("reason" in reply && /no valid session/.test(reply.reason) && session === id.session) {
      const i = this.outsiders.indexOf(id);
      if (i >= 0) this.outsiders[i] = null;
    }
  }

  /** A call of every RPC kind, with the given metadata; waits for its refusal. */
  private async anyCall(category: string, md: grpc.Metadata): Promise<void> {
    this.count(category);
    const deadline = { deadline: Date.now() + CALL_DEADLINE_MS };
    switch (this.rng.nextInt(5)) {
      case 0:
        await new Promise((r) =>
          this.client.Join({ workerName: "gatecrasher", backend: "x" }, md, deadline, r),
        );
        break;
      case 1:
        await new Promise((r) => this.client.Status({}, md, deadline, r));
        break;
      case 2:
        await this.drain(this.client.FetchParams({ net: "G", version: 0 }, md, deadline));
        break;
      case 3: {
        const { taskId, net } = this.current();
        const p = this.payloads[net].valid;
        const header = this.header(
          { name: "x", workerId: this.status.workers[0] ?? "w#0", session: "", joinedAt: 0 },
          taskId,
          p,
        );
        await this.submit(md, this.chunks(header, p));
        break;
      }
      default:
        await this.work(md, [{ workerId: this.status.workers[0] ?? "w#0", hello: {} }]);
    }
  }

  /** Reads a server stream to its end or error. */
  private drain(call: grpc.ClientReadableStream<unknown>): Promise<void> {
    return new Promise((resolve) => {
      call.on("data", () => {});
      call.on("error", () => resolve());
      call.on("end", () => resolve());
    });
  }

  /** Opens a Work stream, writes `msgs`, and waits for the refusal (or gives up after 2 s). */
  private work(md: grpc.Metadata, msgs: WorkerMessage[]): Promise<void> {
    return new Promise((resolve) => {
      const call = this.client.Work(md);
      const timer = setTimeout(() => {
        call.cancel();
        resolve();
      }, 2000);
      const finish = () => {
        clearTimeout(timer);
        resolve();
      };
      call.on("data", (msg: CoordinatorMessage__Output) => {
        // An outsider must never be handed a microtask: that would mean a bad hello was accepted.
        if (msg.body === "task") this.accepted += 1000;
      });
      call.on("error", finish);
      call.on("end", finish);
      for (const m of msgs) call.write(m);
    });
  }

  // -------------------------------------------------------------------------
  // The squatter: a Work stream that takes real microtasks and answers them with garbage.

  private async squatter(done: () => boolean): Promise<void> {
    while (!done()) {
      const id = await this.join("squatter");
      if (!id) {
        await sleep(100);
        continue;
      }
      await this.squat(id, done);
      await sleep(20);
    }
  }

  private squat(id: Identity, done: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const call = this.client.Work(this.md(id.session));
      let over = false;
      const heartbeat = setInterval(() => {
        if (done()) call.cancel();
        else call.write({ workerId: id.workerId, heartbeat: { taskIds: [] } });
      }, 400);
      const finish = () => {
        if (over) return;
        over = true;
        clearInterval(heartbeat);
        resolve();
      };
      call.on("error", finish);
      call.on("end", finish);
      call.on("data", (msg: CoordinatorMessage__Output) => {
        if (msg.body === "finished") {
          this.stopped = true;
          call.cancel();
        }
        if (msg.body !== "task" || !msg.task) return;
        const task = msg.task;
        const net = phaseKind(this.cfg, task.phase);
        const x = this.rng.nextFloat();
        if (x < 0.45 && !this.nanAnswered.has(task.taskId)) {
          // NaN from the microtask's own holder: it is dropped and the task moves on.
          this.nanAnswered.add(task.taskId);
          this.count("squatterNaN");
          const p = this.payloads[net].nan;
          this.background(
            this.submit(this.md(id.session), this.chunks(this.header(id, task.taskId, p), p)),
          );
        } else if (x < 0.85) {
          // Five malformed answers in a row: evicted, and its microtasks move on.
          this.background(async () => {
            for (let i = 0; i < 5; i++) {
              this.count("squatterMalformed");
              const p = this.payloads[net].valid;
              const bad =
                i % 2 === 0 ? { sha256: sha256(new Uint8Array([i])) } : { length: p.length - 1 };
              await this.submit(
                this.md(id.session),
                this.chunks(this.header(id, task.taskId, p, bad), p),
              );
            }
          });
        } else {
          // Speaks for someone else on its own stream (ignored), then just walks away.
          this.count("squatterForeignId");
          call.write({ workerId: this.status.workers[0] ?? "w#0", leaving: {} });
          this.count("squatterDropsStream");
          call.cancel();
        }
      });
      call.write({ workerId: id.workerId, hello: {} });
    });
  }

  // -------------------------------------------------------------------------
  // The categories of hostile messages, with weights.

  private table(): Array<{ name: string; weight: number; run: () => Promise<void> }> {
    const cur = () => this.current();
    const grad = (
      name: string,
      weight: number,
      build: (id: Identity, t: { taskId: string; net: Net }) => GradientChunk[],
      opts: {
        abandon?: boolean;
        big?: boolean;
        session?: (id: Identity) => string | undefined;
      } = {},
    ) => ({
      name,
      weight,
      run: () => this.asOutsider(name, (id) => build(id, cur()), opts),
    });
    const valid = (t: { net: Net }) => this.payloads[t.net].valid;
    const plain = (
      id: Identity,
      t: { taskId: string; net: Net },
      over: Partial<GradientHeader> = {},
    ) => this.chunks(this.header(id, t.taskId, valid(t), over), valid(t));
    // Among them one too long to quote in an event on NATS (max payload 1 MiB).
    const garbageIds = [
      "",
      "../../etc/passwd",
      "1.0.0; drop table",
      "x".repeat(1_100_000),
      "-1.-1.-1",
      "1e9.0.0",
    ];
    return [
      // Who is speaking.
      { name: "noToken", weight: 3, run: () => this.anyCall("noToken", callMetadata(undefined)) },
      {
        name: "wrongToken",
        weight: 3,
        run: () => this.anyCall("wrongToken", callMetadata(`${this.token.slice(0, -1)}#`)),
      },
      grad("noSession", 3, (id, t) => plain(id, t), { session: () => undefined }),
      grad("forgedSession", 3, (id, t) => plain(id, t), {
        session: () => sha256(new Uint8Array([this.rng.nextInt(256)])),
      }),
      grad("otherWorkersId", 5, (id, t) => {
        const others = [...this.status.workers, ...this.outsiders.map((o) => o?.workerId ?? "")];
        const other = others[this.rng.nextInt(others.length)] || "w0#0";
        return plain(id, t, { workerId: other === id.workerId ? `${other}x` : other });
      }),
      grad("hugeWorkerId", 1, (id, t) => plain(id, t, { workerId: "w".repeat(200_000) })),
      // Lengths.
      grad("shortLength", 3, (id, t) => plain(id, t, { length: valid(t).length - 1 })),
      grad("longLength", 3, (id, t) => plain(id, t, { length: valid(t).length + 1 })),
      grad("zeroLength", 2, (id, t) => [
        {
          header: this.header(id, t.taskId, valid(t), { length: 0, chunks: 1 }),
          index: 0,
          data: new Uint8Array(0),
        },
      ]),
      grad("hugeLength", 2, (id, t) => plain(id, t, { length: 0xffffffff })),
      // Values.
      grad("nanInOthersTask", 4, (id, t) => {
        const p = this.payloads[t.net].nan;
        return this.chunks(this.header(id, t.taskId, p), p);
      }),
      grad("infInOthersTask", 3, (id, t) => {
        const p = this.payloads[t.net].inf;
        return this.chunks(this.header(id, t.taskId, p), p);
      }),
      grad("nonFiniteLoss", 2, (id, t) =>
        plain(
          id,
          t,
          this.rng.nextFloat() < 0.5 ? { dLoss: Number.NaN } : { gLoss: Number.POSITIVE_INFINITY },
        ),
      ),
      grad("wrongCount", 2, (id, t) => plain(id, t, { count: [0, 1, 1e9][this.rng.nextInt(3)] })),
      // Checksums.
      grad("badChecksum", 4, (id, t) =>
        plain(id, t, { sha256: sha256(new Uint8Array([7, this.rng.nextInt(256)])) }),
      ),
      grad("checksumNotHex", 2, (id, t) =>
        plain(id, t, { sha256: ["", "zz", "A".repeat(64)][this.rng.nextInt(3)] }),
      ),
      // Streams.
      grad("truncatedStream", 4, (id, t) => {
        const all = plain(id, t);
        if (all.length > 1) return all.slice(0, all.length - 1);
        return [
          { ...all[0], data: all[0].data!.slice(0, (all[0].data as Uint8Array).byteLength >> 1) },
        ];
      }),
      grad("extraChunk", 3, (id, t) => {
        const all = plain(id, t);
        return [...all, { index: all.length, data: valid(t).chunks.at(-1) }];
      }),
      grad("oversizeChunk", 2, (id, t) => {
        const all = plain(id, t);
        all[0] = { ...all[0], data: new Uint8Array(CHUNK_BYTES + 4096) };
        return all;
      }),
      grad(
        "overMessageLimit",
        1,
        (id, t) => [{ ...plain(id, t)[0], data: new Uint8Array(Math.round(2.5 * 1024 * 1024)) }],
        {
          big: true,
        },
      ),
      grad("chunksOutOfOrder", 3, (id, t) => {
        const all = plain(id, t);
        if (all.length < 2) return [{ ...all[0], index: 1 }];
        return [
          { ...all[1], header: all[0].header, index: 1 },
          { index: 0, data: all[0].data },
        ];
      }),
      grad("duplicateChunk", 2, (id, t) => {
        const all = plain(id, t);
        return [all[0], { index: 0, data: all[0].data }, ...all.slice(1)];
      }),
      grad("headerOnLaterChunk", 2, (id, t) => {
        const all = plain(id, t);
        const second = all[1] ?? { index: 1, data: all[0].data };
        return [all[0], { ...second, header: all[0].header }];
      }),
      grad("headerlessFirstChunk", 2, (id, t) =>
        plain(id, t).map(({ header: _h, ...rest }) => rest),
      ),
      grad("wrongChunkCount", 2, (id, t) => plain(id, t, { chunks: valid(t).chunks.length + 3 })),
      grad("emptyStream", 1, () => []),
      grad("abandonedStream", 1, (id, t) => plain(id, t).slice(0, 1), { abandon: true }),
      // Microtasks that are not the sender's.
      grad("staleTask", 4, (id) => {
        const t = this.stale();
        return plain(id, t);
      }),
      {
        // Six stale results in a row from one fresh identity: late is not malformed, so no eviction.
        name: "staleBurst",
        weight: 0.5,
        run: async () => {
          // Its own name: a concurrent burst under the same name would end this session.
          const id = await this.join(`latecomer-${this.bursts++}`);
          if (!id) return;
          for (let i = 0; i < 6; i++) {
            this.count("staleTask");
            const t = this.stale();
            const p = this.payloads[t.net].valid;
            await this.submit(this.md(id.session), this.chunks(this.header(id, t.taskId, p), p));
          }
          // Still a session? Within its lease (2 s from the join) only an eviction could have ended it.
          this.count("otherWorkersId");
          const { taskId, net } = this.current();
          const p = this.payloads[net].valid;
          const reply = await this.submit(
            this.md(id.session),
            this.chunks(this.header(id, taskId, p, { workerId: "w0#0" }), p),
          );
          const withinLease = Date.now() - id.joinedAt < REJOIN_AFTER_MS;
          if (withinLease && "reason" in reply && /no valid session/.test(reply.reason))
            this.staleEvictions += 1;
        },
      },
      grad("futureTask", 2, (id, t) => {
        const { step, phase } = this.status;
        const taskId =
          this.rng.nextFloat() < 0.5
            ? `${step + 1 + this.rng.nextInt(5)}.${phase}.0`
            : `${step}.${phase}.${this.cfg.shards + 2}`;
        return plain(id, { ...t, taskId });
      }),
      grad("garbageTaskId", 2, (id, t) =>
        plain(id, { ...t, taskId: garbageIds[this.rng.nextInt(garbageIds.length)] }),
      ),
      grad("othersTaskWellFormed", 4, (id, t) => plain(id, t)),
      // The other RPCs.
      {
        name: "fetchParamsBadNet",
        weight: 2,
        run: async () => {
          this.count("fetchParamsBadNet");
          const net = ["", "g", "GD", "E", "N".repeat(100_000)][this.rng.nextInt(5)];
          await this.drain(this.client.FetchParams({ net, version: 0 }, this.md()));
        },
      },
      {
        name: "fetchParamsBadVersion",
        weight: 2,
        run: async () => {
          this.count("fetchParamsBadVersion");
          const version = [Number.MAX_SAFE_INTEGER, 2 ** 40, 123_456_789][this.rng.nextInt(3)];
          await this.drain(
            this.client.FetchParams(
              { net: this.rng.nextFloat() < 0.5 ? "G" : "D", version },
              this.md(),
            ),
          );
        },
      },
      {
        name: "joinBadName",
        weight: 2,
        run: async () => {
          this.count("joinBadName");
          const name = ["", "has space", "n".repeat(65), "ünïcode", "../x", "a\u0000b"][
            this.rng.nextInt(6)
          ];
          await new Promise((r) =>
            this.client.Join({ workerName: name, backend: "x" }, this.md(), r),
          );
        },
      },
      {
        name: "joinHugeBackend",
        weight: 0.3,
        run: async () => {
          this.count("joinHugeBackend");
          await this.join(`intruder-b${this.rng.nextInt(3)}`, "b".repeat(1_500_000));
        },
      },
      {
        name: "workBadHello",
        weight: 3,
        run: async () => {
          this.count("workBadHello");
          const id = await this.outsider();
          if (!id) return;
          const victim = this.status.workers[0] ?? "w0#0";
          // Never a valid hello from an outsider: it must not become able to hold microtasks.
          const variants: Array<[grpc.Metadata, WorkerMessage[]]> = [
            [this.md(), [{ workerId: id.workerId, hello: {} }]],
            [this.md(id.session), [{ workerId: victim, hello: {} }]],
            [this.md(id.session), [{ workerId: id.workerId, heartbeat: { taskIds: ["0.0.0"] } }]],
            [this.md(sha256(new Uint8Array([1]))), [{ workerId: victim, hello: {} }]],
            [
              this.md(id.session),
              [
                { workerId: `${id.workerId}?`, hello: {} },
                { workerId: victim, hello: {} },
              ],
            ],
          ];
          const [md, msgs] = variants[this.rng.nextInt(variants.length)];
          await this.work(md, msgs);
        },
      },
    ];
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Publishes forged and corrupted parameter sets on a run's NATS parameter
 * subjects, racing the coordinator: each time a real version of a network has
 * been broadcast it sends a self-consistent forgery of that same version (so
 * it replaces the real one in a worker's cache) and one more attack chosen by
 * a seeded PRNG (the next or a huge version, bad checksum, wrong length, NaN,
 * missing or nonsense headers, orphan or oversize chunks).
 */
export class ParamForger {
  /** Forged messages published, by category. */
  readonly sent = new Map<string, number>();
  /** Real parameter sets seen complete on NATS. */
  realVersions = 0;
  private readonly rng: Rng;
  private readonly subs: Subscription[] = [];
  private readonly base: Record<Net, Float32Array | null> = { G: null, D: null };

  constructor(
    private readonly nc: NatsConnection,
    private readonly runId: string,
    seed: number,
  ) {
    this.rng = new Rng(seed);
    for (const net of ["G", "D"] as const) {
      this.subs.push(
        nc.subscribe(subjects(runId).params(net), {
          callback: (_err, msg) => {
            const h = msg.headers;
            if (h?.get(FORGED) !== "") return;
            if (Number(h.get("Agon-Chunk")) !== Number(h.get("Agon-Chunks")) - 1) return;
            this.realVersions += 1;
            this.forge(net, Number(h.get("Agon-Version")), Number(h.get("Agon-Length")));
          },
        }),
      );
    }
  }

  get total(): number {
    let n = 0;
    for (const v of this.sent.values()) n += v;
    return n;
  }

  stop(): void {
    for (const s of this.subs) s.unsubscribe();
  }

  private forge(net: Net, version: number, length: number): void {
    if (!Number.isSafeInteger(version) || !(length > 0)) return;
    let base = this.base[net];
    if (!base || base.length !== length) {
      base = new Float32Array(length);
      for (let i = 0; i < length; i++) base[i] = (this.rng.nextFloat() - 0.5) * 0.2;
      this.base[net] = base;
    }
    // A fresh forgery each time (one value changes), with its own correct sha256.
    base[this.rng.nextInt(length)] = this.rng.nextFloat();
    this.publishSet("sameVersionSelfConsistent", net, version, base);
    const attacks: Array<() => void> = [
      () => this.publishSet("nextVersionSelfConsistent", net, version + 1, base),
      () => this.publishSet("hugeVersion", net, 2 ** 40 + version, base),
      () =>
        this.publishSet("badChecksum", net, version, base, {
          "Agon-Sha256": sha256(new Uint8Array([1])),
        }),
      () =>
        this.publishSet("wrongLength", net, version, base, { "Agon-Length": String(length + 1) }),
      () => {
        const nan = base.slice();
        nan[0] = Number.NaN;
        this.publishSet("nanWeights", net, version, nan);
      },
      () => {
        this.count("noHeaders");
        this.nc.publish(subjects(this.runId).params(net), floatBytes(base).slice(0, 1024));
      },
      () =>
        this.publishSet("nonsenseVersion", net, version, base, {
          "Agon-Version": ["-1", "abc", "1e400", "0x10"][this.rng.nextInt(4)],
        }),
      () => this.publishRaw("orphanChunk", net, version, base, { "Agon-Chunk": "7" }),
      () =>
        this.publishRaw("oversizeChunk", net, version, base, {}, new Uint8Array(CHUNK_BYTES + 8)),
    ];
    attacks[this.rng.nextInt(attacks.length)]();
  }

  private count(category: string): void {
    this.sent.set(category, (this.sent.get(category) ?? 0) + 1);
  }

  private headersFor(version: number, weights: Float32Array, chunks: number) {
    const h = headers();
    h.set("Agon-Version", String(version));
    h.set("Agon-Sha256", sha256(floatBytes(weights)));
    h.set("Agon-Length", String(weights.length));
    h.set("Agon-Chunks", String(chunks));
    h.set(FORGED, "1");
    return h;
  }

  /** A whole parameter set, the way the coordinator publishes one, with some headers overridden. */
  private publishSet(
    category: string,
    net: Net,
    version: number,
    weights: Float32Array,
    over: Record<string, string> = {},
  ): void {
    this.count(category);
    const chunks = chunksOf(weights);
    chunks.forEach((data, index) => {
      const h = this.headersFor(version, weights, chunks.length);
      h.set("Agon-Chunk", String(index));
      for (const [k, v] of Object.entries(over)) h.set(k, v);
      this.nc.publish(subjects(this.runId).params(net), data, { headers: h });
    });
  }

  /** One chunk with the given headers overridden (and data, when given). */
  private publishRaw(
    category: string,
    net: Net,
    version: number,
    weights: Float32Array,
    over: Record<string, string>,
    data?: Uint8Array,
  ): void {
    this.count(category);
    const chunks = chunksOf(weights);
    const h = this.headersFor(version, weights, chunks.length);
    h.set("Agon-Chunk", "0");
    for (const [k, v] of Object.entries(over)) h.set(k, v);
    this.nc.publish(subjects(this.runId).params(net), data ?? chunks[0], { headers: h });
  }
}

/** Header that marks our own forgeries, so the forger does not answer itself. */
const FORGED = "Agon-Test-Forged";
