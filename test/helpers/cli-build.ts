// The `agon` the tests start: the sources compiled into .test-cli/<hash>/ (the
// layout of dist/, plain JavaScript), so every `agon` process a test starts
// runs compiled code instead of registering tsx's loader and transpiling on
// each start (about 1 s of CPU per process on a 2-core machine, hundreds of
// processes per suite). The tests still run the current sources: the directory
// is named by a hash of them, checked each time a test file loads
// helpers/cli.ts (a few ms), and built when they changed (also in watch mode).
// Runtime files (the .proto, the dashboard, the FID assets) are symlinks to the
// sources. Also vitest's global setup, so the first files of both lanes find
// the tree built.
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");
/** Where the compiled trees live (gitignored); one subdirectory per source hash. */
export const BUILD_ROOT = join(ROOT, ".test-cli");
const SOURCE_DIRS = ["shared", "coordinator", "worker", "proto/gen"];
/** Read at run time relative to the compiled modules, as deploy/build.js copies them. */
const RUNTIME_FILES = ["proto/agon.proto", "coordinator/dashboard.html", "shared/assets"];
const ENTRY = "shared/cli/agon.js";
/** Plain JavaScript beside the entry (copied, hashed with the sources). */
const PLAIN_JS = ["shared/cli/source-hash.js"];
/** Bump when the tree is built differently: every hash changes with it. */
const BUILD_RECIPE = "transpileModule ES2022 v1";

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const rel = join(dir, e.name);
    if (e.isDirectory()) out.push(...tsFiles(rel));
    else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(rel);
  }
  return out;
}

/**
 * Compiles shared/, coordinator/, worker/ and proto/gen/ (TypeScript's
 * transpileModule with the project's target, ES modules) into
 * .test-cli/<hash>/ unless that tree is already there, and returns the path of
 * its agon.js. Safe to call from several test runs at once (each builds into a
 * temporary directory and renames it into place).
 */
export async function buildTestCli(): Promise<string> {
  const files = SOURCE_DIRS.flatMap(tsFiles).sort();
  const hash = createHash("sha256").update(BUILD_RECIPE);
  const sources = new Map<string, string>();
  for (const rel of [...files, ENTRY, ...PLAIN_JS]) {
    const text = readFileSync(join(ROOT, rel), "utf8");
    sources.set(rel, text);
    hash.update(`${rel}\0${text}\0`);
  }
  const id = hash.digest("hex").slice(0, 16);
  const out = join(BUILD_ROOT, id);
  const entry = join(out, ENTRY);
  if (existsSync(entry)) {
    const now = new Date();
    utimesSync(out, now, now); // in use: not pruned by another run's build
    return entry;
  }

  const { default: ts } = await import("typescript");
  const tmp = `${out}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  rmSync(tmp, { recursive: true, force: true });
  const compilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ES2022,
    esModuleInterop: true,
    verbatimModuleSyntax: false,
    isolatedModules: true,
  };
  for (const rel of files) {
    const { outputText } = ts.transpileModule(sources.get(rel)!, {
      compilerOptions,
      fileName: rel,
    });
    const target = join(tmp, rel.replace(/\.ts$/, ".js"));
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, outputText);
  }
  for (const rel of [ENTRY, ...PLAIN_JS]) cpSync(join(ROOT, rel), join(tmp, rel));
  for (const rel of RUNTIME_FILES) {
    const target = join(tmp, rel);
    mkdirSync(dirname(target), { recursive: true });
    symlinkSync(relative(dirname(join(out, rel)), join(ROOT, rel)), target);
  }
  try {
    renameSync(tmp, out);
  } catch (err) {
    // Another test run finished the same tree first.
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(entry)) throw err;
  }
  pruneOld(id);
  return entry;
}

/** Removes trees of older sources (and leftovers of interrupted builds) not touched for an hour. */
function pruneOld(keep: string): void {
  const hourAgo = Date.now() - 3_600_000;
  for (const name of readdirSync(BUILD_ROOT)) {
    if (name === keep) continue;
    const path = join(BUILD_ROOT, name);
    try {
      if (statSync(path).mtimeMs < hourAgo) rmSync(path, { recursive: true, force: true });
    } catch {}
  }
}

/**
 * Vitest globalSetup entry: builds the tree once before the lanes start. It also sets
 * AGON_BACKEND=wasm (the variable --backend falls back to), inherited by both lanes and every
 * `agon` they start: the tests compare runs with the bits of wasm runs (hashesOf and the
 * cluster helpers pass --backend wasm), and `auto` would pick blas on a machine with OpenBLAS.
 * Tests of auto and blas pass their backend (or AGON_BACKEND) themselves.
 */
export default async function setup(): Promise<void> {
  process.env.AGON_BACKEND = "wasm";
  await buildTestCli();
}
