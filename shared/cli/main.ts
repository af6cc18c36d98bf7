// The `agon` command line: parses flags into typed values once, runs the
// subcommand, and turns every known failure into one clear line and an exit code.
import type { EventEmitter } from "node:events";
import { Command, CommanderError, Option } from "commander";
import { CheckpointError } from "../../coordinator/checkpoint.js";
import { EvaluationError, registerEvalCommand } from "../../coordinator/eval.js";
import {
  ExportError,
  registerExportCommand,
  registerSampleCommand,
} from "../../coordinator/export.js";
import { LocalError, registerLocalCommand } from "../../coordinator/local.js";
import { CoordinatorServer } from "../../coordinator/server.js";
import { train } from "../../coordinator/train.js";
import { registerWatchCommand, WatchError } from "../../coordinator/watch.js";
import { defaultWorkerName, Worker } from "../../worker/worker.js";
import { BACKEND_NAMES, type BackendName } from "../backend.js";
import { ConfigError, loadConfig } from "../config.js";
import { DatasetError } from "../data/index.js";
import { ClassifierError } from "../fid-classifier.js";
import { NatsError } from "../nats.js";
import { loadJoinToken, SecurityError } from "../security.js";
import { addNatsAuthOptions, natsAuthFromOptions } from "./nats-options.js";

/** Flags that are shorthands for config overrides. */
const CONFIG_FLAGS: Array<[flag: string, key: string, help: string]> = [
  ["--model <name>", "model.name", "model: mlp | dcgan"],
  ["--loss <name>", "loss.name", "loss: non-saturating | minimax | wgan-gp | hinge | rpgan"],
  ["--dataset <name>", "dataset.name", "dataset: mnist | fashion-mnist | folder | ring"],
  ["--data-path <dir>", "dataset.path", "image folder for --dataset folder"],
  ["--steps <n>", "steps", "training steps (one step = kD D phases + kG G phases)"],
  ["--batch <n>", "batch", "global batch per phase, a multiple of --shards"],
  ["--shards <k>", "shards", "K, the number of data shards and microtasks per phase"],
  ["--seed <n>", "seed", "run seed"],
  ["--run-dir <dir>", "run.dir", "where checkpoints, samples and metrics go"],
];

