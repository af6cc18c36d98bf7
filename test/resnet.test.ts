// The resnet architecture (R3GAN-style residual G and D without normalization):
// shapes at every supported size, the fix-up initialisation, the resampling
// filters against R3GAN's upfirdn2d definition, and the gradients of the
// residual blocks (first order, and second order through R1/R2) against
// central finite differences.
import "@tensorflow/tfjs";
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "../shared/backend.js";
import { parseConfig, resnetSides } from "../shared/config.js";
import { selectLoss } from "../shared/losses.js";
import { computeMicrotask, type Phase } from "../shared/microtask.js";
import {
  buildModel,
  type GanModel,
  initWeights,
  ModelError,
  toTensors,
} from "../shared/models/index.js";
import { downsample, upsample } from "../shared/models/resnet.js";
import { Rng } from "../shared/rng.js";
import { directionalErrors as gradErrors, paramRange as range } from "./helpers/gradcheck.js";

beforeAll(async () => {
  await initBackend("cpu");
});

function resnetCfg(model: Record<string, unknown>, dataset: Record<string, unknown> = {}) {
  return parseConfig({
    model: { name: "resnet", latentDim: 3, ...model },
    dataset: { name: "folder", path: "unused", size: 16, ...dataset },
    steps: 1,
  }).model;
}

describe("the resnet model", () => {
  for (const size of [16, 28, 32, 64, 128, 256]) {
    for (const channels of [1, 3]) {
      it(`at ${size}×${size}×${channels}: G makes [b,${size},${size},${channels}], D one logit per sample`, () => {
        const widths = resnetSides(size).map(() => 2);
        const cfg = resnetCfg({ channels: widths }, { size, channels });
        const model = buildModel(cfg, [size, size, channels]);
        expect(model.g.state).toEqual([]);
        expect(model.d.reportSize).toBe(0);
        const g = toTensors(model.g, initWeights(model.g, 1));
        const d = toTensors(model.d, initWeights(model.d, 2));
        const [imgShape, logitShape, finite] = tf.tidy(() => {
          const img = model.g.apply(g, tf.randomNormal([2, 3], 0, 1, "float32", 5), {
            training: true,
          });
          const logit = model.d.apply(d, img, { training: true });
          return [img.shape, logit.shape, tf.all(tf.isFinite(logit)).dataSync()[0]];
        });
        expect(imgShape).toEqual([2, size, size, channels]);
        expect(logitShape).toEqual([2, 1]);
        expect(finite).toBe(1);
        tf.dispose([...g, ...d]);
      });
    }
  }

  it("rejects other sizes and a channel list of the wrong length in one line", () => {
    const cfg = resnetCfg({ channels: [4, 4, 4] });
    expect(() => buildModel(cfg, [48, 48, 1])).toThrow(ModelError);
    expect(() => buildModel(cfg, [32, 32, 1])).toThrow(
      /resnet at 32×32 has 4 stages \(maps 4, 8, 16, 32\): model.channels needs 4 widths, got 3/,
    );
    expect(() => resnetCfg({ channels: [4, 4] }, { size: 16 })).toThrow(
      /model\.channels: needs one width per stage: 3 for 16×16 \(maps 4, 8, 16\), got 2/,
    );
    expect(() =>
      parseConfig({ model: { name: "resnet" }, dataset: { name: "ring" }, steps: 1 }),
    ).toThrow(/resnet needs an image dataset/);
    // Absent: 64 at every stage (28 px: 7, 14, 28).
    const model = buildModel(resnetCfg({}, { size: 28 }), [28, 28, 1]);
    expect(model.g.params.find((p) => p.name === "g.basis.const")?.shape).toEqual([7, 7, 64]);
  });

  it("fix-up init: every residual branch ends in a zero conv; the others are MSR with gain √(2/1.04)·L^(−1/4)", () => {
    // 16 px, 2 blocks per stage: L = 6 blocks per network; widths 4, 3, 2; expansion 1.5.
    const model = buildModel(
      resnetCfg({ channels: [4, 3, 2], blocks: 2, expansion: 1.5 }),
      [16, 16, 1],
    );
    const gain = Math.sqrt(2 / (1 + 0.2 ** 2)) * 6 ** -0.25;
    for (const net of [model.g, model.d]) {
      const blocks = net.params.filter((p) => p.name.includes(".block"));
      expect(blocks.filter((p) => p.name.endsWith("conv3.kernel"))).toHaveLength(6);
      for (const p of blocks) {
        const fanIn = p.shape.length === 4 ? p.shape[0] * p.shape[1] * p.shape[2] : 0;
        if (p.name.endsWith("conv3.kernel")) expect(p.init).toEqual({ kind: "zeros" });
        else if (p.name.endsWith(".bias")) expect(p.init).toEqual({ kind: "zeros" });
        else expect(p.init).toEqual({ kind: "normal", std: gain / Math.sqrt(fanIn) });
      }
    }
    // The inner width is round(expansion·C): 6 at C = 4, 5 at C = 3 (4.5 rounds up), 3 at C = 2.
    const inner = (name: string) => model.g.params.find((p) => p.name === name)?.shape[3];
    expect([inner("g.s0.block0.conv1.kernel"), inner("g.s1.block1.conv1.kernel")]).toEqual([6, 5]);
    expect(inner("g.s2.block0.conv2.kernel")).toBe(3);
  });

  it("upsampling is bilinear (half-pixel centres) inside the map and both filters are R3GAN's [1,3,3,1] upfirdn2d", () => {
    const rng = new Rng(3);
    const x = rng.normalArray(8 * 8);
    const [up, down] = tf.tidy(() => {
      const t = tf.tensor4d(x, [1, 8, 8, 1]);
      return [upsample(t).arraySync() as number[][][][], downsample(t).dataSync()] as const;
    });
    const bilinear = tf.tidy(() =>
      tf.image.resizeBilinear(tf.tensor4d(x, [1, 8, 8, 1]), [16, 16], false, true).arraySync(),
    );
    const f = [1, 3, 3, 1];
    const at = (r: number, c: number) => (r >= 0 && r < 8 && c >= 0 && c < 8 ? x[r * 8 + c] : 0);
    for (let i = 0; i < 16; i++) {
      for (let j = 0; j < 16; j++) {
        // upfirdn2d.upsample2d: zero-insert, pad 2 before / 1 after, [1,3,3,1]²/64 × 4.
        let u = 0;
        for (let a = 0; a < 4; a++) {
          for (let b = 0; b < 4; b++) {
            const r = i + a - 2;
            const c = j + b - 2;
            if (r % 2 === 0 && c % 2 === 0) u += (f[a] * f[b] * at(r / 2, c / 2)) / 16;
          }
        }
        expect(up[0][i][j][0]).toBeCloseTo(u, 5);
        if (i > 0 && i < 15 && j > 0 && j < 15)
          expect(up[0][i][j][0]).toBeCloseTo(bilinear[0][i][j][0], 5);
      }
    }
    // upfirdn2d.downsample2d: pad 1, [1,3,3,1]²/64, stride 2.
    for (let i = 0; i < 4; i++) {
      for (let j = 0; j < 4; j++) {
        let s = 0;
        for (let a = 0; a < 4; a++)
          for (let b = 0; b < 4; b++) s += (f[a] * f[b] * at(2 * i - 1 + a, 2 * j - 1 + b)) / 64;
        expect(down[i * 4 + j]).toBeCloseTo(s, 5);
      }
    }
  });
});

