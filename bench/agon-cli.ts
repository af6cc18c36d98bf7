// The benchmarks' way to run the `agon` CLI (the sources, through the current node) as a
// child process and wait for it.
import { spawn } from "node:child_process";
import { resolve } from "node:path";

const AGON = resolve(import.meta.dirname, "../shared/cli/agon.js");

/**
 * Runs `agon args` to its end; resolves with its stdout, rejects with an Error naming the
 * command, its exit code and its last stderr line when it exits non-zero. With `label`,
 * its stderr is echoed to ours with `[label] ` in front of each chunk.
 */
export function agonCli(args: string[], label?: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [AGON, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
      if (label) process.stderr.write(`[${label}] ${d}`);
    });
    child.on("close", (code) => {
      if (code === 0) resolvePromise(out);
      else reject(new Error(`agon ${args[0]} exited ${code}: ${err.trim().split("\n").pop()}`));
    });
  });
}
