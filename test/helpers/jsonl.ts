import { readFileSync } from "node:fs";

/**
 * The complete lines of a JSON-lines file that a running process may be appending to, parsed.
 * A last line without its newline is a write in progress and is left out (reading it would
 * see half a JSON value). A missing file reads as no lines.
 */
export function completeJsonLines<T = Record<string, unknown>>(file: string): T[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  const end = text.lastIndexOf("\n");
  if (end < 0) return [];
  return text
    .slice(0, end)
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as T);
}
