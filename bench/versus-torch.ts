// tfjs against PyTorch on the CPU, measured in interleaved blocks: one
// process per side kept warm (this one for tfjs, one bench/torch_step.py
// --serve per OpenBLAS kernel), then rounds of A B C A B C ... so that both
// sides see the same machine (these machines drift by 2× within an hour).
// Each round gives one ratio per kernel: tfjs block median / PyTorch block median.
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface, type Interface } from "node:readline";
import type { RunConfig } from "../shared/config.js";
import { resnetLayout } from "../shared/models/resnet.js";
import { median } from "./stats.js";

/**
 * The CPU kernels PyTorch is measured with: what its libraries pick (OpenBLAS: AVX-512 on
 * these machines; oneDNN, which runs PyTorch's convolutions, likewise), and both pinned to
 * AVX2 (OPENBLAS_CORETYPE=Haswell, DNNL_MAX_CPU_ISA=AVX2), the width nearest wasm SIMD's.
 */
export const KERNELS = [
  { label: "picked", coretype: undefined, onednnIsa: undefined },
  { label: "Haswell", coretype: "Haswell", onednnIsa: "AVX2" },
] as const;

/**
 * glibc malloc settings for the PyTorch processes: blocks up to 32 MiB come from the heap, and
 * freed memory stays with the process instead of going back to the kernel. With glibc's
 * defaults PyTorch's activations (megabytes each) are mmap'ed and unmapped every step and their
 * pages faulted in again, which on these VMs cost a dcgan64 step 90–250 ms of 230 (oneDNN's
 * layout reorders showing 7 ms per 4 MiB tensor); tfjs's wasm heap never gives memory back, so
 * without this the comparison would measure the page faults. Where page faults are cheap this
 * changes little; it is the allocator behaviour PyTorch deployments get from jemalloc/tcmalloc.
 */
export const KEEP_FREED_MEMORY = {
  MALLOC_MMAP_THRESHOLD_: String(32 << 20),
  MALLOC_TRIM_THRESHOLD_: String(4 * 2 ** 30),
  MALLOC_TOP_PAD_: String(256 << 20),
} as const;

/** One entry of KERNELS. */
export type TorchKernel = (typeof KERNELS)[number];

/**
 * The shape bench/torch_step.py's twin() builds for `cfg`'s model (unconditional mlp or
 * dcgan with the non-saturating loss; unconditional resnet with rpgan, its R1/R2 included),
 * or null when it has no twin.
 */
export function torchSpec(
  cfg: RunConfig,
  sampleShape: number[],
  warmup: number,
): Record<string, unknown> | null {
  const m = cfg.model;
  const shape = [sampleShape[0], sampleShape[1] ?? 1, sampleShape[2] ?? 1];
  const common = {
    latent: m.latentDim,
    shape,
    batch: cfg.batch,
    warmup,
    // EMA costs one lerp per G parameter and step; its β does not change the cost.
    emaBeta: cfg.ema ? 0.999 : null,
  };
  if (m.name === "resnet" && !m.conditional && cfg.loss.name === "rpgan") {
    const { r1, r2, regEvery } = cfg.loss;
    return {
      kind: "resnet",
      widths: resnetLayout(m, sampleShape).widths,
      blocks: m.blocks,
      expansion: m.expansion,
      loss: { name: "rpgan", r1, r2, regEvery },
      ...common,
    };
  }
  if (cfg.loss.name !== "non-saturating") return null;
  if (m.name === "mlp") return { kind: "mlp", gHidden: m.gHidden, dHidden: m.dHidden, ...common };
  if (m.name === "dcgan" && !m.conditional)
    return {
      kind: "dcgan",
      res: shape[0],
      channels: shape[2],
      gFilters: m.gFilters,
      dFilters: m.dFilters,
      maxFilters: m.maxFilters,
      kernel: m.kernel,
      gNorm: m.gNorm,
      dNorm: m.dNorm,
      ...common,
    };
  return null;
}

/** What a torch_step.py --serve process reports once its models are built and warm. */
export interface TorchReady {
  torch: string;
  threads: number;
  blas: string;
  /** openblas_get_corename(): the kernel OpenBLAS runs. */
  corename: string | null;
  /** oneDNN's ISA and its convolution implementation (e.g. "Intel AVX2", "jit:avx2"), or null. */
  onednn: { isa: string | null; conv: string | null } | null;
  params: Record<string, { G: number; D: number }>;
}

/** One warm bench/torch_step.py --serve process. */
export class TorchServer {
  private readonly pending: Array<(line: string) => void> = [];
  private stderr = "";

  private constructor(
    private readonly child: ChildProcess,
    private readonly lines: Interface,
    readonly ready: TorchReady,
    /** OPENBLAS_CORETYPE it runs with (undefined: OpenBLAS picks). */
    readonly coretype: string | undefined,
    /** DNNL_MAX_CPU_ISA it runs with (undefined: oneDNN picks). */
    readonly onednnIsa: string | undefined,
  ) {
    lines.on("line", (line) => this.pending.shift()?.(line));
  }

