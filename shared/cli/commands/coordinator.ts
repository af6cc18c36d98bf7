// `agon coordinator`: owns the weights and serves the workers. gRPC, NATS and
// TensorFlow.js are imported when the command runs, not for `--help`.
import type { Command } from "commander";
import type { BackendName } from "../../backend-names.js";
import { natsAuthFromOptions } from "../nats-options.js";
import {
  addConfigOptions,
  backendOption,
  configFromOptions,
  JOIN_TOKEN_HELP,
  parseHostPort,
  parseNatsUrls,
} from "../options.js";

export function registerCoordinatorCommand(program: Command): Command {
  return addConfigOptions(
    program
      .command("coordinator")
      .description("run the coordinator: owns the weights, schedules microtasks, applies updates"),
  )
    .option("--listen <host:port>", "gRPC address to serve", "127.0.0.1:7070")
    .option(
      "--http <host:port>",
      "serve /metrics (Prometheus), /healthz and the live dashboard here",
    )
    .requiredOption("--nats <urls>", "NATS server URL(s), comma-separated")
    .option("--tls-cert <file>", "serve gRPC over TLS with this certificate (PEM)")
    .option("--tls-key <file>", "private key (PEM) for --tls-cert")
    .option("--tls-ca <file>", "require client certificates signed by this CA (mutual TLS)")
    .option("--join-token-file <file>", JOIN_TOKEN_HELP)
    .addOption(backendOption())
    .option("--fresh", "ignore checkpoints in the run dir and start from step 0")
    .option("--force", "resume even if the newest checkpoint was written with a different config")
    .action(async (opts: Record<string, unknown>) => {
      const cfg = configFromOptions(opts);
      const listen = parseHostPort(opts.listen as string, "--listen");
      const http =
        opts.http === undefined ? undefined : parseHostPort(opts.http as string, "--http");
      const nats = parseNatsUrls(opts.nats as string);
      const { loadJoinToken } = await import("../../security.js");
      const { CoordinatorServer } = await import("../../../coordinator/server.js");
      const server = new CoordinatorServer(cfg, {
        listen,
        http,
        nats,
        natsAuth: natsAuthFromOptions(opts),
        tls: {
          cert: opts.tlsCert as string | undefined,
          key: opts.tlsKey as string | undefined,
          ca: opts.tlsCa as string | undefined,
        },
        joinToken: loadJoinToken(opts.joinTokenFile as string | undefined),
        backend: opts.backend as BackendName,
        fresh: Boolean(opts.fresh),
        force: Boolean(opts.force),
        emit: (event) => process.stdout.write(`${JSON.stringify(event)}\n`),
      });
      await server.start();
      const stop = async () => {
        await server.stop();
        process.exit(0);
      };
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      await server.done;
      if (server.failure) process.stderr.write(`agon: error: ${server.failure.message}\n`);
      // Exit now: a NATS client whose server went away would otherwise keep reconnecting forever.
      process.exit(server.failure ? 1 : 0);
    });
}
