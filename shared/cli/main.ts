// The `agon` command line: parses flags into typed values once, runs the
// subcommand, and turns every known failure into one clear line and an exit code.
// Each subcommand lives in commands/ and imports what it runs (TensorFlow.js,
// gRPC, NATS) only when it runs, so `agon --help` starts in a fraction of a second.
import type { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, Help, type Option } from "commander";
import { registerCoordinatorCommand } from "./commands/coordinator.js";
import { registerDataCommand } from "./commands/data.js";
import { registerEvalCommand } from "./commands/eval.js";
import { registerExportCommand, registerSampleCommand } from "./commands/export.js";
import { registerLocalCommand } from "./commands/local.js";
import { registerTrainCommand } from "./commands/train.js";
import { registerWatchCommand } from "./commands/watch.js";
import { registerWorkerCommand } from "./commands/worker.js";
import { addNatsAuthOptions } from "./nats-options.js";
import { stopWhenOutputCloses, stopWhenParentDies } from "./orphan.js";

export function buildCli(): Command {
  const program = new Command("agon")
    .description("Distributed GAN training: coordinator, workers, gRPC and NATS")
    .version(agonVersion(), "-V, --version", "print agon's version")
    // Flag errors (unknown option, bad choice, missing value) as one `agon: error:` line,
    // like every other bad input; subcommands inherit this.
    .configureOutput({ outputError: (str, write) => write(oneErrorLine(str)) })
    // Options a command cannot run without say so in its --help; subcommands inherit this.
    .configureHelp({
      optionDescription(option) {
        const text = new Help().optionDescription(option);
        return option.mandatory ? `(required) ${text}` : text;
      },
    })
    .exitOverride();

  registerTrainCommand(program);
  registerCoordinatorCommand(program);
  registerWorkerCommand(program);
  registerLocalCommand(program);
  registerEvalCommand(program);
  registerWatchCommand(program);
  registerSampleCommand(program);
  registerExportCommand(program);
  registerDataCommand(program);

  for (const cmd of program.commands) {
    if (["coordinator", "worker", "watch", "local"].includes(cmd.name())) addNatsAuthOptions(cmd);
    if (ENV_COMMANDS.includes(cmd.name())) bindEnvironment(cmd);
    else bindBackendVariable(cmd);
  }
  return program;
}

/** The AGON_* variable whose value commander is parsing (bindEnvironment), else null. */
let parsingVariable: string | null = null;

/**
 * Commander's error text ("error: unknown option '--stepz'\n(Did you mean --steps?)")
 * as one line: `agon: error: unknown option '--stepz' (Did you mean --steps?); see --help`.
 */
export function oneErrorLine(text: string): string {
  const body = text
    .trim()
    .replace(/^error: /, "")
    .replace(/\s*\n\s*/g, " ")
    .replace(/\.$/, "")
    // commander's "option '--workers <n>' argument '0' is invalid. must be …" in our words.
    .replace(
      /^option '(-[^' ]+)(?:, (--[^' ]+))?(?: [<[][^'>\]]*[>\]])?' argument '([^']*)' is invalid\.? ?(.?)/,
      (_m, short: string, long: string | undefined, value: string, first: string) =>
        `${parsingVariable != null ? `${parsingVariable}=` : `${long ?? short} `}${JSON.stringify(value)}: ${first.toLowerCase()}`,
    );
  return `agon: error: ${body}; see --help\n`;
}

/** The long-running commands whose flags can also come from AGON_* variables (containers, manifests). */
export const ENV_COMMANDS = ["train", "coordinator", "worker", "local", "watch"];

/** `--run-dir` → `AGON_RUN_DIR`, `--no-nats` → `AGON_NO_NATS`: the variable that stands in for a flag. */
export function envName(option: Option): string {
  return `AGON_${option.negate ? "NO_" : ""}${option
    .attributeName()
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toUpperCase()}`;
}

/**
 * Every long flag of `cmd` may also be given as `AGON_<FLAG>` (see envName);
 * a flag on the command line wins over the variable, the variable over the
 * default. A boolean flag is on when its variable is set to anything but
 * "", "0", "false", "no" or "off".
 */
function bindEnvironment(cmd: Command, only: (o: Option) => boolean = () => true): void {
  for (const option of cmd.options) {
    if (!option.long || option.envVar || !only(option)) continue;
    const name = envName(option);
    const isBoolean = !option.required && !option.optional;
    if (isBoolean && /^(|0|false|no|off)$/i.test(process.env[name] ?? "x")) continue;
    option.env(name);
    // Commander wires the env listener when an option is added; these exist already.
    // A bad value is then blamed on the variable (oneErrorLine), not on the flag.
    cmd.on(`optionEnv:${option.name()}`, (value?: string) => {
      parsingVariable = name;
      try {
        (cmd as unknown as EventEmitter).emit(`option:${option.name()}`, value);
      } finally {
        parsingVariable = null;
      }
    });
  }
}

/**
 * AGON_BACKEND for every other command with a --backend (sample, eval, export and their
 * subcommands): a machine's backend is set once, in its environment, for every command.
 */
function bindBackendVariable(cmd: Command): void {
  bindEnvironment(cmd, (o) => o.long === "--backend");
  for (const sub of cmd.commands) bindBackendVariable(sub);
}

/**
 * The errors that are the user's to fix (bad flag, config, checkpoint, dataset,
 * NATS address, ...), by class name: one line and exit code 2. By name, not
 * class, so that main need not import every module a command might load
 * (test/cli-startup.test.ts checks that each class carries its name).
 */
export const USER_ERROR_NAMES: ReadonlySet<string> = new Set([
  "ConfigError",
  "DatasetError",
  "CheckpointError",
  "NatsError",
  "LocalError",
  "EvaluationError",
  "ClassifierError",
  "InceptionWeightsError",
  "WatchError",
  "ExportError",
  "SecurityError",
  "RunDirError",
  "ModelError",
  "WorkerNameInUseError",
]);

export async function main(argv: string[]): Promise<number> {
  stopWhenParentDies();
  stopWhenOutputCloses();
  const program = buildCli();
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (or the help text).
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof Error && USER_ERROR_NAMES.has(err.name)) {
      process.stderr.write(`agon: error: ${err.message}\n`);
      return 2;
    }
    const e = err as Error;
    process.stderr.write(`agon: error: ${e.message}\n`);
    if (process.env.AGON_DEBUG) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}

/** The version in agon's package.json (found above this file, from sources or dist/), or "unknown". */
export function agonVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
      if (pkg.name === "agon") return String(pkg.version);
    } catch {
      // not here: one level up
    }
    if (dirname(dir) === dir) return "unknown";
  }
}
