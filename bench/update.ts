// `npm run bench -- update`: what the coordinator spends per phase outside the
// workers, per million parameters, on the real code paths: verifying and
// decoding the gradients that arrive (chunk reassembly, sha256, finiteness),
// completing the reduction tree with the mean, one Adam update, and encoding +
// hashing the new weights for publication. No network: each stage in-process.
import { parseArgs } from "node:util";
import { Publisher } from "../coordinator/publisher.js";
import { FlatAdam } from "../shared/adam.js";
import { parseConfig } from "../shared/config.js";
import { Rng } from "../shared/rng.js";
import { completeTree, treeCover, treeMean } from "../shared/tree.js";
import { ChunkAssembler, chunksOf, encodeArray } from "../shared/wire.js";
import { machineHeader, machineInfo } from "./machine.js";

interface StageTimes {
  receive: number;
  tree: number;
  adam: number;
  publish: number;
}

export async function runUpdateBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      params: { type: "string", default: "1,5" },
      shards: { type: "string", default: "8" },
      workers: { type: "string", default: "2" },
      reps: { type: "string", default: "9" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      "usage: npm run bench -- update [--params 1,5 (millions)] [--shards 8] [--workers 2] [--reps 9]\n",
    );
    return 0;
  }
  const sizes = values.params.split(",").map((m) => Math.round(Number(m) * 1e6));
  const shards = Number(values.shards);
  const workers = Number(values.workers);
  const reps = Number(values.reps);
  if (
    sizes.some((n) => !Number.isInteger(n) || n < 1) ||
    !Number.isInteger(shards) ||
    shards < 1 ||
    !Number.isInteger(workers) ||
    workers < 1 ||
    !Number.isInteger(reps) ||
    reps < 1
  ) {
    process.stderr.write("bench update: --params, --shards, --workers, --reps must be positive\n");
    return 2;
  }
  process.stdout.write(`${machineHeader(machineInfo())}\n`);
  process.stdout.write(
    `# coordinator update cost: K=${shards}, ${workers} workers (contiguous ranges), fp32 transport, best of ${reps}\n\n`,
  );
  process.stdout.write(
    "| params | parts in | receive ms | tree + mean ms | Adam ms | publish ms | total ms | total ms / M params |\n|--:|--:|--:|--:|--:|--:|--:|--:|\n",
  );
  const cfg = parseConfig({ model: { name: "mlp" }, dataset: { name: "ring" }, steps: 1, shards });
  const publisher = new Publisher(cfg, () => {});
  for (const n of sizes) {
    // What arrives: one tree node per part of each worker's range, as the wire carries it.
    const nodes = [];
    for (let i = 0; i < workers; i++) {
      const lo = Math.floor((i * shards) / workers);
      const hi = Math.floor(((i + 1) * shards) / workers);
      nodes.push(...treeCover(lo, hi, shards));
    }
    const rng = new Rng(1);
    const grads = nodes.map(() => Float32Array.from({ length: n }, () => rng.nextFloat() - 0.5));
    const wires = grads.map((g) => {
      const e = encodeArray(g, "fp32");
      return { checksum: e.checksum, chunks: chunksOf(e.bytes).map((c) => c.slice()) };
    });
    const weights = Float32Array.from({ length: n }, () => rng.nextFloat() - 0.5);
    const adam = new FlatAdam(n, cfg.optimizer.d);
    const times: StageTimes[] = [];
    for (let r = 0; r < reps + 1; r++) {
      const t0 = performance.now();
      const received = wires.map((w) => {
        const a = new ChunkAssembler(n, w.chunks.length, w.checksum, "fp32");
        for (const [i, c] of w.chunks.entries()) a.add(i, c);
        return a.finish(true);
      });
      const t1 = performance.now();
      const parts = nodes.map((node, i) => ({
        ...node,
        result: { grad: received[i], count: 1, dLoss: 0, gLoss: 0, dReal: 0, dFake: 0 },
      }));
      // As coordinator/state.ts: the mean here, its norm in Adam's pass.
      const mean = treeMean(completeTree(parts, shards, "fp32"), shards);
      const t2 = performance.now();
      adam.step(weights, mean.grad);
      const t3 = performance.now();
      publisher.params("D", r, weights);
      const t4 = performance.now();
      // The first round warms the JIT.
      if (r > 0) times.push({ receive: t1 - t0, tree: t2 - t1, adam: t3 - t2, publish: t4 - t3 });
    }
    // The least disturbed of the reps: these machines are shared and their load drifts.
    const med = (k: keyof StageTimes) => Math.min(...times.map((t) => t[k]));
    const stages = {
      receive: med("receive"),
      tree: med("tree"),
      adam: med("adam"),
      publish: med("publish"),
    };
    const total = Math.min(...times.map((t) => t.receive + t.tree + t.adam + t.publish));
    process.stdout.write(
      `| ${(n / 1e6).toFixed(1)} M | ${nodes.length} | ${stages.receive.toFixed(1)} | ${stages.tree.toFixed(1)} | ${stages.adam.toFixed(1)} | ${stages.publish.toFixed(1)} | ${total.toFixed(1)} | ${(total / (n / 1e6)).toFixed(1)} |\n`,
    );
  }
  return 0;
}
