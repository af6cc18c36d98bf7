// Flags and flag parsers that several `agon` subcommands share. Light on
// purpose: the CLI loads this for `--help`, before any command runs.
import { type Command, Option } from "commander";
import { BACKEND_NAMES } from "../backend-names.js";
import { ConfigError, loadConfig, type RunConfig } from "../config.js";

/** Flags that are shorthands for config overrides: [flag, config key, help]. */
export const CONFIG_FLAGS: Array<[flag: string, key: string, help: string]> = [
  ["--model <name>", "model.name", "model: mlp | dcgan | resnet"],
  ["--loss <name>", "loss.name", "loss: non-saturating | minimax | wgan-gp | hinge | rpgan"],
  ["--dataset <name>", "dataset.name", "dataset: mnist | fashion-mnist | folder | prepared | ring"],
  ["--data-path <dir>", "dataset.path", "dataset directory for --dataset folder or prepared"],
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

/** Adds `--config`, `--set` and the CONFIG_FLAGS shorthands to `cmd`. */
export function addConfigOptions(cmd: Command): Command {
  cmd
    .option("-c, --config <file>", "run config (YAML or JSON)")
    .option(
      "--set <key=value...>",
      "override any config field, e.g. --set loss.name=hinge optimizer.g.lr=1e-4",
    );
  for (const [flag, , help] of CONFIG_FLAGS) cmd.option(flag, help);
  return cmd;
}

/** The run config that `--config`, `--set` and the shorthands describe; throws ConfigError. */
export function configFromOptions(opts: Record<string, unknown>): RunConfig {
  const overrides: string[] = [];
  /** Config key → where its value came from, so an error blames the flag, not the file. */
  const origins = new Map<string, string>();
  /**
   * Config key → [the shorthand that set it, its value]: a --set that disagrees is an error
   * (neither may silently win); a key given twice in --set takes the later value, as a
   * repeated flag does.
   */
  const given = new Map<string, [string, string]>();
  for (const [flag, key] of CONFIG_FLAGS) {
    const value = opts[optionKey(flag)];
    if (value !== undefined) {
      overrides.push(`${key}=${String(value)}`);
      const flagName = flag.split(" ")[0];
      // Commander reads AGON_<FLAG> only when the flag is absent: blame the one that was given.
      const env = envName(flagName);
      const source = process.env[env] === String(value) ? env : flagName;
      origins.set(key, source);
      given.set(key, [asGiven(source, String(value)), String(value)]);
    }
  }
  // AGON_SET carries several overrides in one variable, separated by spaces; commander reads it
  // only when no --set is given, so a single entry equal to it came from there.
  const sets = (opts.set as string[] | undefined) ?? [];
  const setSource =
    process.env.AGON_SET !== undefined && sets.length === 1 && sets[0] === process.env.AGON_SET
      ? "AGON_SET"
      : "--set";
  for (const entry of sets) {
    for (const o of entry.split(/\s+/).filter((s) => s !== "")) {
      if (o.indexOf("=") <= 0) {
        throw new ConfigError(
          `${asGiven(setSource, o)}: expected key.path=value (e.g. steps=2000)`,
        );
      }
      const key = o.slice(0, o.indexOf("="));
      const value = o.slice(key.length + 1);
      const earlier = given.get(key);
      if (earlier && earlier[1] !== value) {
        throw new ConfigError(
          `${earlier[0]} and ${asGiven(setSource, o)} both set ${key}, to different values; give it once`,
        );
      }
      overrides.push(o);
      origins.set(key, setSource);
    }
  }
  if (opts.config === undefined && overrides.length === 0) {
    throw new ConfigError(
      "no run config: pass -c FILE (e.g. -c docs/examples/mnist-dcgan.yaml) or --set key=value …; docs/CONFIG.md lists the fields",
    );
  }
  return loadConfig(opts.config as string | undefined, overrides, origins);
}

/** A value as the user gave it: `--steps 3` for a flag, `AGON_STEPS=3` for a variable. */
function asGiven(source: string, value: string): string {
  return source.startsWith("AGON_") ? `${source}=${value}` : `${source} ${value}`;
}

/** `--run-dir` → `AGON_RUN_DIR` (as shared/cli/main.ts binds the variables). */
function envName(flag: string): string {
  return `AGON_${flag.replace(/^--/, "").replace(/-/g, "_").toUpperCase()}`;
}

export const JOIN_TOKEN_HELP = "file holding the run's join token (default: $AGON_JOIN_TOKEN)";

/** `--backend <name>`, one of BACKEND_NAMES, default auto. */
export const backendOption = () =>
  new Option("--backend <name>", "compute backend").choices([...BACKEND_NAMES]).default("auto");

/** `value` if it is host:port (IPv6 in brackets), else ConfigError naming `flag`. */
export function parseHostPort(value: string, flag: string): string {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) > 65535)
    throw new ConfigError(`${flag}: expected host:port, got "${value}"`);
  return value;
}

/** A comma-separated `--nats` list as URLs; ConfigError on an empty list or a non-NATS URL. */
export function parseNatsUrls(value: string): string[] {
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

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };

/**
 * A duration flag ("90s", "10m", "1h", "500ms"; a bare number is seconds) in
 * milliseconds, a non-negative integer; ConfigError naming `flag` otherwise.
 */
export function parseDuration(value: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$/.exec(value);
  if (!m) throw new ConfigError(`${flag}: expected a duration like 90s, 10m or 0, got "${value}"`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? "s"]);
}
