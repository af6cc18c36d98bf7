// Who may talk to a live coordinator: the join token on every call, TLS-only
// servers, mutual TLS with certificates from the right CA only, and session
// secrets that stop one worker from speaking for another. A worker with the
// right token and certificates trains to the same bits as a clean run.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CoordinatorClient } from "../proto/gen/agon/v1/Coordinator.js";
import type { JoinResponse__Output } from "../proto/gen/agon/v1/JoinResponse.js";
import type { SubmitReply__Output } from "../proto/gen/agon/v1/SubmitReply.js";
import { sha256 } from "../shared/hash.js";
import { callMetadata, clientCredentials, loadJoinToken } from "../shared/security.js";
import { CHANNEL_OPTIONS, floatBytes, loadAgonProto } from "../shared/wire.js";
import { makeTestPki, type TestPki } from "./helpers/certs.js";
import { referenceHashes, runAgon, tempDir, tinyRing } from "./helpers/cli.js";
import { killAll, startCoordinator, startWorker } from "./helpers/cluster.js";
import { natsForSuite } from "./helpers/nats.js";

const TOKEN = "s3cret-join-token-0123456789abcdef";
const nats = natsForSuite();
let pki: TestPki;
let tokenFile: string;

beforeAll(() => {
  const dir = tempDir("agon-pki-");
  pki = makeTestPki(dir);
  tokenFile = join(dir, "token");
  writeFileSync(tokenFile, `${TOKEN}\n`);
});
afterAll(() => killAll());

const proto = loadAgonProto();

/** The coordinator's flags for mutual TLS with the test PKI. */
const serverTls = () => [
  "--tls-cert",
  pki.serverCert,
  "--tls-key",
  pki.serverKey,
  "--tls-ca",
  pki.ca,
];

function client(address: string, tls: Parameters<typeof clientCredentials>[0] = {}) {
  const c = clientCredentials(tls);
  return new proto.agon.v1.Coordinator(address, c.credentials, {
    ...CHANNEL_OPTIONS,
    ...c.options,
  }) as unknown as CoordinatorClient;
}

function join_(
  c: CoordinatorClient,
  name: string,
  token: string | undefined,
): Promise<{ res?: JoinResponse__Output; err?: grpc.ServiceError }> {
  return new Promise((resolve) =>
    c.Join(
      { workerName: name, backend: "test" },
      callMetadata(token),
      { deadline: Date.now() + 5000 },
      (err, res) => resolve(err ? { err } : { res }),
    ),
  );
}

/** One gradient submission of a single (tiny) chunk. */
function submit(
  c: CoordinatorClient,
  md: grpc.Metadata,
  header: { workerId: string; taskId: string; length: number },
): Promise<SubmitReply__Output> {
  return new Promise((resolve, reject) => {
    const call = c.SubmitGradients(md, (err, res) => (err || !res ? reject(err) : resolve(res)));
    const grad = new Float32Array(header.length);
    call.write({
      index: 0,
      data: floatBytes(grad),
      header: { ...header, sha256: sha256(floatBytes(grad)), chunks: 1, count: 8 },
    });
    call.end();
  });
}

describe("join token", () => {
  it("refuses calls without it or with a wrong one, and binds gradients to the session", async () => {
    const coord = await startCoordinator(tinyRing({ steps: 400 }), nats.url, {
      extra: ["--join-token-file", tokenFile, "--run-dir", tempDir()],
    });
    try {
      const c = client(coord.address);
      const none = await join_(c, "intruder", undefined);
      expect(none.err?.code).toBe(grpc.status.UNAUTHENTICATED);
      const wrong = await join_(c, "intruder", `${TOKEN.slice(0, -1)}X`);
      expect(wrong.err?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(wrong.err?.details).toMatch(/join token/);

      // Status and FetchParams are guarded too.
      const status = await new Promise<grpc.ServiceError | null>((r) =>
        c.Status({}, callMetadata(undefined), (err) => r(err)),
      );
      expect(status?.code).toBe(grpc.status.UNAUTHENTICATED);

      const a = await join_(c, "alice", TOKEN);
      const b = await join_(c, "bob", TOKEN);
      expect(a.res?.session).toMatch(/^[0-9a-f]{64}$/);
      expect(b.res?.session).not.toBe(a.res?.session);
      const alice = a.res!.workerId;
      const bob = b.res!.workerId;

      // Bob, with his own session, claims to be Alice: refused, whatever the task.
      const forged = await submit(c, callMetadata(TOKEN, b.res!.session), {
        workerId: alice,
        taskId: "whatever",
        length: 4,
      });
      expect(forged.accepted).toBe(false);
      expect(forged.reason).toMatch(/does not match the session/);
      // A made-up session is no session at all.
      const noSession = await submit(c, callMetadata(TOKEN, "f".repeat(64)), {
        workerId: bob,
        taskId: "whatever",
        length: 4,
      });
      expect(noSession.accepted).toBe(false);
      expect(noSession.reason).toMatch(/no valid session/);

      // A re-join under the same name ends the old session.
      const again = await join_(c, "bob", TOKEN);
      expect(again.res?.session).toMatch(/^[0-9a-f]{64}$/);
      const stale = await submit(c, callMetadata(TOKEN, b.res!.session), {
        workerId: bob,
        taskId: "whatever",
        length: 4,
      });
      expect(stale.reason).toMatch(/no valid session/);
      c.close();
    } finally {
      coord.child.kill("SIGKILL");
    }
  }, 60_000);

  it("a token shorter than 16 characters is refused at start in one line", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "short"), "abc\n");
    const r = await runAgon([
      "coordinator",
      ...tinyRing({ steps: 1 }),
      "--nats",
      nats.url,
      "--join-token-file",
      join(dir, "short"),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^agon: error: join token file .*at least 16 characters/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(() => loadJoinToken(undefined, { AGON_JOIN_TOKEN: "short" })).toThrow(/AGON_JOIN_TOKEN/);
  });
});

