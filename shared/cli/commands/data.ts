// `agon data prepare` and `agon data inspect`: the dataset tool's command line.
// sharp and the dataset code are imported when the command runs.

import { availableParallelism } from "node:os";
import type { SingleBar } from "cli-progress";
import { type Command, InvalidArgumentError, Option } from "commander";

function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) {
      throw new InvalidArgumentError(
        `expected an integer from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : " up"}`,
      );
    }
    return n;
  };
}

/** A progress bar with rate and ETA on stderr (a line every few seconds when it is not a terminal). */
async function progressBar(unit: string): Promise<SingleBar> {
  const { SingleBar } = await import("cli-progress");
  return new SingleBar({
    format: `{bar} {percentage}% | {value}/{total} ${unit} | {speed} ${unit}/s | ETA {eta_formatted}`,
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 2000,
    etaBuffer: 200,
    hideCursor: false,
  });
}

export function registerDataCommand(program: Command): void {
  const data = program
    .command("data")
    .description("prepare and inspect datasets (see docs/DATA.md)");

  data
    .command("prepare")
    .description(
      "turn an image folder, mnist / fashion-mnist or a prepared dataset into a prepared dataset",
    )
    .argument(
      "<source>",
      "image folder (searched recursively), mnist, fashion-mnist, or a prepared dataset directory",
    )
    .requiredOption("--out <dir>", "output directory (must not exist or be empty)")
    .option(
      "--resolution <n>",
      "side of the square images, 8-512 (default: the source's; 64 for folders)",
      intArg(8, 512),
    )
    .addOption(
      new Option(
        "--channels <n>",
        "1 (gray) or 3 (RGB) (default: the source's; 3 for folders)",
      ).choices(["1", "3"]),
    )
    .addOption(
      new Option("--crop <mode>", "center: center-crop to square then resize; none: stretch")
        .choices(["center", "none"])
        .default("center"),
    )
    .addOption(
      new Option("--background <color>", "what transparent pixels become")
        .choices(["white", "black"])
        .default("white"),
    )
    .addOption(
      new Option(
        "--on-error <mode>",
        "bad image files: skip (listed in the manifest) or fail at the first",
      )
        .choices(["skip", "fail"])
        .default("skip"),
    )
    .option(
      "--labels <how>",
      "folders (first-level subfolder = class), none, or a .csv/.json file mapping relative path to label (default: folders when every image is in a subfolder)",
    )
    .addOption(
      new Option("--split <split>", "mnist / fashion-mnist split")
        .choices(["train", "test"])
        .default("train"),
    )
    .option("--limit <n>", "keep at most the first n images", intArg(1))
    .option(
      "--chunk-kb <n>",
      "target chunk file size in KiB (whole rows per chunk)",
      intArg(1, 1 << 20),
      1024,
    )
    .option(
      "--jobs <n>",
      "images decoded at once",
      intArg(1, 256),
      Math.min(availableParallelism(), 8),
    )
    .action(async (source: string, opts) => {
      const { prepareDataset, prepareSummary } = await import("../../data/prepare.js");
      const bar = await progressBar("images");
      let started = false;
      const t0 = performance.now();
      try {
        const manifest = await prepareDataset(source, {
          out: opts.out,
          resolution: opts.resolution,
          channels: opts.channels === undefined ? undefined : (Number(opts.channels) as 1 | 3),
          crop: opts.crop,
          background: opts.background,
          onError: opts.onError,
          labels: opts.labels,
          jobs: opts.jobs,
          split: opts.split,
          limit: opts.limit,
          chunkBytes: opts.chunkKb * 1024,
          onProgress: (done, total) => {
            if (!started) {
              bar.start(total, 0, { speed: "0" });
              started = true;
            }
            const s = (performance.now() - t0) / 1000;
            bar.update(done, { speed: s > 0 ? (done / s).toFixed(0) : "0" });
          },
        });
        if (started) bar.stop();
        process.stderr.write(
          `${prepareSummary(manifest, opts.out, (performance.now() - t0) / 1000)}\n`,
        );
      } catch (err) {
        if (started) bar.stop();
        throw err;
      }
    });

  data
    .command("inspect")
    .description(
      "counts, classes and fingerprint of a prepared dataset; --verify checks every chunk",
    )
    .argument("<dir>", "prepared dataset directory")
    .option("--verify", "read every chunk and check its sha256")
    .option("--grid <file.png>", "write a PNG of samples, one row per class")
    .option("--json", "print the report as JSON on stdout")
    .action(async (dir: string, opts) => {
      const { formatInspect, inspectDataset } = await import("../../data/inspect.js");
      const { DatasetError } = await import("../../data/errors.js");
      const bar = await progressBar("chunks");
      let started = false;
      const report = inspectDataset(dir, {
        verify: Boolean(opts.verify),
        grid: opts.grid,
        onVerify: process.stderr.isTTY
          ? (done, total) => {
              if (!started) bar.start(total, 0, { speed: "-" });
              started = true;
              bar.update(done);
            }
          : undefined,
      });
      if (started) bar.stop();
      if (opts.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else process.stdout.write(`${formatInspect(report).join("\n")}\n`);
      if (report.damaged && report.damaged.length > 0) {
        throw new DatasetError(
          `${report.damaged.length} damaged chunks in ${dir}; copy them again or prepare the dataset again`,
        );
      }
    });
}
