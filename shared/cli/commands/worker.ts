// `agon worker`: computes microtask gradients for a coordinator. The worker
// (gRPC, NATS, TensorFlow.js) is imported when the command runs.
import { hostname } from "node:os";
import type { Command } from "commander";
import type { BackendName } from "../../backend-names.js";
import { natsAuthFromOptions, natsFromOptions } from "../nats-options.js";
import { backendOption, JOIN_TOKEN_HELP, parseDuration, parseHostPort } from "../options.js";

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
    .requiredOption(
      "--coordinator <host:port>",
      "the coordinator's gRPC address; several, comma-separated, for a leader and its standbys",
    )
    .option(
      "--nats <urls>",
      "NATS server URL(s), comma-separated, for parameter broadcasts; without it parameters come over gRPC",
    )
    .option("--no-nats", "fetch parameters over gRPC only, without the line that says so")
    .option(
      "--name <name>",
      "worker name; it re-joins under it after a reconnect (the default, host-pid, changes with every start: give one to keep it across restarts)",
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
    .option(
      "--inception <file>",
      "this host's copy of the run's Inception-v3 weights (instead of the config's eval.inception; must be the same file)",
    )
    .addOption(backendOption())
    .action(async (opts: Record<string, unknown>) => {
      // Several addresses (comma-separated): a leader and its standbys; the worker follows a takeover.
      const coordinator = (opts.coordinator as string)
        .split(",")
        .map((a) => parseHostPort(a.trim(), "--coordinator"));
      const nats = natsFromOptions(opts, "worker");
      const coordinatorTimeoutMs = parseDuration(
        opts.coordinatorTimeout as string,
        "--coordinator-timeout",
      );
      const { loadJoinToken } = await import("../../security.js");
      const { Worker } = await import("../../../worker/worker.js");
      const worker = new Worker({
        coordinator,
        nats: nats.urls,
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
        inception: opts.inception as string | undefined,
      });
      if (nats.notice) process.stderr.write(`${nats.notice}\n`);
      const stop = () => void worker.stop();
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      await worker.start();
      const code = await worker.exited;
      if (worker.failure) process.stderr.write(`agon: error: ${worker.failure.message}\n`);
      process.exit(code);
    });
}
