// `agon --help` and the help of each command start without loading
// TensorFlow.js, gRPC or NATS: every subcommand imports what it runs only when
// it runs (shared/cli/commands/). Start-up times are printed, not asserted.
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { CheckpointError } from "../coordinator/checkpoint.js";
import { EvaluationError } from "../coordinator/eval.js";
import { ExportError } from "../coordinator/export.js";
import { LocalError } from "../coordinator/local.js";
import { RunDirError } from "../coordinator/rundir.js";
import { WatchError } from "../coordinator/watch.js";
import { USER_ERROR_NAMES } from "../shared/cli/main.js";
// @ts-expect-error: plain JavaScript without types (the bin imports it before anything is compiled)
import { SOURCE_DIRS, sourceHash } from "../shared/cli/source-hash.js";
import { ConfigError } from "../shared/config.js";
import { DatasetError } from "../shared/data/index.js";
import { ClassifierError } from "../shared/features/classifier.js";
import { InceptionWeightsError } from "../shared/features/inception.js";
import { ModelError } from "../shared/models/errors.js";
import { NatsError } from "../shared/nats.js";
import { SecurityError } from "../shared/security.js";
import { WorkerNameInUseError } from "../worker/worker.js";
import { AGON, runAgon, tempDir, tinyRing } from "./helpers/cli.js";

const TRACE = ["--import", resolve(import.meta.dirname, "helpers/trace-imports.js")];
const HEAVY = ["@tensorflow/", "@grpc/", "@nats-io/", "prom-client", "webgpu", "sharp"];

/** Runs agon with every resolved module URL recorded; returns the result, the URLs and the wall time. */
async function traced(args: string[]) {
  const file = join(tempDir(), "imports.txt");
  const t0 = performance.now();
  const r = await runAgon(args, { env: { AGON_TRACE_IMPORTS: file }, nodeArgs: TRACE });
  const ms = performance.now() - t0;
  const urls = readFileSync(file, "utf8").split("\n").filter(Boolean);
  return { ...r, urls, ms };
}