  /**
   * Starts `python script --serve specs` with one thread (torch and OpenBLAS),
   * OPENBLAS_CORETYPE = the kernel's coretype and DNNL_MAX_CPU_ISA (and
   * ONEDNN_MAX_CPU_ISA) = its oneDNN ISA (each unset when undefined) and
   * OPENBLAS_L2_SIZE unset, malloc as KEEP_FREED_MEMORY; resolves once its models are warm. Rejects with its
   * stderr's last line.
   */
  static start(
    python: string,
    script: string,
    specs: Record<string, unknown>,
    kernel: TorchKernel,
  ): Promise<TorchServer> {
    const { coretype, onednnIsa } = kernel;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      OPENBLAS_NUM_THREADS: "1",
      OMP_NUM_THREADS: "1",
      ...KEEP_FREED_MEMORY,
    };
    delete env.OPENBLAS_L2_SIZE;
    delete env.OPENBLAS_CORETYPE;
    if (coretype) env.OPENBLAS_CORETYPE = coretype;
    delete env.DNNL_MAX_CPU_ISA;
    delete env.ONEDNN_MAX_CPU_ISA;
    if (onednnIsa) {
      env.DNNL_MAX_CPU_ISA = onednnIsa;
      env.ONEDNN_MAX_CPU_ISA = onednnIsa;
    }
    const child = spawn(python, [script, "--serve", JSON.stringify(specs)], {
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const lines = createInterface({ input: child.stdout! });
    return new Promise((resolve, reject) => {
      const failed = () =>
        reject(new Error(`${script} --serve exited: ${stderr.trim().split("\n").at(-1) ?? ""}`));
      child.once("exit", failed);
      lines.once("line", (line) => {
        child.off("exit", failed);
        const server = new TorchServer(
          child,
          lines,
          (JSON.parse(line) as { ready: TorchReady }).ready,
          coretype,
          onednnIsa,
        );
        server.stderr = stderr;
        resolve(server);
      });
    });
  }

  /** Times `steps` training steps of `model`: ms per step. */
  steps(model: string, steps: number): Promise<number[]> {
    return new Promise((resolve, reject) => {
      const onExit = () => reject(new Error(`torch_step.py exited: ${this.stderr}`));
      this.child.once("exit", onExit);
      this.pending.push((line) => {
        this.child.off("exit", onExit);
        resolve((JSON.parse(line) as { stepMs: number[] }).stepMs);
      });
      this.child.stdin!.write(`${JSON.stringify({ model, steps })}\n`);
    });
  }

  close(): void {
    this.lines.close();
    this.child.stdin!.end();
    this.child.kill();
  }
}

/** One model's interleaved comparison. */
export interface VersusRow {
  model: string;
  /** The tfjs side's backend ("wasm" or "blas"); absent in reports written before blas. */
  backend?: string;
  /** Steps per block on each side (about blockMs of work each). */
  blockSteps: { tfjs: number; torch: number[] };
  /** Per round: the tfjs block's median ms/step. */
  tfjsMs: number[];
  /** Per kernel (KERNELS order): the corename, each round's block median, and tfjs ÷ it per round. */
  torch: Array<{
    label: string;
    corename: string | null;
    onednn: TorchReady["onednn"];
    ms: number[];
    ratios: number[];
  }>;
}

/**
 * `rounds` rounds of: a tfjs block (`tfjsStep` called n times), then one block
 * on each server, in turn. Block sizes come from one probe step per side so a
 * block takes about `blockMs`.
 */
export async function interleave(
  model: string,
  tfjsStep: () => Promise<number>,
  servers: readonly TorchServer[],
  rounds: number,
  blockMs: number,
): Promise<VersusRow> {
  const size = (ms: number) => Math.max(1, Math.min(50, Math.round(blockMs / Math.max(ms, 1e-3))));
  const tfjsN = size(await tfjsStep());
  const torchN = await Promise.all(servers.map(async (s) => size(median(await s.steps(model, 3)))));
  const row: VersusRow = {
    model,
    blockSteps: { tfjs: tfjsN, torch: torchN },
    tfjsMs: [],
    torch: servers.map((s) => ({
      label: s.coretype ?? "picked",
      corename: s.ready.corename,
      onednn: s.ready.onednn,
      ms: [],
      ratios: [],
    })),
  };
  for (let r = 0; r < rounds; r++) {
    const a: number[] = [];
    for (let i = 0; i < tfjsN; i++) a.push(await tfjsStep());
    const tfjs = median(a);
    row.tfjsMs.push(tfjs);
    for (let k = 0; k < servers.length; k++) {
      const b = median(await servers[k].steps(model, torchN[k]));
      row.torch[k].ms.push(b);
      row.torch[k].ratios.push(tfjs / b);
    }
  }
  return row;
}