// ---------------------------------------------------------------------------
// Gradient checks, as test/models.test.ts does for batch and spectral norm.

interface Setup {
  model: GanModel;
  g: Float32Array;
  d: Float32Array;
  real: Float32Array;
}

const BATCH = 4;
/** The reals' classes of a conditional setup (4 classes; class 2 absent). */
const LABELS = Int32Array.from([0, 1, 3, 1]);

function setup(conditional = false): Setup {
  const cond = conditional ? { conditional: true, classes: 4 } : {};
  const model = buildModel(
    resnetCfg({ channels: [4, 3, 2], blocks: 1, expansion: 1.5, ...cond }),
    [16, 16, 1],
  );
  const rng = new Rng(7);
  // Move off the fix-up init (its zero last convs make the branches' inner
  // gradients vanish) so every residual block's weights are checked.
  const g = initWeights(model.g, 11);
  const d = initWeights(model.d, 12);
  if (conditional) {
    // G's class embedding is drawn N(0, 1/classes); at N(0, 1) here, so G's loss is far
    // from flat in it (at 1/classes float32 noise is 3 % of its gradient).
    const [start, n] = range(model.g, "g.embed.embeddings");
    for (let i = start; i < start + n; i++) g[i] *= Math.sqrt(4); // × √classes
  }
  for (const flat of [g, d]) {
    for (let i = 0; i < flat.length; i++) flat[i] = flat[i] * 2 + 0.2 * rng.nextNormal();
  }
  return { model, g, d, real: rng.normalArray(BATCH * 16 * 16, 0, 0.5) };
}

type LossName = "non-saturating" | "rpgan";

function run(
  s: Setup,
  lossName: LossName,
  r: number,
  phase: Phase,
  g: Float32Array,
  d: Float32Array,
  noiseSeed = 99,
) {
  const loss = selectLoss({ name: lossName, gpWeight: 10, r1: r, r2: r, regEvery: 1 });
  return computeMicrotask(s.model, loss, {
    phase,
    gWeights: g,
    dWeights: d,
    real: s.real,
    ...(s.model.classes ? { labels: LABELS } : {}),
    batch: BATCH,
    noiseSeed,
  });
}