function optionKey(flag: string): string {
  // "--run-dir <dir>" → "runDir", as commander names it.
  return flag
    .split(" ")[0]
    .replace(/^--/, "")
    .replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function addConfigOptions(cmd: Command): Command {
  cmd
    .option("-c, --config <file>", "run config (YAML or JSON)")
    .option(
      "--set <key=value...>",
      "override any config field, e.g. --set loss.name=hinge optimizer.g.lr=1e-4",
    );
  for (const [flag, , help] of CONFIG_FLAGS) cmd.option(flag, help);
  return cmd;
}

function configFromOptions(opts: Record<string, unknown>) {
  const overrides: string[] = [];
  for (const [flag, key] of CONFIG_FLAGS) {
    const value = opts[optionKey(flag)];
    if (value !== undefined) overrides.push(`${key}=${String(value)}`);
  }
  // AGON_SET carries several overrides in one variable, separated by spaces.
  for (const entry of (opts.set as string[] | undefined) ?? []) {
    overrides.push(...entry.split(/\s+/).filter((s) => s !== ""));
  }
  return loadConfig(opts.config as string | undefined, overrides);
}

const JOIN_TOKEN_HELP = "file holding the run's join token (default: $AGON_JOIN_TOKEN)";

const backendOption = () =>
  new Option("--backend <name>", "compute backend").choices([...BACKEND_NAMES]).default("auto");

export function buildCli(): Command {
  const program = new Command("agon")
    .description("Distributed GAN training: coordinator, workers, gRPC and NATS")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();

  addConfigOptions(
    program
      .command("train")
      .description("train in one process (the reference the distributed run matches bit for bit)"),
  )
    .addOption(backendOption())
    .option("--fresh", "ignore checkpoints in the run dir and start from step 0")
    .option("--force", "resume even if the newest checkpoint was written with a different config")
    .option("--json", "print the final summary (step, weight hashes) as JSON on stdout")
    .action(async (opts) => {
      const cfg = configFromOptions(opts);
      const result = await train(cfg, {
        backend: opts.backend as BackendName,
        fresh: Boolean(opts.fresh),
        force: Boolean(opts.force),
      });
      if (opts.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    });

  addConfigOptions(
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
    .action(async (opts) => {
      const cfg = configFromOptions(opts);
      const server = new CoordinatorServer(cfg, {
        listen: parseHostPort(opts.listen as string, "--listen"),
        http: opts.http === undefined ? undefined : parseHostPort(opts.http as string, "--http"),
        nats: parseNatsUrls(opts.nats as string),
        natsAuth: natsAuthFromOptions(opts),
        tls: { cert: opts.tlsCert, key: opts.tlsKey, ca: opts.tlsCa },
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

  program
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
    .addOption(backendOption())
    .action(async (opts) => {
      const worker = new Worker({
        coordinator: parseHostPort(opts.coordinator as string, "--coordinator"),
        nats: parseNatsUrls(opts.nats as string),
        natsAuth: natsAuthFromOptions(opts),
        tls: {
          enabled: Boolean(opts.tls),
          ca: opts.tlsCa,
          cert: opts.tlsCert,
          key: opts.tlsKey,
          serverName: opts.tlsServerName,
        },
        joinToken: loadJoinToken(opts.joinTokenFile as string | undefined),
        name: opts.name as string,
        backend: opts.backend as BackendName,
      });
      const stop = () => void worker.stop();
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      await worker.start();
      process.exit(await worker.exited);
    });

  registerLocalCommand(program, { addConfigOptions, configFromOptions, backendOption });
  registerEvalCommand(program);
  registerWatchCommand(program);
  registerSampleCommand(program);
  registerExportCommand(program);

  for (const cmd of program.commands) {
    if (["coordinator", "worker", "watch", "local"].includes(cmd.name())) addNatsAuthOptions(cmd);
    if (ENV_COMMANDS.includes(cmd.name())) bindEnvironment(cmd);
  }
  return program;
}

/** The long-running commands whose flags can also come from AGON_* variables (containers, manifests). */
export const ENV_COMMANDS = ["train", "coordinator", "worker", "local", "watch"];

/** `--run-dir` → `AGON_RUN_DIR`: the variable that stands in for a flag. */
export function envName(option: Option): string {
  return `AGON_${option
    .attributeName()
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toUpperCase()}`;
}

/**
 * Every long flag of `cmd` may also be given as `AGON_<FLAG>` (see envName);
 * a flag on the command line wins over the variable, the variable over the
 * default. A boolean flag is on when its variable is set to anything but
 * "", "0" or "false".
 */
function bindEnvironment(cmd: Command): void {
  for (const option of cmd.options) {
    if (!option.long || option.envVar) continue;
    const name = envName(option);
    const isBoolean = !option.required && !option.optional;
    if (isBoolean && /^(|0|false)$/i.test(process.env[name] ?? "x")) continue;
    option.env(name);
    // Commander wires the env listener when an option is added; these exist already.
    cmd.on(`optionEnv:${option.name()}`, (value?: string) =>
      (cmd as unknown as EventEmitter).emit(`option:${option.name()}`, value),
    );
  }
}

function parseHostPort(value: string, flag: string): string {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) > 65535)
    throw new ConfigError(`${flag}: expected host:port, got "${value}"`);
  return value;
}

function parseNatsUrls(value: string): string[] {
  const urls = value
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u !== "");
  for (const u of urls) {
    if (!/^(nats|tls|ws|wss):\/\/[^\s]+$/.test(u) && !/^[A-Za-z0-9.-]+:\d+$/.test(u)) {
      throw new ConfigError(`--nats: "${u}" is not a NATS URL (nats://host:port)`);
    }
  }
  if (urls.length === 0) throw new ConfigError("--nats: give at least one URL");
  return urls;
}

const USER_ERRORS = [
  ConfigError,
  DatasetError,
  CheckpointError,
  NatsError,
  LocalError,
  EvaluationError,
  ClassifierError,
  WatchError,
  ExportError,
  SecurityError,
];

export async function main(argv: string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (or the help text).
      return err.exitCode === 0 ? 0 : 2;
    }
    if (USER_ERRORS.some((cls) => err instanceof cls)) {
      process.stderr.write(`agon: error: ${(err as Error).message}\n`);
      return 2;
    }
    const e = err as Error;
    process.stderr.write(`agon: error: ${e.message}\n`);
    if (process.env.AGON_DEBUG) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}
