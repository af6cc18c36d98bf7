#!/usr/bin/env node
// The `agon` command. Sources are TypeScript, run through tsx's loader so a
// clean clone works after `npm ci` with no build step. main.ts only defines the
// CLI (tests import it); running it happens here.
import { register } from "tsx/esm/api";

register();
const { main } = await import("./main.ts");
const code = await main(process.argv.slice(2));
// On failure exit now: a half-started command may hold sockets (NATS reconnects forever).
if (code !== 0) process.exit(code);
