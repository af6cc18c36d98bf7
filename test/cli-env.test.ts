// Every flag of the long-running commands can come from an AGON_* variable
// (containers and manifests need no wrapper scripts): the variable beats the
// default, the flag beats the variable, and a bad value gets the same one-line
// error as the flag would.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runAgon, tempDir, tinyRing } from "./helpers/cli.js";

function summary(stdout: string): { step: number; runDir: string; hashes: { G: string } } {
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

describe("AGON_* variables", () => {
  it("stand in for flags; a flag on the command line wins", async () => {
    const dir = tempDir();
    const fromEnv = await runAgon(["train", ...tinyRing({ steps: 3 }).slice(0, -6), "--json"], {
      env: {
        AGON_STEPS: "2",
        AGON_SHARDS: "2",
        AGON_BATCH: "16",
        AGON_RUN_DIR: join(dir, "a"),
        AGON_SEED: "7",
        AGON_FRESH: "1",
      },
    });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);
    expect(summary(fromEnv.stdout).step).toBe(2);
    expect(summary(fromEnv.stdout).runDir).toBe(join(dir, "a"));

    // The same run given as flags ends with the same weights.
    const fromFlags = await runAgon([
      "train",
      ...tinyRing({ steps: 2, shards: 2, batch: 16 }),
      "--seed",
      "7",
      "--run-dir",
      join(dir, "b"),
      "--json",
    ]);
    expect(fromFlags.code, fromFlags.stderr).toBe(0);
    expect(summary(fromFlags.stdout).hashes).toEqual(summary(fromEnv.stdout).hashes);

    // AGON_SET carries several overrides (here all of tinyRing's --set ones, plus the seed).
    const ring = tinyRing({ steps: 2, shards: 2, batch: 16 });
    const sets = ring.slice(ring.indexOf("--set") + 1, ring.indexOf("--steps"));
    const viaSet = await runAgon(
      ["train", "--dataset", "ring", "--model", "mlp", "--steps", "2", "--shards", "2"],
      {
        env: {
          AGON_BATCH: "16",
          AGON_SET: [...sets, "seed=7"].join(" "),
          AGON_RUN_DIR: join(dir, "d"),
          AGON_JSON: "true",
        },
      },
    );
    expect(viaSet.code, viaSet.stderr).toBe(0);
    expect(summary(viaSet.stdout).hashes).toEqual(summary(fromEnv.stdout).hashes);

    // A flag beats its variable.
    const both = await runAgon(
      ["train", ...tinyRing({ steps: 3, shards: 2, batch: 16 }), "--json", "--fresh"],
      { env: { AGON_STEPS: "1", AGON_RUN_DIR: join(dir, "c") } },
    );
    expect(both.code, both.stderr).toBe(0);
    expect(summary(both.stdout).step).toBe(3);
  });

  it("a boolean variable set to 0, false, no or off is off; a bad value fails in one line", async () => {
    const dir = tempDir();
    const first = await runAgon(
      ["train", ...tinyRing({ steps: 2, shards: 2, batch: 16 }), "--json"],
      { env: { AGON_RUN_DIR: dir } },
    );
    expect(first.code, first.stderr).toBe(0);
    // AGON_FRESH=0: not fresh, so the finished run is found and resumed.
    const again = await runAgon(
      ["train", ...tinyRing({ steps: 2, shards: 2, batch: 16 }), "--json"],
      { env: { AGON_RUN_DIR: dir, AGON_FRESH: "0" } },
    );
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout.trim().split("\n").at(-1)!).resumedFrom).toBe(2);
    // So is AGON_FRESH=no (or off): the run is resumed again, not archived.
    const no = await runAgon(["train", ...tinyRing({ steps: 2, shards: 2, batch: 16 }), "--json"], {
      env: { AGON_RUN_DIR: dir, AGON_FRESH: "no" },
    });
    expect(no.code, no.stderr).toBe(0);
    expect(JSON.parse(no.stdout.trim().split("\n").at(-1)!).resumedFrom).toBe(2);

    // AGON_BACKEND reaches the short commands too (sample, eval, export), alone of their flags.
    const [sampled, badBackend] = await Promise.all([
      runAgon(["sample", "--checkpoint", dir, "--out", join(dir, "grid.png")], {
        env: { AGON_BACKEND: "cpu", AGON_OUT: join(dir, "ignored.png") },
      }),
      runAgon(["sample", "--checkpoint", dir, "--out", join(dir, "grid.png")], {
        env: { AGON_BACKEND: "nonsense" },
      }),
    ]);
    expect(sampled.code, sampled.stderr).toBe(0);
    expect(sampled.stderr).toMatch(/^backend: cpu/m);
    expect(existsSync(join(dir, "grid.png"))).toBe(true);
    expect(existsSync(join(dir, "ignored.png"))).toBe(false);
    expect(badBackend.code).toBe(2);
    expect(badBackend.stderr).toMatch(
      /^agon: error: AGON_BACKEND="nonsense": allowed choices are /,
    );
    expect(badBackend.stderr.trim().split("\n")).toHaveLength(1);

    const bad = await runAgon(["worker"], {
      env: { AGON_COORDINATOR: "not an address", AGON_NATS: "nats://127.0.0.1:1" },
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^agon: error: --coordinator: expected host:port/);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
  });
});
