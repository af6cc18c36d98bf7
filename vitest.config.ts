import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Tests spawn real processes and train real models: run files one at a time
    // on this 2-core machine so timings inside a test stay sane.
    fileParallelism: false,
    pool: "forks",
  },
});
