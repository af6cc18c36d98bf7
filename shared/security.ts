// Who may talk to a run: gRPC TLS / mutual TLS material, the join token every
// call must carry, per-worker session secrets, and NATS credentials. Secrets
// are read from files (or one environment variable for the token), never from
// flags, so they do not show up in `ps`.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import {
  type ConnectionOptions,
  credsAuthenticator,
  nkeyAuthenticator,
} from "@nats-io/transport-node";
import { fileErrorCause } from "./errno.js";

/** Bad security material or flags; the message is one line meant for the user. */
export class SecurityError extends Error {
  override name = "SecurityError";
}

/** Largest secret file we read (a chain of certificates fits easily). */
const MAX_SECRET_BYTES = 1024 * 1024;

/** Reads a small file of security material, with one clear line when it is missing or odd. */
export function readSecretFile(path: string, what: string): Buffer {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new SecurityError(`${what} ${path} is not a file`);
    size = st.size;
  } catch (err) {
    if (err instanceof SecurityError) throw err;
    throw new SecurityError(`cannot read ${what} ${path}: ${fileErrorCause(err)}`);
  }
  if (size === 0) throw new SecurityError(`${what} ${path} is empty`);
  if (size > MAX_SECRET_BYTES) throw new SecurityError(`${what} ${path} is larger than 1 MiB`);
  return readFileSync(path);
}

function readPem(path: string, what: string): Buffer {
  const pem = readSecretFile(path, what);
  if (!pem.toString("latin1").includes("-----BEGIN ")) {
    throw new SecurityError(`${what} ${path} is not PEM (no "-----BEGIN" line)`);
  }
  return pem;
}

// ---------------------------------------------------------------------------
// Join token.

/** The shortest join token we accept: guessing 16 random characters is out of reach. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * The run's join token: the file's contents (trimmed) when `file` is given,
 * else `AGON_JOIN_TOKEN`, else none.
 */
export function loadJoinToken(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  let token: string | undefined;
  let source: string;
  if (file !== undefined) {
    token = readSecretFile(file, "join token file").toString("utf8").trim();
    source = `join token file ${file}`;
  } else if (env.AGON_JOIN_TOKEN !== undefined && env.AGON_JOIN_TOKEN !== "") {
    token = env.AGON_JOIN_TOKEN.trim();
    source = "AGON_JOIN_TOKEN";
  } else {
    return undefined;
  }
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new SecurityError(
      `${source}: the join token must be at least ${MIN_TOKEN_LENGTH} characters (try \`openssl rand -hex 32\`)`,
    );
  }
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new SecurityError(`${source}: the join token must be printable ASCII without spaces`);
  }
  return token;
}

/** A new random secret, hex: join tokens for `agon local`, worker session secrets. */
export function randomSecret(bytes = 32): string {
  return randomBytes(bytes).toString("hex");
}

/**
 * Compares a presented secret with the expected one in time that does not
 * depend on where they differ (both are hashed first, so lengths leak nothing either).
 */
export function secretsEqual(presented: string, expected: string): boolean {
  const a = createHash("sha256").update(presented, "utf8").digest();
  const b = createHash("sha256").update(expected, "utf8").digest();
  return timingSafeEqual(a, b);
}

/** gRPC metadata keys: the run's join token and the worker's session secret. */
export const TOKEN_METADATA = "authorization";
export const SESSION_METADATA = "agon-session";

/** Metadata carrying the join token (`authorization: Bearer <token>`) and, once joined, the session. */
export function callMetadata(token: string | undefined, session?: string): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set(TOKEN_METADATA, `Bearer ${token}`);
  if (session) md.set(SESSION_METADATA, session);
  return md;
}

/** The one string value of a metadata key, or undefined (absent, repeated or binary). */
export function metadataValue(md: grpc.Metadata, key: string): string | undefined {
  const values = md.get(key);
  return values.length === 1 && typeof values[0] === "string" ? values[0] : undefined;
}

/** Whether the call carries the expected join token (always true when the run has none). */
export function hasJoinToken(md: grpc.Metadata, expected: string | undefined): boolean {
  if (expected === undefined) return true;
  const header = metadataValue(md, TOKEN_METADATA);
  if (header === undefined || !header.startsWith("Bearer ")) return false;
  return secretsEqual(header.slice("Bearer ".length), expected);
}

// ---------------------------------------------------------------------------
// gRPC transport security.

export interface ServerTlsFiles {
  cert?: string;
  key?: string;
  /** When given, clients must present a certificate signed by this CA (mutual TLS). */
  ca?: string;
}

