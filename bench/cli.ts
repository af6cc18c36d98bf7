// `npm run bench -- cli`: how long `agon` takes to start. `agon --help`,
// `agon worker --help`, and `agon train` up to the end of its first step (a
// tiny ring MLP on the cpu backend: the step itself takes milliseconds), each
// run as its own process, for the compiled package (dist/, what `npx agon`
// runs) and the TypeScript sources through tsx (`node shared/cli/agon.js`).
// `--ref <git-ref>` adds another revision's sources (git archive into a temp
// dir), e.g. the commit before the lazy CLI, for a before/after table.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { machineInfo } from "./machine.js";
import { fmtMs, median, textTable } from "./stats.js";

const ROOT = resolve(import.meta.dirname, "..");

interface Entry {
  label: string;
  /** The `agon` script to run with node. */
  cli: string;
}

interface Command {
  label: string;
  args: (runDir: string) => string[];
  /** Milliseconds from spawn to the moment measured; default: to the process's exit. */
  until?: (spawnedAt: number, runDir: string) => number;
}

const RING = [
  "--dataset",
  "ring",
  "--model",
  "mlp",
  "--set",
  "model.latentDim=4",
  "model.gHidden=[16,16]",
  "model.dHidden=[16,16]",
  "dataset.size=512",
  "--shards",
  "4",
  "--batch",
  "32",
];

const COMMANDS: Command[] = [
  { label: "agon --help", args: () => ["--help"] },
  { label: "agon worker --help", args: () => ["worker", "--help"] },
  {
    label: "agon train, to step 1",
    args: (dir) => ["train", ...RING, "--steps", "2", "--backend", "cpu", "--run-dir", dir],
    // The first step's last phase, as metrics.jsonl timestamps it (wall clock, ms).
    until: (spawnedAt, dir) => {
      const phases = readFileSync(join(dir, "metrics.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { step: number; time: string });
      const firstStep = phases.filter((p) => p.step === phases[0].step).at(-1)!;
      return Date.parse(firstStep.time) - spawnedAt;
    },
  },
];

function timeOnce(cli: string, cmd: Command): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "agon-bench-cli-"));
  const spawnedAt = Date.now();
  const t0 = performance.now();
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [cli, ...cmd.args(dir)], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (b: Buffer) => {
      err += b.toString();
    });
    child.on("close", (code) => {
      const ms = performance.now() - t0;
      try {
        if (code !== 0) throw new Error(`${cmd.label} exited ${code}: ${err.slice(-1000)}`);
        done(cmd.until ? cmd.until(spawnedAt, dir) : ms);
      } catch (e) {
        fail(e);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

/** Another revision's tree (sources only) in a temp dir, sharing this checkout's node_modules. */
function checkoutRef(ref: string): string {
  const dir = mkdtempSync(join(tmpdir(), "agon-bench-ref-"));
  const tar = execFileSync("git", ["archive", "--format=tar", ref], {
    cwd: ROOT,
    maxBuffer: 1 << 30,
  });
  execFileSync("tar", ["-x", "-C", dir], { input: tar });
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
  return dir;
}

export async function runCliBench(argv: string[]): Promise<number> {
  if (argv.includes("--help")) {
    process.stdout.write("usage: npm run bench -- cli [--runs N] [--ref <git-ref>] [--no-build]\n");
    return 0;
  }
  const at = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const runs = Number(at("--runs") ?? 5);
  const ref = at("--ref");

  if (!argv.includes("--no-build") || !existsSync(join(ROOT, "dist/shared/cli/main.js"))) {
    process.stderr.write("building dist/ (npm run build)\n");
    execFileSync("npm", ["run", "--silent", "build"], { cwd: ROOT, stdio: "inherit" });
  }
  const entries: Entry[] = [
    { label: "dist (compiled, npx agon)", cli: join(ROOT, "dist/shared/cli/agon.js") },
    { label: "sources (tsx)", cli: join(ROOT, "shared/cli/agon.js") },
  ];
  let refDir: string | undefined;
  if (ref) {
    refDir = checkoutRef(ref);
    entries.push({ label: `${ref} sources (tsx)`, cli: join(refDir, "shared/cli/agon.js") });
  }

  const m = machineInfo();
  process.stdout.write(
    `cli start-up: ${m.cpuModel}, ${m.cores} cores, node ${m.node}, load ${m.loadAvg.join(" ")}; median (min) of ${runs} runs, ms\n\n`,
  );
  const rows: string[][] = [];
  try {
    for (const entry of entries) {
      // One unmeasured run warms the OS file cache (and tsx's transform cache).
      await timeOnce(entry.cli, COMMANDS[0]);
      const row = [entry.label];
      for (const cmd of COMMANDS) {
        const times: number[] = [];
        for (let i = 0; i < runs; i++) times.push(await timeOnce(entry.cli, cmd));
        row.push(`${fmtMs(median(times))} (${fmtMs(Math.min(...times))})`);
      }
      rows.push(row);
    }
  } finally {
    if (refDir) rmSync(refDir, { recursive: true, force: true });
  }
  const header = ["entry", ...COMMANDS.map((c) => c.label)];
  process.stdout.write(`${textTable(header, rows, new Set([1, 2, 3]))}\n`);
  return 0;
}
