#!/usr/bin/env node
// The `agon` command. Sources are TypeScript, run through tsx's loader so a
// clean clone works after `npm ci` with no build step. main.ts only defines the
// CLI (tests import it); running it happens here.
import { register } from "tsx/esm/api";

register();
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2));
