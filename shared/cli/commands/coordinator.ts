// `agon coordinator`: owns the weights and serves the workers. gRPC, NATS and
// TensorFlow.js are imported when the command runs, not for `--help`.
import type { Command } from "commander";
import type { BackendName } from "../../backend-names.js";
import { ConfigError } from "../../config.js";
import { natsAuthFromOptions, natsFromOptions } from "../nats-options.js";
import {
  addConfigOptions,
  backendOption,
  configFromOptions,
  JOIN_TOKEN_HELP,
  parseDuration,
  parseHostPort,
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
    .option(
      "--nats <urls>",
      "NATS server URL(s), comma-separated; without it the run has no NATS (one line says so)",
    )
    .option(
      "--no-nats",
      "run without NATS, quietly: workers fetch parameters over gRPC, no broadcast, no `agon watch`",
    )
    .option("--tls-cert <file>", "serve gRPC over TLS with this certificate (PEM)")
    .option("--tls-key <file>", "private key (PEM) for --tls-cert")
    .option("--tls-ca <file>", "require client certificates signed by this CA (mutual TLS)")
    .option("--join-token-file <file>", JOIN_TOKEN_HELP)
    .addOption(backendOption())
    .option(
      "--fresh",
      "start from step 0; the run dir's previous files move to its archive/<date>/",
    )
    .option("--force", "resume even if the newest checkpoint was written with a different config")
    .option(
      "--ha",
      "replicate every phase to a log on NATS JetStream and hold a lease, so a --standby can take over",
    )
    .option(
      "--standby",
      "follow the leader's log (same config, a run dir of its own) and take over when its lease lapses or is released (implies --ha)",
    )
    .option("--lease <duration>", "leader lease for --ha/--standby (e.g. 1500ms, 3s)", "1500ms")
    .option(
      "--advertise <host:port>",
      "the gRPC address workers reach this coordinator at, recorded in the lease (default: --listen)",
    )
    .action(async (opts: Record<string, unknown>) => {
      const cfg = configFromOptions(opts);
      const listen = parseHostPort(opts.listen as string, "--listen");
      const http =
        opts.http === undefined ? undefined : parseHostPort(opts.http as string, "--http");
      const nats = natsFromOptions(opts, "coordinator");
      const leaseMs = parseDuration(opts.lease as string, "--lease");
      if (leaseMs < 100) throw new ConfigError(`--lease: at least 100ms, got "${opts.lease}"`);
      const advertise =
        opts.advertise === undefined
          ? undefined
          : parseHostPort(opts.advertise as string, "--advertise");
      const ha =
        opts.ha || opts.standby
          ? { standby: Boolean(opts.standby), leaseMs, advertise }
          : undefined;
      const { loadJoinToken } = await import("../../security.js");
      const { CoordinatorServer } = await import("../../../coordinator/server.js");
      const server = new CoordinatorServer(cfg, {
        listen,
        http,
        nats: nats.urls,
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
        ha,
        emit: (event) => process.stdout.write(`${JSON.stringify(event)}\n`),
      });
      if (nats.notice) process.stderr.write(`${nats.notice}\n`);
      // A signal while starting (loading data, connecting to NATS) stops it as
      // soon as start() returns, rather than killing it half-started.
      let started = false;
      let stopping = false;
      const stop = async (signal: NodeJS.Signals) => {
        if (stopping || !started) {
          if (!started && !stopping) {
            process.stderr.write(`coordinator: ${signal} while starting: stopping\n`);
            // Stops a long start (the evaluation reference) before anything is written.
            server.abortStart();
          }
          stopping = true;
          return;
        }
        stopping = true;
        await server.stop();
        process.exit(0);
      };
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      try {
        await server.start();
      } catch (err) {
        if (stopping) process.exit(0);
        throw err;
      }
      started = true;
      if (stopping) {
        stopping = false;
        await stop("SIGTERM");
      }
      await server.done;
      if (server.failure) process.stderr.write(`agon: error: ${server.failure.message}\n`);
      else if (server.steppedDown) process.stderr.write(`coordinator: stepped down; exiting\n`);
      // Exit now: a NATS client whose server went away would otherwise keep reconnecting forever.
      process.exit(server.failure ? 1 : 0);
    });
}
