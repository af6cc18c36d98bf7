// The NATS authentication and TLS flags, shared by every command that talks to
// NATS (coordinator, worker, watch, local).
import type { Command } from "commander";
import type { NatsAuthFiles } from "../security.js";

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
