// The package as a user gets it: `npm pack` (which builds dist/ through the
// `prepare` script), the tarball installed into an empty directory offline
// from the npm cache, and the installed `agon` run there: `--help`, and a
// 20-step `agon train` with the same weights as the sources give; and the
// typed API: docs/examples/api.ts compiled there with tsc against the
// package's .d.ts, then run (train, checkpoint, resume, sample).
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { runAgon, tempDir, tinyRing } from "./helpers/cli.js";

const ROOT = resolve(import.meta.dirname, "..");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], cwd: string, timeoutMs = 240_000): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, npm_config_audit: "false", npm_config_fund: "false" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", fail);
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

interface LockEntry {
  version?: string;
  dev?: boolean;
  [key: string]: unknown;
}

/**
 * A package-lock.json for an app that depends on only the tarball: the
 * tarball's runtime dependencies at exactly our lockfile's versions, so `npm
 * ci --offline` installs them from the npm cache by integrity, without the
 * registry's metadata (an online `npm install ./agon-*.tgz` resolves them itself).
 */
function consumerLock(tarball: string): object {
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as {
    packages: Record<string, LockEntry>;
  };
  const root = lock.packages[""];
  const packages: Record<string, unknown> = {
    "": { name: "consumer", dependencies: { agon: `file:${tarball}` } },
    "node_modules/agon": {
      version: root.version,
      resolved: `file:${tarball}`,
      license: root.license,
      dependencies: root.dependencies,
      optionalDependencies: root.optionalDependencies,
      bin: root.bin,
      engines: root.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path !== "" && !entry.dev) packages[path] = entry;
  }
  return { name: "consumer", lockfileVersion: 3, requires: true, packages };
}

function hashesOf(stdout: string): { step: number; hashes: { G: string; D: string } } {
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

describe("the npm package", () => {
  let app: string;
  let files: string[];

  beforeAll(async () => {
    const out = tempDir("agon-pack-");
    // npm pack runs `prepare`, which builds dist/ from the sources.
    const pack = await run("npm", ["pack", "--json", "--pack-destination", out], ROOT);
    expect(pack.code, pack.stderr).toBe(0);
    const [info] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf("["))) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    files = info.files.map((f) => f.path);
    app = join(out, "app");
    const tarball = join(out, info.filename);
    mkdirSync(app);
    writeFileSync(
      join(app, "package.json"),
      JSON.stringify({
        name: "consumer",
        private: true,
        type: "module",
        dependencies: { agon: `file:${tarball}` },
      }),
    );
    writeFileSync(join(app, "package-lock.json"), JSON.stringify(consumerLock(tarball)));
    // Offline: everything comes from the local npm cache, optional dependencies
    // included (sharp's libvips binary is one, and the datasets load sharp), without
    // install scripts (none is needed here).
    const install = await run(
      "npm",
      ["ci", "--offline", "--ignore-scripts", "--no-audit", "--no-fund"],
      app,
    );
    expect(install.code, install.stderr).toBe(0);
  }, 480_000);

  it("holds compiled JavaScript, type declarations and the run-time files, no sources or tests", () => {
    for (const f of [
      "package.json",
      "dist/shared/cli/agon.js",
      "dist/shared/cli/main.js",
      "dist/shared/cli/main.d.ts",
      "dist/proto/agon.proto",
      "dist/coordinator/dashboard.html",
      "dist/shared/assets/fid-classifier.json",
      // The Inception weights converter that error lines and docs/QUALITY.md name.
      "bench/convert_inception.py",
    ]) {
      expect(files).toContain(f);
    }
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    expect(
      files.filter(
        (f) => /^(test|bench|docs|deploy)\//.test(f) && f !== "bench/convert_inception.py",
      ),
    ).toEqual([]);
  });

  it("installs without a TypeScript loader, and `npx agon --help` runs there", async () => {
    expect(existsSync(join(app, "node_modules/agon/dist/shared/cli/main.js"))).toBe(true);
    expect(existsSync(join(app, "node_modules/tsx")), "tsx is not a runtime dependency").toBe(
      false,
    );
    const help = await run("npx", ["--offline", "agon", "--help"], app);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: agon/);
    expect(help.stdout).toMatch(/train \[options\]/);
  });

  it("trains 20 steps there, with the weights the sources give", async () => {
    const config = [...tinyRing({ steps: 20 }), "--backend", "cpu", "--json"];
    const installed = await run(
      "npx",
      ["--offline", "agon", "train", ...config, "--run-dir", join(app, "runs/ring")],
      app,
    );
    expect(installed.code, installed.stderr).toBe(0);
    const fromSources = await runAgon(["train", ...config, "--run-dir", tempDir()]);
    expect(fromSources.code, fromSources.stderr).toBe(0);
    expect(hashesOf(installed.stdout).step).toBe(20);
    expect(hashesOf(installed.stdout).hashes).toEqual(hashesOf(fromSources.stdout).hashes);
    expect(existsSync(join(app, "runs/ring/summary.json"))).toBe(true);
  });

  it("compiles the API example against the package's types and runs it: train, resume, checkpoint, sample", async () => {
    copyFileSync(join(ROOT, "docs/examples/api.ts"), join(app, "api.ts"));
    // Type errors a user would make must be errors (an unused @ts-expect-error fails tsc).
    writeFileSync(
      join(app, "typed.ts"),
      [
        'import { type RunConfigInput, train, loadCheckpoint, Coordinator, Worker, exportedModelFiles, sampleNoise } from "agon";',
        "export async function never(cfg: RunConfigInput): Promise<void> {",
        "  // @ts-expect-error steps is a number",
        '  await train({ ...cfg, steps: "10" });',
        "  // @ts-expect-error no such model",
        '  await train({ ...cfg, model: { name: "stylegan" } });',
        "  // @ts-expect-error no such backend",
        '  await train(cfg, { backend: "cuda" });',
        '  const step: number = (await loadCheckpoint(cfg.run?.dir ?? ".")).step;',
        "  // @ts-expect-error the result's step is a number",
        "  const wrong: string = (await train(cfg)).step;",
        "  // An export loads in Node through the package's file handler; sampleNoise gives agon sample's latents.",
        '  const handler: { load?: unknown } = exportedModelFiles("web-model");',
        "  const z: Float32Array = sampleNoise(1, 4, 8);",
        "  void [step, wrong, Coordinator, Worker, handler, z];",
        "}",
      ].join("\n"),
    );
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          skipLibCheck: true,
          types: ["node"],
          typeRoots: [join(ROOT, "node_modules/@types")],
        },
        files: ["api.ts", "typed.ts"],
      }),
    );
    const tsc = await run(
      process.execPath,
      [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", app],
      app,
    );
    expect(tsc.code, tsc.stdout + tsc.stderr).toBe(0);
    const work = tempDir("agon-api-");
    const example = await run(process.execPath, [join(app, "api.js"), work], app);
    expect(example.code, example.stderr).toBe(0);
    const result = JSON.parse(example.stdout.trim().split("\n").at(-1)!);
    expect(result.steps).toEqual([10, 20]);
    expect(result.resumedFrom).toBe(10);
    expect(result.checkpoint.step).toBe(20);
    expect(result.sample).toMatchObject({ count: 16, step: 20 });
    const png = readFileSync(join(work, "samples.png"));
    expect(png.subarray(0, 8)).toEqual(
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    );
  });
});
