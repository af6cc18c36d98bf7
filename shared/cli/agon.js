#!/usr/bin/env node
// The `agon` command. In the built package (dist/, what `npm install` gives)
// this file sits beside the compiled main.js and runs it directly; in a clone
// without a build it runs the TypeScript sources through tsx's loader. main.ts
// only defines the CLI (tests import it); running it happens here.
import { existsSync } from "node:fs";

const compiled = new URL("./main.js", import.meta.url);
let main;
if (existsSync(compiled)) {
  ({ main } = await import(compiled.href));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("./main.ts"));
}
const code = await main(process.argv.slice(2));
// On failure exit now: a half-started command may hold sockets (NATS reconnects forever).
if (code !== 0) process.exit(code);