const heavyIn = (urls: string[]) =>
  [...new Set(urls.filter((u) => HEAVY.some((h) => u.includes(`/node_modules/${h}`))))].map((u) =>
    u.replace(/^.*\/node_modules\//, ""),
  );

describe("agon start-up", () => {
  it.each([
    "--help",
    "worker --help",
    "coordinator --help",
    "watch --help",
    "sample --help",
    "local --help",
    "data --help",
    "data prepare --help",
  ])("agon %s loads no TensorFlow.js, gRPC or NATS", async (command) => {
    const r = await traced(command.split(" "));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: agon/);
    expect(r.urls.length).toBeGreaterThan(0); // the trace works
    expect(heavyIn(r.urls)).toEqual([]);
    console.log(`agon ${command}: ${r.ms.toFixed(0)} ms (under test load, compiled sources)`);
  });

  it("a command's --help marks the options it cannot run without as (required)", async () => {
    for (const [command, required, optional] of [
      ["sample", ["--checkpoint", "--out"], "--n"],
      ["worker", ["--coordinator"], "--name"],
      ["data prepare", ["--out"], "--resolution"],
    ] as const) {
      const r = await runAgon([...command.split(" "), "--help"]);
      expect(r.code, r.stderr).toBe(0);
      for (const flag of required)
        expect(r.stdout).toMatch(new RegExp(`${flag} <[^>]+>\\s+\\(required\\)`));
      expect(r.stdout).not.toMatch(new RegExp(`${optional} <[^>]+>\\s+\\(required\\)`));
    }
  });

  it("agon --version prints package.json's version and loads nothing heavy", async () => {
    const r = await traced(["--version"]);
    expect(r.code, r.stderr).toBe(0);
    const pkg = JSON.parse(readFileSync(resolve(import.meta.dirname, "../package.json"), "utf8"));
    expect(r.stdout.trim()).toBe(pkg.version);
    expect(heavyIn(r.urls)).toEqual([]);
  });

  it("a command loads its heavy modules only when it runs, and still trains", async () => {
    const r = await traced([
      "train",
      ...tinyRing({ steps: 1 }),
      "--run-dir",
      tempDir(),
      "--backend",
      "cpu",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split("\n").at(-1)!).step).toBe(1);
    expect(heavyIn(r.urls).some((u) => u.startsWith("@tensorflow/tfjs-core/"))).toBe(true);
  });

  it("in a clone, a dist/ built from other sources is not run: the sources are, and one line says so", async () => {
    // A clone: the real sources and node_modules, and a dist/ (the tests' compiled tree, the
    // layout of dist/) whose sources.sha256 says what it was built from.
    const ROOT = resolve(import.meta.dirname, "..");
    const clone = tempDir();
    const tops = new Set([...SOURCE_DIRS.map((d: string) => d.split("/")[0]), "node_modules"]);
    for (const dir of tops) symlinkSync(join(ROOT, dir), join(clone, dir));
    cpSync(join(ROOT, "package.json"), join(clone, "package.json"));
    mkdirSync(join(clone, ".git")); // a git checkout: images and packages are not checked
    const dist = join(clone, "dist");
    cpSync(resolve(dirname(AGON), "../.."), dist, { recursive: true, verbatimSymlinks: true });
    const bin = join(dist, "shared/cli/agon.js");
    const run = (stamp: string, env: NodeJS.ProcessEnv = {}) => {
      writeFileSync(join(dist, "sources.sha256"), `${stamp}\n`);
      const file = join(tempDir(), "imports.txt");
      const r = spawnSync(process.execPath, [...TRACE, bin, "--version"], {
        env: { ...process.env, AGON_TRACE_IMPORTS: file, ...env },
        encoding: "utf8",
      });
      const urls = readFileSync(file, "utf8").split("\n").filter(Boolean);
      return { ...r, ranSources: urls.some((u) => u.endsWith("/shared/cli/main.ts")) };
    };
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));

    const fresh = run(sourceHash(clone));
    expect(fresh.status, fresh.stderr).toBe(0);
    expect(fresh.stdout.trim()).toBe(pkg.version);
    expect(fresh.stderr).toBe("");
    expect(fresh.ranSources).toBe(false);

    const stale = run("0".repeat(64));
    expect(stale.status, stale.stderr).toBe(0);
    expect(stale.stdout.trim()).toBe(pkg.version);
    expect(stale.stderr.trim().split("\n")).toEqual([
      `agon: ${clone}/dist/ was not built from the sources beside it; running them through tsx (npm run build in ${clone} makes start-up fast again)`,
    ]);
    expect(stale.ranSources).toBe(true);

    // Sources beside a build outside a git checkout (a container image): the build runs, quietly.
    rmSync(join(clone, ".git"), { recursive: true });
    const image = run("0".repeat(64));
    expect(image.stderr).toBe("");
    expect(image.ranSources).toBe(false);
    mkdirSync(join(clone, ".git"));

    // The children of a command (agon local's) inherit that it was said.
    const child = run("0".repeat(64), { AGON_STALE_BUILD_SAID: "1" });
    expect(child.stderr).toBe("");
    expect(child.ranSources).toBe(true);
  });

  it("the source hash reads regular files only: editor lock links, FIFOs and hidden files change nothing", () => {
    const root = tempDir();
    for (const dir of SOURCE_DIRS) mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, "shared/a.ts"), "export const a = 1;\n");
    writeFileSync(join(root, "proto/agon.proto"), 'syntax = "proto3";\n');
    const before = sourceHash(root);
    symlinkSync("root@host.1234:1700000000", join(root, "shared/.#a.ts")); // Emacs' lock file
    symlinkSync(root, join(root, "shared/loop")); // a link to a folder
    writeFileSync(join(root, "shared/.a.ts.swp"), "vim");
    expect(spawnSync("mkfifo", [join(root, "worker/pipe")]).status).toBe(0);
    expect(sourceHash(root)).toBe(before);
    writeFileSync(join(root, "shared/a.ts"), "export const a = 2;\n");
    expect(sourceHash(root)).not.toBe(before);
    writeFileSync(join(root, "tsconfig.build.json"), "{}\n"); // what a build compiles
    const withConfig = sourceHash(root);
    writeFileSync(join(root, "tsconfig.build.json"), '{ "include": [] }\n');
    expect(sourceHash(root)).not.toBe(withConfig);
  });

  it("a bad flag value is still one agon: error line and exit 2", async () => {
    const r = await runAgon(["worker", "--coordinator", "nowhere", "--nats", "nats://h:1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^agon: error: --coordinator: expected host:port/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("a run command without any config says how to give one, in one line, exit 2", async () => {
    for (const cmd of ["train", "local"]) {
      const r = await runAgon([cmd]);
      expect(r.code, cmd).toBe(2);
      expect(r.stderr).toMatch(/^agon: error: no run config: pass -c FILE/);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });

  it("every user-error class carries the name main recognises it by", () => {
    const classes = [
      ConfigError,
      DatasetError,
      CheckpointError,
      NatsError,
      LocalError,
      EvaluationError,
      ClassifierError,
      InceptionWeightsError,
      WatchError,
      ExportError,
      SecurityError,
      RunDirError,
      ModelError,
      WorkerNameInUseError,
    ];
    const names = classes.map((Cls) => new Cls("x").name);
    expect(names).toEqual(classes.map((Cls) => Cls.name));
    expect(new Set(names)).toEqual(USER_ERROR_NAMES);
  });
});
