import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { headers } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256 } from "../shared/hash.js";
import { connectNats, type NatsConnection, subjects } from "../shared/nats.js";
import { ParamSubscriber, publishParams } from "../shared/params-bus.js";
import { roundValues } from "../shared/precision.js";
import {
  CHUNK_BYTES,
  ChunkAssembler,
  chunksOf,
  encodeArray,
  floatBytes,
  WireError,
} from "../shared/wire.js";
import { tempDir } from "./helpers/cli.js";
import { startNats } from "./helpers/nats.js";

const ROOT = resolve(import.meta.dirname, "..");

describe("chunk codec", () => {
  const big = Float32Array.from({ length: 300_000 }, (_, i) => Math.sin(i));
  const checksum = sha256(floatBytes(big));

  it("splits into ≤ 1 MiB chunks and reassembles exactly", () => {
    const chunks = chunksOf(big);
    expect(chunks.length).toBe(Math.ceil((big.length * 4) / CHUNK_BYTES));
    for (const c of chunks) expect(c.byteLength).toBeLessThanOrEqual(1024 * 1024);
    const a = new ChunkAssembler(big.length, chunks.length, checksum);
    chunks.forEach((c, i) => {
      a.add(i, c);
    });
    expect(a.finish(true)).toEqual(big);
  });

  it("rejects wrong counts, order, sizes, checksums, truncation and non-finite values", () => {
    const chunks = chunksOf(big);
    expect(() => new ChunkAssembler(big.length, chunks.length + 1, checksum)).toThrow(WireError);
    expect(() => new ChunkAssembler(-1, 1, checksum)).toThrow(/out of range/);
    expect(() => new ChunkAssembler(1e12, 1, checksum)).toThrow(/out of range/);
    expect(() => new ChunkAssembler(big.length, chunks.length, "abc")).toThrow(/sha256/);
    const outOfOrder = new ChunkAssembler(big.length, chunks.length, checksum);
    expect(() => outOfOrder.add(1, chunks[1])).toThrow(/expected 0/);
    const short = new ChunkAssembler(big.length, chunks.length, checksum);
    expect(() => short.add(0, chunks[0].subarray(4))).toThrow(/bytes/);
    const truncated = new ChunkAssembler(big.length, chunks.length, checksum);
    truncated.add(0, chunks[0]);
    expect(() => truncated.finish(true)).toThrow(/stream ended after 1/);
    const flipped = new ChunkAssembler(big.length, chunks.length, checksum);
    chunks.forEach((c, i) => {
      const copy = c.slice();
      if (i === 0) copy[10] ^= 1;
      flipped.add(i, copy);
    });
    expect(() => flipped.finish(true)).toThrow(/checksum/);
    const nan = Float32Array.from([1, Number.NaN, 3]);
    const n = new ChunkAssembler(3, 1, sha256(floatBytes(nan)));
    n.add(0, floatBytes(nan));
    expect(() => n.finish(true)).toThrow(/not finite/);
  });
});

describe("parameters over NATS", () => {
  let server: Awaited<ReturnType<typeof startNats>>;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNats();
    nc = await connectNats(server.url, "wire-test");
  });
  afterAll(async () => {
    await nc?.drain();
    await server?.stop();
  });

  it("delivers verified versions and never uses forged or corrupted chunks", async () => {
    const run = `wire${Date.now()}`;
    const sizes = { G: 300_000, D: 10 };
    const sub = new ParamSubscriber(nc, run, sizes);
    await nc.flush();
    const g = Float32Array.from({ length: sizes.G }, (_, i) => i % 7);
    publishParams(nc, run, "G", 3, g);
    const got = await sub.waitFor("G", 3, 2000);
    expect(got?.weights).toEqual(g);

    // A forged message: right headers, wrong payload for the announced checksum.
    const d = Float32Array.from({ length: 10 }, (_, i) => i);
    const h = headers();
    h.set("Agon-Version", "1");
    h.set("Agon-Sha256", sha256(floatBytes(d)));
    h.set("Agon-Length", "10");
    h.set("Agon-Chunk", "0");
    h.set("Agon-Chunks", "1");
    nc.publish(subjects(run).params("D"), floatBytes(d.map((v) => v + 1)), { headers: h });
    // Wrong length for the model, and no headers at all.
    publishParams(nc, run, "D", 2, new Float32Array(11));
    nc.publish(subjects(run).params("D"), new Uint8Array(40));
    expect(await sub.waitFor("D", 1, 300)).toBeNull();
    expect(await sub.waitFor("D", 2, 50)).toBeNull();
    expect(sub.rejected).toBe(3);

    publishParams(nc, run, "D", 4, d);
    expect((await sub.waitFor("D", 4, 2000))?.weights).toEqual(d);
    sub.close();
  });

  it("with transport.params bf16, takes bf16 chunks and drops any other encoding", async () => {
    const run = `wirebf16${Date.now()}`;
    const sizes = { G: 10, D: 300_000 };
    const sub = new ParamSubscriber(nc, run, sizes, "bf16");
    await nc.flush();
    const d = Float32Array.from({ length: sizes.D }, (_, i) => Math.sin(i));
    publishParams(nc, run, "D", 1, d); // fp32: each of its 3 chunks is refused
    expect(await sub.waitFor("D", 1, 300)).toBeNull();
    expect(sub.rejected).toBe(3);
    const sent = encodeArray(d, "bf16");
    expect(publishParams(nc, run, "D", 2, sent)).toBe(sizes.D * 2);
    const got = await sub.waitFor("D", 2, 2000);
    expect(got?.weights).toEqual(roundValues("bf16", d));
    expect(got?.checksum).toBe(sent.checksum);
    sub.close();
  });
});

describe("generated wire types", () => {
  it("match proto/agon.proto (run `npm run proto` after editing the schema)", () => {
    const out = tempDir();
    const script = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).scripts
      .proto as string;
    const args = script
      .split(" ")
      .slice(1)
      .map((a) => (a.startsWith("--outDir=") ? `--outDir=${out}` : a));
    execFileSync(join(ROOT, "node_modules/.bin/proto-loader-gen-types"), args, { cwd: ROOT });
    const list = (dir: string): string[] =>
      readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => join(e.parentPath, e.name).slice(dir.length))
        .sort();
    const committed = join(ROOT, "proto/gen");
    expect(list(out)).toEqual(list(committed));
    for (const f of list(out))
      expect(readFileSync(join(out, f), "utf8")).toBe(readFileSync(join(committed, f), "utf8"));
  });
});