describe("TLS", () => {
  it("a TLS-only coordinator refuses plaintext; mutual TLS refuses certificates from another CA", async () => {
    const coord = await startCoordinator(tinyRing({ steps: 400 }), nats.url, {
      extra: [...serverTls(), "--run-dir", tempDir()],
    });
    try {
      const port = coord.address.split(":").at(-1);
      const address = `localhost:${port}`;
      const plain = await join_(client(address), "plain", undefined);
      expect(plain.err?.code).toBe(grpc.status.UNAVAILABLE);

      const noCert = await join_(client(address, { ca: pki.ca }), "nocert", undefined);
      expect(noCert.err?.code).toBe(grpc.status.UNAVAILABLE);

      const otherCa = await join_(
        client(address, { ca: pki.ca, cert: pki.otherClientCert, key: pki.otherClientKey }),
        "other",
        undefined,
      );
      expect(otherCa.err?.code).toBe(grpc.status.UNAVAILABLE);

      // A client that does not trust the server's CA gives up too.
      const untrusting = await join_(
        client(address, { ca: pki.otherCa, cert: pki.clientCert, key: pki.clientKey }),
        "untrusting",
        undefined,
      );
      expect(untrusting.err?.code).toBe(grpc.status.UNAVAILABLE);

      const good = await join_(
        client(address, { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey }),
        "good",
        undefined,
      );
      expect(good.err).toBeUndefined();
      expect(good.res?.workerId).toBeTruthy();
    } finally {
      coord.child.kill("SIGKILL");
    }
  }, 60_000);

  it("workers with token and client certificates train to the clean run's bits", async () => {
    const config = tinyRing({ steps: 30, shards: 2 });
    const expected = await referenceHashes(config);
    const coord = await startCoordinator(config, nats.url, {
      extra: [...serverTls(), "--join-token-file", tokenFile, "--run-dir", tempDir()],
    });
    const port = coord.address.split(":").at(-1);
    const tls = [
      "--tls-ca",
      pki.ca,
      "--tls-cert",
      pki.clientCert,
      "--tls-key",
      pki.clientKey,
      "--tls-server-name",
      "coordinator.agon.test",
      "--join-token-file",
      tokenFile,
    ];
    const w1 = startWorker(`127.0.0.1:${port}`, nats.url, "tls-1", tls);
    const w2 = startWorker(`127.0.0.1:${port}`, nats.url, "tls-2", tls);
    const done = await coord.done;
    expect(done.hashes).toEqual(expected);
    expect(await w1.exited).toBe(0);
    expect(await w2.exited).toBe(0);
  }, 120_000);

  it("half-given TLS flags are refused in one line", async () => {
    const r = await runAgon([
      "coordinator",
      ...tinyRing({ steps: 1 }),
      "--nats",
      nats.url,
      "--tls-cert",
      pki.serverCert,
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^agon: error: --tls-cert and --tls-key must be given together/);
    const notPem = await runAgon([
      "worker",
      "--coordinator",
      "127.0.0.1:1",
      "--nats",
      nats.url,
      "--tls-ca",
      tokenFile,
    ]);
    expect(notPem.code).toBe(2);
    expect(notPem.stderr).toMatch(/^agon: error: TLS CA .* is not PEM/);
  });
});
