// NATS with authentication, subject permissions and TLS, as docs/SECURITY.md
// tells operators to run it: the coordinator may publish under agon.>, workers
// may only subscribe to parameters, watchers only to metrics/events/samples.
// A run trains to the clean run's bits over it; a worker's credentials cannot
// publish parameters; a client without credentials is refused in one line.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { headers } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats, type NatsServerHandle, spawnNatsServer } from "../shared/nats.js";
import { makeTestPki, type TestPki } from "./helpers/certs.js";
import { referenceHashes, runAgon, tempDir, tinyRing } from "./helpers/cli.js";
import { killAll, startCoordinator, startWorker } from "./helpers/cluster.js";

let server: NatsServerHandle;
let pki: TestPki;
let dir: string;
const pw = (who: string) => join(dir, `${who}.password`);

beforeAll(async () => {
  dir = tempDir("agon-nats-auth-");
  pki = makeTestPki(dir);
  for (const who of ["coordinator", "worker", "watcher"]) writeFileSync(pw(who), `${who}-pw-1\n`);
  writeFileSync(
    join(dir, "auth.conf"),
    `
tls {
  cert_file: "${pki.serverCert}"
  key_file: "${pki.serverKey}"
}
authorization {
  users = [
    { user: coordinator, password: "coordinator-pw-1",
      permissions: { publish: ["agon.>"], subscribe: ["agon.>", "_INBOX.>"] } }
    { user: worker, password: "worker-pw-1",
      permissions: { publish: { deny: [">"] }, subscribe: ["agon.*.params.>"] } }
    { user: watcher, password: "watcher-pw-1",
      permissions: { publish: { deny: [">"] },
                     subscribe: ["agon.*.metrics", "agon.*.events", "agon.*.samples"] } }
  ]
}
`,
  );
  server = await spawnNatsServer({ extraArgs: ["-c", join(dir, "auth.conf")], jetstream: false });
});
afterAll(async () => {
  killAll();
  await server?.stop();
});

const as = (who: string) => [
  "--nats-user",
  who,
  "--nats-password-file",
  pw(who),
  "--nats-ca",
  pki.ca,
];

describe("NATS with users, permissions and TLS", () => {
  it("trains to the clean run's bits; worker credentials cannot publish parameters", async () => {
    const config = tinyRing({ steps: 60, shards: 2 });
    const expected = await referenceHashes(config);
    const coord = await startCoordinator(config, server.url, {
      extra: [...as("coordinator"), "--run-dir", tempDir()],
    });

    // A watcher of the parameters with the coordinator's rights sees what is really published.
    const observer = await connectNats(server.url, "observer", undefined, {
      user: "coordinator",
      passwordFile: pw("coordinator"),
      ca: pki.ca,
    });
    let forgedSeen = 0;
    let realSeen = 0;
    observer.subscribe("agon.agon.params.>", {
      callback: (_err, msg) => {
        if (msg.headers?.get("Agon-Forged") === "1") forgedSeen += 1;
        else realSeen += 1;
      },
    });
    await observer.flush();

    // A compromised worker tries to broadcast parameters: the server refuses.
    const errors: string[] = [];
    const forger = await connectNats(server.url, "forger", (line) => errors.push(line), {
      user: "worker",
      passwordFile: pw("worker"),
      ca: pki.ca,
    });
    const h = headers();
    h.set("Agon-Forged", "1");
    h.set("Agon-Version", "999");
    forger.publish("agon.agon.params.G", new Uint8Array(16), { headers: h });
    await forger.flush().catch(() => {});

    const w1 = startWorker(coord.address, server.url, "auth-1", as("worker"));
    const w2 = startWorker(coord.address, server.url, "auth-2", as("worker"));
    const done = await coord.done;
    expect(done.hashes).toEqual(expected);
    expect(await w1.exited).toBe(0);
    expect(await w2.exited).toBe(0);
    // Workers got their parameters over NATS, not only over gRPC.
    expect(w1.stderr()).not.toMatch(/NATS unavailable/);
    expect(realSeen).toBeGreaterThan(0);
    expect(forgedSeen).toBe(0);
    expect(errors.join("\n")).toMatch(/permissions violation/i);
    await forger.close();
    await observer.close();
  }, 120_000);

  it("a watcher without credentials is refused in one line; with them it may not publish", async () => {
    const r = await runAgon(["watch", "--nats", server.url, "--nats-ca", pki.ca]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^agon: error: cannot connect to NATS .*authorization violation/i);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);

    const wrongPw = join(dir, "wrong");
    writeFileSync(wrongPw, "nope\n");
    const bad = await runAgon([
      "watch",
      "--nats",
      server.url,
      "--nats-ca",
      pki.ca,
      "--nats-user",
      "watcher",
      "--nats-password-file",
      wrongPw,
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/authorization violation/i);

    const errors: string[] = [];
    const watcher = await connectNats(server.url, "watcher", (line) => errors.push(line), {
      user: "watcher",
      passwordFile: pw("watcher"),
      ca: pki.ca,
    });
    watcher.publish("agon.agon.events", "{}");
    await watcher.flush().catch(() => {});
    await new Promise((r) => setTimeout(r, 200));
    expect(errors.join("\n")).toMatch(/permissions violation/i);
    await watcher.close();
  }, 60_000);

  it("mixing NATS authentication methods or half-given flags is refused in one line", async () => {
    const r = await runAgon([
      "watch",
      "--nats",
      server.url,
      "--nats-user",
      "watcher",
      "--nats-token-file",
      pw("watcher"),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^agon: error: give one NATS authentication method/);
    const half = await runAgon(["watch", "--nats", server.url, "--nats-user", "watcher"]);
    expect(half.code).toBe(2);
    expect(half.stderr).toMatch(/^agon: error: --nats-user needs --nats-password-file/);
  });
});
