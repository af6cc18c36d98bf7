// The blas backend (wasm with its GEMMs on OpenBLAS) keeps the determinism contract: `agon
// train` = `agon local --workers 1` = `--workers 3` (K = 6), bit for bit, for a DCGAN and the
// resnet with rpgan + R1/R2 (second-order gradients through the OpenBLAS kernels), with the
// compute in the workers' threads. Its bits differ from wasm's (XNNPACK sums in another order),
// which shows its kernels ran; a run whose workers mix backends says so. Skipped where OpenBLAS
// is missing; CI installs it.
import { afterAll, describe, expect, it } from "vitest";
import { blasAvailable } from "./helpers/blas.js";
import { contractRuns, tempDir, tinyMnistK6, tinyRing } from "./helpers/cli.js";
import { killAll, startCoordinator, startWorker, within } from "./helpers/cluster.js";
import { natsForSuite } from "./helpers/nats.js";

const nats = natsForSuite();
const blas = contractRuns(nats, 170_000, "blas");
const wasm = contractRuns(nats, 170_000, "wasm");

const CASES: Array<[string, string[]]> = [
  [
    "dcgan, 16 filters (so convs with 32 channels run on OpenBLAS), batch norm in G, spectral norm in D, EMA",
    tinyMnistK6("dcgan", 2, [
      "model.gFilters=16",
      "model.dFilters=16",
      "model.dNorm=spectral",
      "ema.halfLifeImages=24",
    ]),
  ],
  [
    "resnet × conditional, rpgan + R1/R2",
    tinyMnistK6(
      "resnet",
      2,
      [
        "model.channels=[4,3,2]",
        "model.conditional=true",
        "loss.r1=0.5",
        "loss.r2=0.5",
        "loss.regEvery=1",
      ],
      ["--loss", "rpgan"],
    ),
  ],
];

describe.skipIf(!blasAvailable())("the blas backend is deterministic", () => {
  for (const [what, flags] of CASES) {
    it(`${what}: agon train = agon local --workers 1 = --workers 3 (K=6) on blas, and blas ≠ wasm`, async () => {
      const reference = await blas.hashesOf(["train", ...flags, "--run-dir", tempDir()]);
      for (const n of [1, 3]) expect(await blas.local(flags, n)).toEqual(reference);
      const onWasm = await wasm.hashesOf(["train", ...flags, "--run-dir", tempDir()]);
      expect(onWasm.G).not.toEqual(reference.G);
    }, 600_000);
  }
});

describe.skipIf(!blasAvailable())("workers on different backends", () => {
  afterAll(killAll);

  it("the coordinator says once that they round differently, and the run completes", async () => {
    const coordinator = await startCoordinator(
      [...tinyRing({ steps: 30, shards: 4, batch: 32 }), "--run-dir", tempDir()],
      nats.url,
    );
    const workers = [
      startWorker(coordinator.address, nats.url, "on-wasm"),
      startWorker(coordinator.address, nats.url, "on-blas", ["--backend", "blas"]),
    ];
    await within(coordinator.done, 120_000, "the run's end", {
      coordinator,
      "on-wasm": workers[0],
      "on-blas": workers[1],
    });
    const said = coordinator
      .stderr()
      .split("\n")
      .filter((l) => l.includes("workers compute on different backends"));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/on-blas#\d+ on blas \(OpenBLAS [\d.]+ \w+\)/);
    expect(said[0]).toMatch(/on-wasm#\d+ on wasm\b/);
    expect(said[0]).toMatch(/will not match agon train's bit for bit/);
    for (const w of workers) w.child.kill("SIGTERM");
  }, 180_000);
});
