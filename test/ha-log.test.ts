import { describe, expect, it } from "vitest";
import { configHash } from "../coordinator/checkpoint.js";
import { decodeEntry, encodeEntry, type LogEntry } from "../coordinator/ha/entry.js";
import { Follower, StandbyMismatchError } from "../coordinator/ha/follower.js";
import { Leadership, LeaseBucket } from "../coordinator/ha/lease.js";
import { LogFencedError, ReplicatedLog } from "../coordinator/ha/log.js";
import { RunRecorder } from "../coordinator/recorder.js";
import { type PhaseUpdate, TrainingState } from "../coordinator/state.js";
import { initBackend } from "../shared/backend.js";
import { parseConfig } from "../shared/config.js";
import { weightsHash } from "../shared/hash.js";
import { buildModel, resultSize } from "../shared/models/index.js";
import { connectNats } from "../shared/nats.js";
import { tempDir } from "./helpers/cli.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();

const f32 = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => seed + i / 7);

function phaseEntry(epoch: number, step: number, n = 10): LogEntry {
  return {
    type: "phase",
    epoch,
    update: {
      step,
      phase: 0,
      kind: "D",
      grad: f32(n, step),
      count: 32,
      dLoss: 1.5,
      gLoss: 0.5,
      dReal: 0.6,
      dFake: 0.4,
    },
    adamSteps: { G: step, D: step + 1 },
    hashes: { D: "ab" },
    metrics: { step, phase: 0 },
  };
}

