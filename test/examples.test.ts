// Every example config in docs/examples/ parses as a run config, so the docs cannot rot.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../shared/config.js";

const dir = join(import.meta.dirname, "../docs/examples");
const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));

describe("docs/examples", () => {
  it("has example configs", () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
  });
  for (const file of files) {
    it(`${file} parses as a run config`, () => {
      const cfg = loadConfig(join(dir, file));
      expect(cfg.steps).toBeGreaterThan(0);
    });
  }
});
