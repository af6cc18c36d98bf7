// The NATS authentication and TLS flags, shared by every command that talks to
// NATS (coordinator, worker, watch, local).
import type { Command } from "commander";
import { ConfigError } from "../config.js";
import type { NatsAuthFiles } from "../security.js";
import { parseNatsUrls } from "./options.js";

/** NATS authentication and TLS flags (coordinator, worker, watch, local). */
export function addNatsAuthOptions(cmd: Command): Command {
  return cmd
    .option("--nats-creds <file>", "NATS .creds file (JWT + nkey seed)")
    .option("--nats-nkey <file>", "file holding a NATS nkey user seed (SU...)")
    .option("--nats-user <name>", "NATS user (password from --nats-password-file)")
    .option("--nats-password-file <file>", "file holding the NATS user's password")
    .option("--nats-token-file <file>", "file holding a NATS server token")
    .option("--nats-ca <file>", "CA certificate (PEM) that signed the NATS servers' certificates")
    .option("--nats-cert <file>", "client certificate (PEM) for NATS TLS")
    .option("--nats-key <file>", "client key (PEM) for --nats-cert");
}

export function natsAuthFromOptions(opts: Record<string, unknown>): NatsAuthFiles {
  return {
    creds: opts.natsCreds as string | undefined,
    nkey: opts.natsNkey as string | undefined,
    user: opts.natsUser as string | undefined,
    passwordFile: opts.natsPasswordFile as string | undefined,
    tokenFile: opts.natsTokenFile as string | undefined,
    ca: opts.natsCa as string | undefined,
    cert: opts.natsCert as string | undefined,
    key: opts.natsKey as string | undefined,
  };
}

/**
 * `--nats <urls>` and `--no-nats` of a coordinator or worker: the NATS URLs,
 * or undefined for a run without NATS. With neither flag the run has no NATS
 * and `notice` is the one line that says so (`--no-nats` says it quietly).
 * Throws ConfigError for a bad URL, or NATS credentials given without --nats.
 */
export function natsFromOptions(
  opts: Record<string, unknown>,
  who: "coordinator" | "worker",
): { urls?: string[]; notice?: string } {
  if (typeof opts.nats === "string") return { urls: parseNatsUrls(opts.nats) };
  const auth = Object.entries(natsAuthFromOptions(opts)).find(([, v]) => v !== undefined);
  if (auth) {
    const flag = `--nats-${auth[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    throw new ConfigError(
      `${flag}: give --nats <urls> too (NATS credentials without a NATS server)`,
    );
  }
  if (opts.nats === false) return {};
  return {
    notice:
      who === "coordinator"
        ? "coordinator: no --nats: running without NATS; workers fetch parameters over gRPC (FetchParams), metrics, events and samples reach the run dir and the --http dashboard only (no broadcast, nothing for `agon watch`)"
        : "worker: no --nats: parameters come over gRPC (FetchParams) only",
  };
}
