// `npm run build`: compiles the sources to dist/ (ESM JavaScript and .d.ts)
// and copies what the compiled code reads at run time beside it, at the same
// relative paths as in the sources.

import { execFileSync } from "node:child_process";
import { cpSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { sourceHash } from "../shared/cli/source-hash.js";

const root = join(import.meta.dirname, "..");
const dist = join(root, "dist");
const RUNTIME_FILES = [
  "shared/cli/agon.js", // the bin: runs dist/shared/cli/main.js
  "shared/cli/source-hash.js", // the bin checks a clone's build against its sources
  "proto/agon.proto", // loaded by @grpc/proto-loader (shared/wire.ts)
  "coordinator/dashboard.html", // served by coordinator/http.ts
  "shared/assets", // the FID classifier's weights and reference statistics
];

// Hashed first: the stamp says what was compiled even if a file changes during the build.
const stamp = sourceHash(root);
// Built beside dist/ and swapped in only when complete, so a failed build leaves the
// previous dist/ (and the `agon` bin) in place.
const next = join(root, `dist.building-${process.pid}`);
rmSync(next, { recursive: true, force: true });
const tsc = join(
  dirname(createRequire(import.meta.url).resolve("typescript/package.json")),
  "bin/tsc",
);
try {
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", next], {
    stdio: "inherit",
  });
} catch {
  rmSync(next, { recursive: true, force: true });
  process.stderr.write("build: tsc reported the errors above; dist/ is unchanged\n");
  process.exit(1);
}
for (const file of RUNTIME_FILES) cpSync(join(root, file), join(next, file), { recursive: true });
// What the build was compiled from: the bin in a clone runs the sources instead of a stale build.
writeFileSync(join(next, "sources.sha256"), `${stamp}\n`);
rmSync(dist, { recursive: true, force: true });
renameSync(next, dist);
