// The hash of the TypeScript sources a build of `agon` is compiled from. deploy/build.js
// writes it to dist/sources.sha256; the `agon` bin in a clone compares it with the
// sources' hash at start, so a build older than the sources (a `git pull` or an edit
// after `npm ci`) is never run by mistake. Plain JavaScript: it runs before anything
// is compiled.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The folders dist/ is made from: compiled (tsconfig.build.json's include) or copied
 * (the bin, the .proto, the dashboard, the classifiers' assets).
 */
export const SOURCE_DIRS = ["coordinator", "worker", "shared", "proto"];

/** Files outside SOURCE_DIRS that change what a build compiles. */
export const BUILD_FILES = ["tsconfig.json", "tsconfig.build.json", "deploy/build.js"];

/**
 * sha256 (hex) over the path and content of every regular file under SOURCE_DIRS of
 * `root` and of BUILD_FILES, in sorted path order (about 2 MB, a few ms). Skipped:
 * .d.ts files, hidden files and folders (editor swap and lock files, e.g. Emacs'
 * `.#name` symlinks), and anything that is not a regular file or folder (symlinks,
 * FIFOs, sockets). Throws what readdirSync/readFileSync throw when a folder or file
 * cannot be read.
 */
export function sourceHash(root) {
  const files = [];
  const walk = (dir) => {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
      if (e.name.startsWith(".")) continue;
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (e.isFile() && !e.name.endsWith(".d.ts")) files.push(rel);
    }
  };
  for (const dir of SOURCE_DIRS) walk(dir);
  for (const rel of BUILD_FILES) if (existsSync(join(root, rel))) files.push(rel);
  files.sort();
  const hash = createHash("sha256");
  for (const rel of files)
    hash
      .update(`${rel}\0`)
      .update(readFileSync(join(root, rel)))
      .update("\0");
  return hash.digest("hex");
}
