// The hash of the TypeScript sources a build of `agon` is compiled from. deploy/build.js
// writes it to dist/sources.sha256; the `agon` bin in a clone compares it with the
// sources' hash at start, so a build older than the sources (a `git pull` or an edit
// after `npm ci`) is never run by mistake. Plain JavaScript: it runs before anything
// is compiled.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The folders dist/ is made from: compiled (tsconfig.build.json's include) or copied
 * (the bin, the .proto, the dashboard, the classifiers' assets).
 */
export const SOURCE_DIRS = ["coordinator", "worker", "shared", "proto"];

/**
 * sha256 (hex) over the path and content of every file (not .d.ts) under SOURCE_DIRS
 * of `root`, in sorted path order (about 2 MB, a few ms). Throws what
 * readdirSync/readFileSync throw when a folder is unreadable.
 */
export function sourceHash(root) {
  const files = [];
  const walk = (dir) => {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (!e.name.endsWith(".d.ts")) files.push(rel);
    }
  };
  for (const dir of SOURCE_DIRS) walk(dir);
  files.sort();
  const hash = createHash("sha256");
  for (const rel of files)
    hash
      .update(`${rel}\0`)
      .update(readFileSync(join(root, rel)))
      .update("\0");
  return hash.digest("hex");
}
