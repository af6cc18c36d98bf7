// The webgpu backend keeps the determinism contract: `agon train` = `agon local --workers 1` =
// `--workers 3` (K = 6), bit for bit, for an MLP and for a DCGAN with batch norm, spectral norm
// and EMA (tfjs-backend-webgpu's shaders: matMul, conv2d and its gradients, reductions), with
// each worker's weights kept on the device per version. Its bits differ from wasm's, which shows
// its kernels ran. No GPU needed: CI installs Mesa's lavapipe (Vulkan on the CPU; .ci/run),
// the adapter Dawn then finds; `--backend webgpu` takes a software adapter when asked for one.
// Skipped where Dawn finds no adapter at all.
import { describe, expect, it } from "vitest";
import { contractRuns, tempDir, tinyMnistK6, tinyRing } from "./helpers/cli.js";
import { natsForSuite } from "./helpers/nats.js";
import { webgpuAvailable } from "./helpers/webgpu.js";

const nats = natsForSuite();
const webgpu = contractRuns(nats, 170_000, "webgpu");
const wasm = contractRuns(nats, 170_000, "wasm");

const CASES: Array<[string, string[]]> = [
  ["ring MLP, K = 6", tinyRing({ steps: 4, shards: 6, batch: 36, size: 600 })],
  [
    "dcgan, batch norm in G, spectral norm in D, EMA",
    tinyMnistK6("dcgan", 2, [
      "model.gFilters=4",
      "model.dFilters=4",
      "model.dNorm=spectral",
      "ema.halfLifeImages=24",
    ]),
  ],
];

describe.skipIf(!webgpuAvailable())("the webgpu backend is deterministic", () => {
  for (const [what, flags] of CASES) {
    it(`${what}: agon train = agon local --workers 1 = --workers 3 on webgpu, and webgpu ≠ wasm`, async () => {
      const reference = await webgpu.hashesOf(["train", ...flags, "--run-dir", tempDir()]);
      for (const n of [1, 3]) expect(await webgpu.local(flags, n)).toEqual(reference);
      const onWasm = await wasm.hashesOf(["train", ...flags, "--run-dir", tempDir()]);
      expect(onWasm.G).not.toEqual(reference.G);
    }, 600_000);
  }
});