const runId = () => `halog-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

describe("replicated log and lease", () => {
  it("entries round-trip bit for bit (phase and snapshot, with and without EMA)", () => {
    const p = phaseEntry(3, 7);
    expect(decodeEntry(encodeEntry(p))).toEqual(p);
    for (const ema of [undefined, f32(5, 9)]) {
      const s: LogEntry = {
        type: "snapshot",
        epoch: 2,
        hashes: { G: "g", D: "d" },
        data: {
          step: 4,
          phase: 1,
          versions: { G: 4, D: 5 },
          weights: { G: f32(5, 1), D: f32(3, 2) },
          adam: {
            G: { t: 4, m: f32(5, 3), v: f32(5, 4) },
            D: { t: 5, m: f32(3, 5), v: f32(3, 6) },
          },
          ...(ema ? { ema } : {}),
        },
      };
      expect(decodeEntry(encodeEntry(s))).toEqual(s);
    }
  });

  it("an append from a writer the log has moved past is fenced; a follower reads chunked entries in order", async () => {
    const nc = await connectNats(nats.url, "ha-log-test");
    const id = runId();
    const a = await ReplicatedLog.open(nc, id);
    const b = await ReplicatedLog.open(nc, id);
    // 300k floats: several chunks under the 1 MiB max_payload.
    await a.append(phaseEntry(1, 0, 300_000));
    b.lastSeq = await b.tail();
    await b.append(phaseEntry(2, 1));
    await expect(a.append(phaseEntry(1, 1))).rejects.toBeInstanceOf(LogFencedError);
    const seen: Array<[number, number]> = [];
    const reader = await a.follow(
      1,
      (e) => {
        if (e.type === "phase") seen.push([e.epoch, e.update.step]);
      },
      () => {},
    );
    const until = Date.now() + 10_000;
    while (seen.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    reader.stop();
    expect(seen).toEqual([
      [1, 0],
      [2, 1],
    ]);
    await nc.drain();
  });

  it("the lease is a compare-and-set: a stale revision loses, and a leader that stops renewing is no longer valid", async () => {
    const nc = await connectNats(nats.url, "ha-lease-test");
    const bucket = await LeaseBucket.open(nc, runId());
    const v = { epoch: 1, holder: "a", address: "x:1", snapshotSeq: 0 };
    const r1 = await bucket.write(v, null);
    expect(r1).not.toBeNull();
    expect(await bucket.write(v, null)).toBeNull();
    const r2 = await bucket.write({ ...v, epoch: 2, holder: "b" }, r1);
    expect(r2).not.toBeNull();
    expect(await bucket.write({ ...v, epoch: 2, holder: "c" }, r1)).toBeNull();
    expect((await bucket.read())?.value.holder).toBe("b");

    let lost = "";
    const lead = new Leadership(
      bucket,
      { value: { ...v, epoch: 2, holder: "b" }, revision: r2! },
      200,
      (why) => {
        lost = why;
      },
      performance.now(),
    );
    expect(lead.valid()).toBe(true);
    lead.stop();
    await new Promise((r) => setTimeout(r, 250));
    expect(lead.valid()).toBe(false);
    // Someone else takes the key; the next renewal finds out and reports it once.
    const now = await bucket.read();
    await bucket.write({ ...v, epoch: 3, holder: "d" }, now!.revision);
    await lead.renew();
    expect(lead.valid()).toBe(false);
    expect(lost).toMatch(/epoch 3 is held by d/);
    await nc.drain();
  });

  it("a standby whose state stops matching the log asks the leader for a snapshot and resyncs from it; a mismatch right after a resync is refused", async () => {
    await initBackend("wasm", () => {});
    const id = runId();
    const cfg = parseConfig({
      run: { id, dir: tempDir() },
      seed: 5,
      model: { name: "mlp", latentDim: 4, gHidden: [16], dHidden: [16] },
      dataset: { name: "ring", size: 256 },
      shards: 2,
      batch: 32,
      steps: 1000,
      samples: { every: 100_000 },
      checkpoint: { every: 100_000 },
    });
    const leader = new TrainingState(cfg, buildModel(cfg.model, [2]));
    const standbyModel = buildModel(cfg.model, [2]);
    const standby = new TrainingState(cfg, standbyModel);
    const recorder = new RunRecorder(
      cfg,
      standbyModel,
      { event: () => {} },
      { health: false, onCheckpointError: "event" },
    );
    recorder.prepare();
    const nc = await connectNats(nats.url, "ha-resync-test");
    const log = await ReplicatedLog.open(nc, id);
    const bucket = await LeaseBucket.open(nc, id);
    const snapshot = () =>
      log.append({
        type: "snapshot",
        epoch: 1,
        data: leader.snapshot(),
        hashes: leader.hashes(),
        configHash: configHash(cfg),
      });
    // The leader's next phase, applied; `corrupt`: the log gets hashes nobody can reproduce.
    const phase = async (corrupt = false) => {
      const kind = leader.kind;
      const net = kind === "G" ? leader.model.g : leader.model.d;
      const k = leader.step * 2 + leader.phase;
      const update: PhaseUpdate = {
        step: leader.step,
        phase: leader.phase,
        kind,
        grad: Float32Array.from({ length: resultSize(net) }, (_, i) => 0.01 * Math.sin(i + k)),
        count: 32,
        dLoss: kind === "D" ? 1 : null,
        gLoss: 1,
        dReal: kind === "D" ? 0.5 : null,
        dFake: 0.5,
      };
      leader.applyUpdate({ ...update, grad: update.grad.slice() });
      await log.append({
        type: "phase",
        epoch: 1,
        update,
        adamSteps: { G: leader.adam.G.steps, D: leader.adam.D.steps },
        hashes: { [kind]: corrupt ? "0".repeat(64) : weightsHash(leader.weights[kind]) },
        metrics: { step: update.step, phase: update.phase },
      });
    };
    const first = await snapshot();
    const lease = { epoch: 1, holder: "leader", address: "x:1", snapshotSeq: first };
    const held = new Leadership(
      bucket,
      { value: lease, revision: (await bucket.write(lease, null))! },
      1000,
      () => {},
      performance.now(),
    );
    const events: string[] = [];
    let asked = 0;
    const follower = new Follower(
      {
        state: standby,
        recorder,
        runDir: cfg.run.dir,
        holder: "standby",
        address: "x:2",
        configHash: configHash(cfg),
        log: () => {},
        event: (type) => events.push(type),
        // As the leader does: noted, and the snapshot goes into the log after it (below).
        requestSnapshot: () => {
          asked += 1;
        },
      },
      log,
      bucket,
      1000,
    );
    const running = follower.run();
    const until = async (cond: () => boolean) => {
      const end = Date.now() + 20_000;
      while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      expect(cond()).toBe(true);
    };
    for (let i = 0; i < 3; i++) await phase();
    await until(() => follower.applied === 3);
    await phase(true);
    await until(() => asked === 1);
    await snapshot();
    await until(() => follower.resyncs === 1);
    expect(asked).toBe(1);
    expect(events).toEqual(["standbyInSync", "standbyResync", "standbyInSync"]);
    for (let i = 0; i < 2; i++) await phase();
    await until(() => follower.applied === 5);
    expect(standby.hashes()).toEqual(leader.hashes());
    // Once more: resynced again, and a mismatch on the very next phase is no accident.
    asked = 0;
    await phase(true);
    await until(() => asked === 1);
    await snapshot();
    await until(() => follower.resyncs === 2);
    await phase(true);
    await expect(running).rejects.toBeInstanceOf(StandbyMismatchError);
    held.stop();
    await recorder.flush();
    await nc.drain();
  }, 60_000);
});
