// `npm run bench -- <name> [options]`: a small dispatcher of named benchmarks.
import { runAugmentCurvesBench } from "./augment-curves.js";
import { runCliBench } from "./cli.js";
import { runDataBench } from "./data.js";
import { runDistributedBench } from "./distributed.js";
import { runEvalBench } from "./eval.js";
import { runFaultsBench } from "./faults.js";
import { runQualityBench } from "./quality.js";
import { runStepBench } from "./step.js";
import { runUpdateBench } from "./update.js";

interface Benchmark {
  summary: string;
  run: (argv: string[]) => Promise<number>;
}

const BENCHMARKS: Record<string, Benchmark> = {
  step: {
    summary: "ms per full training step (D + G phase) per model × backend, single process",
    run: runStepBench,
  },
  distributed: {
    summary: "agon local vs agon train overhead, 2 vs 1 worker scaling, bytes and time per phase",
    run: runDistributedBench,
  },
  data: {
    summary:
      "prepare images/s; worker start-up and peak RSS on 10k vs 100k prepared 64x64 images (streamed) and in RAM",
    run: runDataBench,
  },
  cli: {
    summary: "start-up time of agon --help, agon worker --help and agon train to its first step",
    run: runCliBench,
  },
  faults: {
    summary: "recovery after worker loss and coordinator restart; checkpoint write cost",
    run: runFaultsBench,
  },
  eval: {
    summary: "cost of evaluation during training (eval.every) in training time; hashes unchanged",
    run: runEvalBench,
  },
  update: {
    summary:
      "coordinator cost per phase per million parameters: receive, tree + mean, Adam, publish",
    run: runUpdateBench,
  },
  quality: {
    summary:
      "Fréchet distance (agon eval) after N steps per recipe and seed, beside PyTorch's numbers",
    run: runQualityBench,
  },
  "augment-curves": {
    summary:
      "FD curves with and without DiffAugment on a generated 1,024-image labelled 64x64 folder",
    run: runAugmentCurvesBench,
  },
};

function usage(): string {
  const names = Object.entries(BENCHMARKS).map(([name, b]) => `  ${name.padEnd(8)} ${b.summary}`);
  return [
    "usage: npm run bench -- <benchmark> [options]   (<benchmark> --help for its options)",
    "benchmarks:",
    ...names,
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help") {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const bench = BENCHMARKS[name];
  if (!bench) {
    process.stderr.write(`bench: unknown benchmark '${name}'\n${usage()}\n`);
    return 2;
  }
  return bench.run(rest);
}

process.exitCode = await main(process.argv.slice(2));