/**
 * Relative errors |fd − analytic| / ‖grad‖ along random unit directions in all of
 * the phase's parameters, or only in parameter `only`.
 */
function directionalErrors(
  s: Setup,
  lossName: LossName,
  r: number,
  phase: Phase,
  gradSeed = 99,
  only?: string,
) {
  const net = phase === "D" ? s.model.d : s.model.g;
  const [start, n] = only ? range(net, only) : [0, net.trainableSize];
  const grad = run(s, lossName, r, phase, s.g, s.d, gradSeed).grad.subarray(start, start + n);
  const loss = (w: Float32Array) => {
    const res =
      phase === "D" ? run(s, lossName, r, phase, s.g, w) : run(s, lossName, r, phase, w, s.d);
    return phase === "D" ? (res.dLoss as number) : res.gLoss;
  };
  return gradErrors(
    phase === "D" ? s.d : s.g,
    start,
    grad,
    loss,
    new Rng(phase === "D" ? 1 : 2),
    4,
  );
}

describe("resnet gradients match central finite differences", () => {
  const s = setup();
  const cases: Array<[LossName, number]> = [
    ["non-saturating", 0],
    ["rpgan", 0.5],
  ];
  for (const [lossName, r] of cases) {
    for (const phase of ["D", "G"] as const) {
      const what = r > 0 ? `${lossName} + R1/R2 (second order)` : lossName;
      it(`${phase} phase, ${what}: residual blocks, resampling and bases`, () => {
        const errors = directionalErrors(s, lossName, r, phase);
        expect(Math.max(...errors)).toBeLessThan(1e-2);
      });
    }
  }

  it("R1's second-order gradient alone: ∂/∂θ mean‖∇ₓD(x)‖² through the blocks and the resampling", () => {
    const net = s.model.d;
    const n = net.trainableSize;
    /** The mean squared input-gradient norm of D at the reals, and its gradient w.r.t. D's parameters. */
    const penalty = (
      flat: Float32Array,
      withGrad: boolean,
    ): { value: number; grad: number[] | null } => {
      const w = toTensors(net, flat);
      const x = tf.tensor4d(s.real, [BATCH, 16, 16, 1]);
      const f = (...params: tf.Tensor[]) => {
        const dx = tf.grad((v: tf.Tensor) => tf.sum(net.apply(params, v, { training: true })))(x);
        return tf.div(tf.sum(tf.square(dx)), BATCH) as tf.Scalar;
      };
      let out: { value: number; grad: number[] | null };
      if (withGrad) {
        const { value, grads } = tf.valueAndGrads(f)(w);
        out = { value: value.dataSync()[0], grad: grads.flatMap((t) => Array.from(t.dataSync())) };
        tf.dispose([value, ...grads]);
      } else {
        out = { value: tf.tidy(() => f(...w).dataSync()[0]), grad: null };
      }
      tf.dispose([...w, x]);
      return out;
    };
    const { value, grad } = penalty(s.d, true);
    expect(value).toBeGreaterThan(0);
    const g = grad as number[];
    const norm = Math.hypot(...g);
    const rng = new Rng(4);
    for (let k = 0; k < 3; k++) {
      const dir = Array.from(rng.normalArray(n));
      const len = Math.hypot(...dir);
      // A small step: the penalty is large (float32 rounding stays small) but its
      // LeakyReLU kinks are close (steps of 1e-2 cross them: errors of 2 %).
      const h = 1e-3;
      const moved = (sign: number) => {
        const w = s.d.slice();
        for (let i = 0; i < n; i++) w[i] += (sign * h * dir[i]) / len;
        return w;
      };
      const fd = (penalty(moved(1), false).value - penalty(moved(-1), false).value) / (2 * h);
      let analytic = 0;
      for (let i = 0; i < n; i++) analytic += (g[i] * dir[i]) / len;
      expect(Math.abs(fd - analytic) / norm).toBeLessThan(1e-3);
    }
  });

  it("can fail: another batch's gradient is far off", () => {
    const errors = directionalErrors(s, "rpgan", 0.5, "G", 100);
    expect(Math.max(...errors)).toBeGreaterThan(0.05);
  });
});

describe("conditional resnet gradients match central finite differences", () => {
  const s = setup(true);
  for (const [phase, name] of [
    ["G", "g.embed.embeddings"],
    ["D", "d.embed.kernel"],
  ] as const) {
    it(`${phase} phase, rpgan + R1/R2: ${name} (labels fixed)`, () => {
      expect(s.model.classes).toBe(4);
      const errors = directionalErrors(s, "rpgan", 0.5, phase, 99, name);
      expect(Math.max(...errors)).toBeLessThan(1e-2);
    });
  }
});
