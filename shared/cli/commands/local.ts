// `agon local --workers N`: a whole cluster on this machine (coordinator/local.ts,
// imported when the command runs).
import { type Command, InvalidArgumentError, type Option } from "commander";
import { natsAuthFromOptions } from "../nats-options.js";
import { addConfigOptions, backendOption, configFromOptions } from "../options.js";

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

function hostPort(value: string): string {
  if (!/^.+:\d{1,5}$/.test(value)) throw new InvalidArgumentError("expected host:port");
  return value;
}

/** The flags of `options` present in `opts`, as `--flag=value` arguments for a child command. */
export function passThroughArgs(
  options: readonly Option[],
  opts: Record<string, unknown>,
): string[] {
  const args: string[] = [];
  for (const o of options) {
    const value = opts[o.attributeName()];
    if (value === undefined || value === false || !o.long) continue;
    if (value === true) args.push(o.long);
    else
      for (const v of Array.isArray(value) ? value : [value]) args.push(`${o.long}=${String(v)}`);
  }
  return args;
}

/** Adds `agon local` to the CLI. */
export function registerLocalCommand(program: Command): Command {
  const cmd = program
    .command("local")
    .description(
      "run a whole cluster on this machine: nats-server (when installed), the coordinator and N workers, with live progress",
    );
  const before = cmd.options.length;
  addConfigOptions(cmd);
  const configOptions = cmd.options.slice(before);
  const backend = backendOption();
  backend.description = "compute backend of the workers and the coordinator";
  return cmd
    .addOption(backend)
    .option("--workers <n>", "number of worker processes", positiveInt, 2)
    .option(
      "--nats <urls>",
      "use this NATS server (URLs comma-separated) instead of starting nats-server; with neither, the run goes without NATS",
    )
    .option(
      "--no-nats",
      "run without NATS, quietly, even when nats-server is installed: workers fetch parameters over gRPC, progress and the dashboard come from the coordinator, no `agon watch`",
    )
    .option(
      "--listen <host:port>",
      "coordinator gRPC address (default: 127.0.0.1 on a free port)",
      hostPort,
    )
    .option(
      "--http <host:port>",
      "dashboard and Prometheus /metrics address (default: 127.0.0.1 on a free port)",
      hostPort,
    )
    .option(
      "--fresh",
      "start from step 0; the run dir's previous files move to its archive/<date>/",
    )
    .option("--force", "resume even if the newest checkpoint was written with a different config")
    .option("--json", "print the final summary (step, weight hashes) as JSON on stdout")
    .option(
      "--standby",
      "start a hot standby coordinator too (run dir <run.dir>.standby); the run goes on if the leader dies",
    )
    .option("--lease <duration>", "leader lease with --standby (e.g. 1500ms, 3s)")
    .action(async (opts: Record<string, unknown>) => {
      const cfg = configFromOptions(opts);
      const { runLocal } = await import("../../../coordinator/local.js");
      const result = await runLocal(cfg, {
        workers: opts.workers as number,
        nats: typeof opts.nats === "string" ? opts.nats : undefined,
        noNats: opts.nats === false,
        backend: opts.backend as string,
        fresh: Boolean(opts.fresh),
        force: Boolean(opts.force),
        listen: opts.listen as string | undefined,
        standby: Boolean(opts.standby),
        lease: opts.lease as string | undefined,
        http: opts.http as string | undefined,
        configArgs: passThroughArgs(configOptions, opts),
        natsAuth: natsAuthFromOptions(opts),
        natsArgs: passThroughArgs(
          cmd.options.filter((o) => o.long?.startsWith("--nats-")),
          opts,
        ),
      });
      if (result.status === "stopped") {
        // 128 + signal number, as a shell reports a process stopped by it.
        process.exit(result.signal === "SIGINT" ? 130 : result.signal === "SIGHUP" ? 129 : 143);
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(result.summary)}\n`);
    });
}