/** Plaintext without files; TLS with cert + key; mutual TLS when a CA is given too. */
export function serverCredentials(tls: ServerTlsFiles): grpc.ServerCredentials {
  if (!tls.cert && !tls.key) {
    if (tls.ca) throw new SecurityError("--tls-ca needs --tls-cert and --tls-key as well");
    return grpc.ServerCredentials.createInsecure();
  }
  if (!tls.cert || !tls.key)
    throw new SecurityError("--tls-cert and --tls-key must be given together");
  const cert = readPem(tls.cert, "TLS certificate");
  const key = readPem(tls.key, "TLS key");
  const ca = tls.ca ? readPem(tls.ca, "TLS CA") : null;
  return grpc.ServerCredentials.createSsl(
    ca,
    [{ cert_chain: cert, private_key: key }],
    ca !== null,
  );
}

export interface ClientTlsFiles {
  /** Verify the coordinator against this CA (instead of the system roots). */
  ca?: string;
  /** Our client certificate for mutual TLS. */
  cert?: string;
  key?: string;
  /** The name expected in the coordinator's certificate, when it differs from the host dialled. */
  serverName?: string;
  /** Use TLS with the system roots even without files. */
  enabled?: boolean;
}

export function usesTls(tls: ClientTlsFiles): boolean {
  return Boolean(tls.enabled || tls.ca || tls.cert || tls.key || tls.serverName);
}

/** Channel credentials and the extra channel options (server name override) for a client. */
export function clientCredentials(tls: ClientTlsFiles): {
  credentials: grpc.ChannelCredentials;
  options: grpc.ChannelOptions;
} {
  if (!usesTls(tls)) return { credentials: grpc.credentials.createInsecure(), options: {} };
  if (Boolean(tls.cert) !== Boolean(tls.key))
    throw new SecurityError("--tls-cert and --tls-key must be given together");
  const ca = tls.ca ? readPem(tls.ca, "TLS CA") : null;
  const key = tls.key ? readPem(tls.key, "TLS key") : null;
  const cert = tls.cert ? readPem(tls.cert, "TLS certificate") : null;
  const options: grpc.ChannelOptions = {};
  if (tls.serverName) {
    options["grpc.ssl_target_name_override"] = tls.serverName;
    options["grpc.default_authority"] = tls.serverName;
  }
  return { credentials: grpc.credentials.createSsl(ca, key, cert), options };
}

// ---------------------------------------------------------------------------
// NATS.

export interface NatsAuthFiles {
  /** A `.creds` file (JWT + nkey seed), as `nsc` writes it. */
  creds?: string;
  /** A file holding an nkey user seed (`SU...`). */
  nkey?: string;
  user?: string;
  /** File with the password for `user`. */
  passwordFile?: string;
  /** File with a server token. */
  tokenFile?: string;
  /** TLS to the NATS servers: CA to verify them, and our client certificate. */
  ca?: string;
  cert?: string;
  key?: string;
}

/** The nats.js connection options for these files (read now, so errors surface at start). */
export function natsAuthOptions(auth: NatsAuthFiles = {}): Partial<ConnectionOptions> {
  const out: Partial<ConnectionOptions> = {};
  const methods = [auth.creds, auth.nkey, auth.user, auth.tokenFile].filter((x) => x !== undefined);
  if (methods.length > 1) {
    throw new SecurityError(
      "give one NATS authentication method: --nats-creds, --nats-nkey, --nats-user or --nats-token-file",
    );
  }
  if (auth.creds) {
    const creds = readSecretFile(auth.creds, "NATS credentials file");
    if (!/-----BEGIN NATS USER JWT-----/.test(creds.toString("utf8"))) {
      throw new SecurityError(`NATS credentials file ${auth.creds} holds no user JWT`);
    }
    out.authenticator = credsAuthenticator(new Uint8Array(creds));
  }
  if (auth.nkey) {
    const seed = readSecretFile(auth.nkey, "NATS nkey seed file").toString("utf8").trim();
    if (!/^SU[A-Z2-7]{50,}$/.test(seed)) {
      throw new SecurityError(`NATS nkey seed file ${auth.nkey} holds no user seed (SU...)`);
    }
    out.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
  }
  if (auth.passwordFile && !auth.user)
    throw new SecurityError("--nats-password-file needs --nats-user");
  if (auth.user) {
    if (!auth.passwordFile) throw new SecurityError("--nats-user needs --nats-password-file");
    out.user = auth.user;
    out.pass = readSecretFile(auth.passwordFile, "NATS password file").toString("utf8").trim();
  }
  if (auth.tokenFile) {
    out.token = readSecretFile(auth.tokenFile, "NATS token file").toString("utf8").trim();
  }
  if (Boolean(auth.cert) !== Boolean(auth.key))
    throw new SecurityError("--nats-cert and --nats-key must be given together");
  if (auth.ca || auth.cert) {
    out.tls = {};
    if (auth.ca) out.tls.ca = readPem(auth.ca, "NATS TLS CA").toString("utf8");
    if (auth.cert && auth.key) {
      out.tls.cert = readPem(auth.cert, "NATS TLS certificate").toString("utf8");
      out.tls.key = readPem(auth.key, "NATS TLS key").toString("utf8");
    }
  }
  return out;
}
