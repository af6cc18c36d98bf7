import { createConnection } from "node:net";
import { describe, expect, it } from "vitest";
import {
  connectNats,
  findNatsServer,
  NatsError,
  spawnNatsServer,
  subjects,
} from "../shared/nats.js";
import { startNats } from "./helpers/nats.js";

function portOpen(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const sock = createConnection({ host: hostname, port: Number(port) });
    sock.setTimeout(1000, () => {
      sock.destroy();
      resolve(false);
    });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
}

describe("NATS test helper", () => {
  it("starts a server that carries messages and stops it", async () => {
    const nats = await startNats();
    try {
      const nc = await connectNats(nats.url, "agon-test");
      const subject = subjects("helper-test").metrics;
      const got = new Promise<unknown>((resolve) => {
        nc.subscribe(subject, { max: 1, callback: (_err, msg) => resolve(msg.json()) });
      });
      await nc.flush();
      nc.publish(subject, JSON.stringify({ schema: 1, step: 7 }));
      expect(await got).toEqual({ schema: 1, step: 7 });
      await nc.close();
    } finally {
      await nats.stop();
    }
    if (!process.env.NATS_URL) expect(await portOpen(nats.url)).toBe(false);
  });

  it.skipIf(Boolean(process.env.NATS_URL))(
    "restarts on the same port and clients reconnect",
    async () => {
      const nats = await startNats();
      try {
        const nc = await connectNats(nats.url, "agon-test");
        await nats.restart!();
        const subject = subjects("helper-test").events;
        const got = new Promise<string>((resolve) => {
          nc.subscribe(subject, { max: 1, callback: (_err, msg) => resolve(msg.string()) });
        });
        // Subscriptions are replayed on reconnect; publish until one gets through.
        const timer = setInterval(() => nc.publish(subject, "hello"), 100);
        try {
          expect(await got).toBe("hello");
        } finally {
          clearInterval(timer);
        }
        await nc.close();
      } finally {
        await nats.stop();
      }
    },
  );

  it("names subjects under agon.<runId>", () => {
    const s = subjects("r1");
    expect([s.params("G"), s.params("D"), s.metrics, s.events, s.samples]).toEqual([
      "agon.r1.params.G",
      "agon.r1.params.D",
      "agon.r1.metrics",
      "agon.r1.events",
      "agon.r1.samples",
    ]);
  });

  it("fails the first connect at once with one line naming the URL", async () => {
    const err = await connectNats("nats://127.0.0.1:1", "agon-test").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsError);
    expect((err as Error).message).toMatch(/^cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: /);
    expect((err as Error).message).not.toContain("\n");
  });

  it("says how to get a server when there is no binary", async () => {
    const env = {
      ...process.env,
      PATH: "/nonexistent",
      AGON_NATS_SERVER: "/nonexistent/nats-server",
    };
    expect(findNatsServer(env).path).toBeNull();
    const err = await spawnNatsServer({ env }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsError);
    const msg = (err as Error).message;
    expect(msg).toMatch(
      /^no NATS server: AGON_NATS_SERVER=\/nonexistent\/nats-server is not an executable file; point it at/,
    );
    expect(msg).not.toContain("\n");
    // None installed (as AGON_NATS_SERVER=none makes it look): how to get one.
    const none = await spawnNatsServer({ env: { ...env, AGON_NATS_SERVER: "none" } }).catch(
      (e: unknown) => e,
    );
    expect(none).toBeInstanceOf(NatsError);
    expect((none as Error).message).toMatch(
      /^no NATS server: install it with `apt-get install nats-server` \(Debian\) or set NATS_URL=nats:\/\/host:port/,
    );
  });
});
