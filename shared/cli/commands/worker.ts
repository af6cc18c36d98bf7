// `agon worker`: computes microtask gradients for a coordinator. The worker
// (gRPC, NATS, TensorFlow.js) is imported when the command runs.
import { hostname } from "node:os";
import type { Command } from "commander";
import type { BackendName } from "../../backend-names.js";
import { natsAuthFromOptions } from "../nats-options.js";
import {
  backendOption,
  JOIN_TOKEN_HELP,
  parseDuration,
  parseHostPort,
  parseNatsUrls,
} from "../options.js";

/** `<host>-<pid>`, the host name cut to 40 safe characters: unique per process on a cluster. */
export function defaultWorkerName(): string {
  return `${hostname()
    .replace(/[^A-Za-z0-9_.-]/g, "-")
    .slice(0, 40)}-${process.pid}`;
}

export function registerWorkerCommand(program: Command): Command {
  return program
    .command("worker")
    .description("run a worker: computes microtask gradients for the coordinator")
    .requiredOption("--coordinator <host:port>", "the coordinator's gRPC address")
    .requiredOption("--nats <urls>", "NATS server URL(s), comma-separated")
    .option(
      "--name <name>",
      "stable worker name (re-joins under it after a reconnect)",
      defaultWorkerName(),
    )
    .option("--tls", "connect to the coordinator over TLS (implied by the other --tls-* flags)")
    .option("--tls-ca <file>", "verify the coordinator's certificate against this CA (PEM)")
    .option("--tls-cert <file>", "client certificate (PEM) for mutual TLS")
    .option("--tls-key <file>", "private key (PEM) for --tls-cert")
    .option("--tls-server-name <name>", "name expected in the coordinator's certificate")
    .option("--join-token-file <file>", JOIN_TOKEN_HELP)
    .option(
      "--coordinator-timeout <duration>",
      "how long to keep retrying an unreachable coordinator (e.g. 90s, 10m, 1h; 0 = forever)",
      "10m",
    )
    .option(
      "--data-path <dir>",
      "this host's copy of the run's dataset (instead of the config's dataset.path)",
    )
    .addOption(backendOption())
    .action(async (opts: Record<string, unknown>) => {
      const coordinator = parseHostPort(opts.coordinator as string, "--coordinator");
      const nats = parseNatsUrls(opts.nats as string);
      const coordinatorTimeoutMs = parseDuration(
        opts.coordinatorTimeout as string,
        "--coordinator-timeout",
      );
      const { loadJoinToken } = await import("../../security.js");
      const { Worker } = await import("../../../worker/worker.js");
      const worker = new Worker({
        coordinator,
        nats,
        natsAuth: natsAuthFromOptions(opts),
        tls: {
          enabled: Boolean(opts.tls),
          ca: opts.tlsCa as string | undefined,
          cert: opts.tlsCert as string | undefined,
          key: opts.tlsKey as string | undefined,
          serverName: opts.tlsServerName as string | undefined,
        },
        joinToken: loadJoinToken(opts.joinTokenFile as string | undefined),
        name: opts.name as string,
        backend: opts.backend as BackendName,
        coordinatorTimeoutMs,
        dataPath: opts.dataPath as string | undefined,
      });
      const stop = () => void worker.stop();
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      await worker.start();
      const code = await worker.exited;
      if (worker.failure) process.stderr.write(`agon: error: ${worker.failure.message}\n`);
      process.exit(code);
    });
}
