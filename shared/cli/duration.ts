// Durations as flags take them: "90s", "10m", "1h", "500ms", or bare seconds.
import { ConfigError } from "../config.js";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };

/**
 * Parses a duration flag into milliseconds (a non-negative integer). A bare
 * number means seconds; "0" means 0. Throws ConfigError naming `flag` when the
 * value is not a number with an optional unit ms | s | m | min | h.
 */
export function parseDuration(value: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$/.exec(value);
  if (!m) throw new ConfigError(`${flag}: expected a duration like 90s, 10m or 0, got "${value}"`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? "s"]);
}
