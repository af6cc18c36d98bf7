#!/usr/bin/env node
// The `agon` command. In the built package (dist/, what `npm install` gives)
// this file sits beside the compiled main.js and runs it directly; in a clone
// without a build it runs the TypeScript sources through tsx's loader. main.ts
// only defines the CLI (tests import it); running it happens here.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const compiled = new URL("./main.js", import.meta.url);

/**
 * In a clone (a git checkout), dist/shared/cli/agon.js has the sources three folders up. A build made
 * from other sources than these (edited, pulled or reverted after `npm ci`) is not
 * run: the sources are, through tsx, and the first process of a command tree says so
 * in one line. Without tsx (a production install) the build runs, and the line says
 * that too. The check never stops the command: if the sources cannot be read, the
 * build runs.
 */
async function buildIsStale() {
  const root = fileURLToPath(new URL("../../../", import.meta.url));
  // A git checkout (a clone or a worktree) with its sources; an image or a package that
  // carries sources beside its build is not one.
  if (!existsSync(`${root}.git`) || !existsSync(`${root}shared/cli/main.ts`)) return false;
  let built = "";
  try {
    built = readFileSync(new URL("../../sources.sha256", import.meta.url), "utf8").trim();
  } catch {}
  let current;
  try {
    const { sourceHash } = await import("./source-hash.js");
    current = sourceHash(root);
  } catch {
    return false;
  }
  if (built === current) return false;
  const tsx = existsSync(`${root}node_modules/tsx`);
  if (process.env.AGON_STALE_BUILD_SAID !== "1") {
    const dir = root.replace(/\/$/, "");
    process.stderr.write(
      tsx
        ? `agon: ${dir}/dist/ was not built from the sources beside it; running them through tsx (npm run build in ${dir} makes start-up fast again)\n`
        : `agon: ${dir}/dist/ was not built from the sources beside it, and tsx is not installed to run them: running the old build (npm run build in ${dir} updates it)\n`,
    );
    process.env.AGON_STALE_BUILD_SAID = "1";
  }
  return tsx;
}

let main;
if (existsSync(compiled) && !(await buildIsStale())) {
  ({ main } = await import(compiled.href));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  // From dist/, the sources' main.ts; beside the sources, its own.
  const source = existsSync(compiled)
    ? new URL("../../../shared/cli/main.ts", import.meta.url)
    : new URL("./main.ts", import.meta.url);
  ({ main } = await import(source.href));
}
const code = await main(process.argv.slice(2));
// On failure exit now: a half-started command may hold sockets (NATS reconnects forever).
if (code !== 0) process.exit(code);
