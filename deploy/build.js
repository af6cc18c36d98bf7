// `npm run build`: compiles the sources to dist/ (ESM JavaScript and .d.ts)
// and copies what the compiled code reads at run time beside it, at the same
// relative paths as in the sources.

import { execFileSync } from "node:child_process";
import { cpSync, rmSync, writeFileSync } from "node:fs";
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

rmSync(dist, { recursive: true, force: true });
const tsc = join(
  dirname(createRequire(import.meta.url).resolve("typescript/package.json")),
  "bin/tsc",
);
execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], {
  stdio: "inherit",
});
for (const file of RUNTIME_FILES) cpSync(join(root, file), join(dist, file), { recursive: true });
// What the build was compiled from: the bin in a clone runs the sources instead of a stale build.
writeFileSync(join(dist, "sources.sha256"), `${sourceHash(root)}\n`);
