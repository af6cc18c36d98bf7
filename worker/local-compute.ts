// A worker's compute in the calling thread: what the compute thread
// (compute-thread.ts) runs, and the GPU backends' path in the main thread.
// Apart from compute.ts so that the worker's main thread loads TensorFlow.js
// only when it computes itself.
import type { RunConfig } from "../shared/config.js";
import { DatasetError, openDataset, type SampleSource } from "../shared/data/index.js";
import { type FeatureSpace, featureSpaceOf, nodeSums, sumsToArray } from "../shared/evaluation.js";
import type { MicrotaskResult } from "../shared/microtask.js";
import { MicrotaskRunner } from "../shared/runner.js";
import { datasetSpec, microtaskSpec } from "../shared/schedule.js";
import { reduceNode } from "../shared/tree.js";
import type {
  Compute,
  DatasetInfo,
  EvalSources,
  EvaluationResult,
  NodeTask,
  VersionedWeights,
} from "./compute.js";

/** cancel() stopped a node between two shards. */
class NodeCancelled extends Error {}

/** Compute in the calling thread: what the compute thread runs, and the GPU backends' path. */
export class LocalCompute implements Compute {
  readonly threaded = false;
  private cfg: RunConfig | null = null;
  private dataset: SampleSource | null = null;
  private datasetError = "";
  private runner: MicrotaskRunner | null = null;
  private stopRequested = false;

  /**
   * `backend` must already be initialised (initBackend). `cancelled`, when
   * given, is asked too before each shard (the compute thread's shared flag).
   */
  constructor(
    readonly backend: string,
    private readonly cancelled: () => boolean = () => false,
  ) {}

  async openDataset(cfg: RunConfig): Promise<DatasetInfo> {
    this.cfg = cfg;
    try {
      this.dataset = await openDataset(datasetSpec(cfg));
      return { fingerprint: this.dataset.fingerprint, error: "", count: this.dataset.count };
    } catch (err) {
      if (!(err instanceof DatasetError)) throw err;
      this.datasetError = err.message;
      return { fingerprint: "", error: err.message, count: 0 };
    }
  }

  async prepare(): Promise<{ G: number; D: number }> {
    if (!this.cfg) throw new Error("compute: prepare() before openDataset()");
    if (!this.dataset) throw new DatasetError(this.datasetError);
    this.runner = new MicrotaskRunner(this.cfg, this.dataset);
    return { G: this.runner.model.g.size, D: this.runner.model.d.size };
  }

  async runNode(
    node: NodeTask,
    g: VersionedWeights,
    d: VersionedWeights,
  ): Promise<MicrotaskResult | null> {
    const { runner, cfg } = this;
    if (!runner || !cfg) throw new Error("compute: runNode() before prepare()");
    this.stopRequested = false;
    try {
      return await reduceNode(node, cfg.transport.gradients, async (shard) => {
        // In the worker's main thread (GPU backends) computing holds the event loop: let
        // heartbeats and keepalive pings through between the shards of a node.
        await new Promise((resume) => setImmediate(resume));
        if (this.stopRequested || this.cancelled()) throw new NodeCancelled();
        const spec = microtaskSpec(cfg, node.step, node.phase, shard);
        // Keyed by sha256: a version's weights go to the device once, for all its microtasks.
        return runner.runAsync(spec, g.weights, d.weights, { G: g.checksum, D: d.checksum });
      });
    } catch (err) {
      if (err instanceof NodeCancelled) return null;
      throw err;
    }
  }

  cancel(): void {
    this.stopRequested = true;
  }

  async evaluate(
    g: Float32Array,
    node: { lo: number; hi: number },
    sources: EvalSources,
  ): Promise<EvaluationResult> {
    if (!this.runner || !this.cfg) throw new Error("compute: evaluate() before prepare()");
    const evalCfg = this.cfg.eval;
    if (!evalCfg) return { error: "this run has no evaluation" };
    let space: FeatureSpace | null;
    try {
      // This host's copy of the data holds a prepared dataset's fitted features; its
      // Inception weights must be the run's (sha256).
      space = featureSpaceOf(this.cfg, sources);
    } catch (err) {
      return { error: (err as Error).message.split("\n")[0] };
    }
    if (space === null) return { error: "this run's dataset has no feature space" };
    try {
      const sums = await nodeSums(this.runner.model, g, space, evalCfg.seed, evalCfg.n, node);
      return { n: sums.n, values: sumsToArray(sums) };
    } catch (err) {
      return { error: `feature extraction failed: ${(err as Error).message.split("\n")[0]}` };
    }
  }

  async close(): Promise<void> {
    this.runner?.release();
  }
}
