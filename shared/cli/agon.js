#!/usr/bin/env node
// The `agon` command. Sources are TypeScript, run through tsx's loader so a
// clean clone works after `npm ci` with no build step.
import { register } from "tsx/esm/api";

register();
await import("./main.ts");
