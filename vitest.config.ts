import { defineConfig } from "vitest/config";

/**
 * Test files that mostly wait (a 90 s coordinator outage; podman pulling
 * Debian and building images): they run in a lane of their own, beside the
 * CPU-bound files, instead of holding up the single file-at-a-time lane.
 */
const WAITING = ["test/patience.test.ts", "test/containers.test.ts"];

export default defineConfig({
  test: {
    // Compiles the sources once, for the `agon` processes the tests start.
    globalSetup: ["test/helpers/cli-build.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Tests spawn real processes and train real models: within a lane, files run
    // one at a time on a 2-core machine so timings inside a test stay sane. The
    // two lanes (one pool each: forks and threads) run side by side.
    fileParallelism: false,
    projects: [
      {
        extends: true,
        test: {
          name: "main",
          include: ["test/**/*.test.ts"],
          exclude: WAITING,
          pool: "forks",
        },
      },
      {
        extends: true,
        test: {
          name: "waiting",
          include: WAITING,
          pool: "threads",
        },
      },
    ],
  },
});
