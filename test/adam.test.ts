// The coordinator's Adam: the WebAssembly module gives the textbook loop's bits
// (jsAdamStep, the specification) on every size, chunk boundary and magnitude, across a
// checkpoint; and the checked-in bytes are what its .wat source assembles to.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
// @ts-expect-error deploy/wasm.js is plain JavaScript without declarations
import { assemble, bytesModule } from "../deploy/wasm.js";
import { FlatAdam, jsAdamStep } from "../shared/adam.js";
import type { AdamConfig } from "../shared/config.js";
import { Rng } from "../shared/rng.js";

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

/** Gradients over 12 decades of magnitude, with exact zeros and subnormals among them. */
function gradient(rng: Rng, n: number): Float32Array {
  const g = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const r = rng.nextFloat();
    g[i] =
      r < 0.05
        ? 0
        : r < 0.08
          ? (rng.nextFloat() - 0.5) * 1e-40
          : (rng.nextFloat() - 0.5) * 10 ** (rng.nextFloat() * 12 - 8);
  }
  return g;
}

const CONFIGS: AdamConfig[] = [
  { lr: 2e-4, beta1: 0.5, beta2: 0.999, eps: 1e-8 },
  { lr: 1e-3, beta1: 0.9, beta2: 0.99, eps: 1e-6 },
  { lr: 0.0025, beta1: 0, beta2: 0.99, eps: 1e-8 },
];

describe("FlatAdam", () => {
  it("gives jsAdamStep's bits for weights, moments and the gradient's squared norm (sizes across the 16384-value chunks, odd tails)", () => {
    for (const [k, cfg] of CONFIGS.entries()) {
      for (const n of [1, 2, 7, 16384, 16385, 50001]) {
        const rng = new Rng(1000 * k + n);
        const w0 = Float32Array.from({ length: n }, () => rng.nextFloat() - 0.5);
        const ref = { w: w0.slice(), m: new Float32Array(n), v: new Float32Array(n) };
        const adam = new FlatAdam(n, cfg);
        const w = w0.slice();
        for (let t = 1; t <= 12; t++) {
          const g = gradient(rng, n);
          const sqRef = jsAdamStep(ref.w, g, ref.m, ref.v, cfg, t);
          const sq = adam.step(w, g);
          expect(bits(w)).toEqual(bits(ref.w));
          // the squared norm, added in index order in double, as the coordinator reports it
          expect(sq).toBe(sqRef);
          expect(sq).toBe(g.reduce((acc, x) => acc + x * x, 0));
        }
        const s = adam.exportState();
        expect(s.t).toBe(12);
        expect(bits(s.m)).toEqual(bits(ref.m));
        expect(bits(s.v)).toEqual(bits(ref.v));
        // and the update did something: no weight is left where it started
        expect(w.some((x, i) => x !== w0[i])).toBe(true);
      }
    }
  });

  it("keeps jsAdamStep's bits once the bias corrections round to exactly 1 (its divisions are then skipped)", () => {
    const cfg: AdamConfig = { lr: 1e-3, beta1: 0.5, beta2: 0.5, eps: 1e-8 };
    expect(1 - 0.5 ** 54).toBe(1); // from step 54 on, both corrections are exactly 1
    expect(1 - 0.5 ** 53).toBeLessThan(1);
    const n = 1001;
    const rng = new Rng(11);
    const w = Float32Array.from({ length: n }, () => rng.nextFloat() - 0.5);
    const ref = { w: w.slice(), m: new Float32Array(n), v: new Float32Array(n) };
    const adam = new FlatAdam(n, cfg);
    for (let t = 1; t <= 70; t++) {
      const g = gradient(rng, n);
      jsAdamStep(ref.w, g, ref.m, ref.v, cfg, t);
      adam.step(w, g);
      expect(bits(w), `step ${t}`).toEqual(bits(ref.w));
    }
  });

  it("continues from an exported state with the bits of an uninterrupted run", () => {
    const n = 20000;
    const cfg = CONFIGS[0];
    const rng = new Rng(7);
    const grads = Array.from({ length: 8 }, () => gradient(rng, n));
    const w0 = Float32Array.from({ length: n }, () => rng.nextFloat() - 0.5);
    const a = new FlatAdam(n, cfg);
    const wa = w0.slice();
    for (const g of grads) a.step(wa, g);
    const b = new FlatAdam(n, cfg);
    const wb = w0.slice();
    for (const g of grads.slice(0, 3)) b.step(wb, g);
    const c = new FlatAdam(n, cfg, b.exportState());
    expect(c.steps).toBe(3);
    for (const g of grads.slice(3)) c.step(wb, g);
    expect(bits(wb)).toEqual(bits(wa));
    // the exported state is a copy: stepping c did not change what b exported earlier
    const early = b.exportState();
    expect(early.t).toBe(3);
  });

  it("rejects state and arrays of the wrong length", () => {
    const cfg = CONFIGS[0];
    expect(
      () => new FlatAdam(4, cfg, { t: 1, m: new Float32Array(3), v: new Float32Array(4) }),
    ).toThrow(/Adam state has 3 values, expected 4/);
    const adam = new FlatAdam(4, cfg);
    expect(() => adam.step(new Float32Array(4), new Float32Array(5))).toThrow(RangeError);
    expect(adam.steps).toBe(0);
  });
});

describe("shared/wasm", () => {
  it("every NAME-bytes.ts is what its NAME.wat assembles to (npm run wasm)", async () => {
    const dir = fileURLToPath(new URL("../shared/wasm/", import.meta.url));
    const names = readdirSync(dir)
      .filter((f) => f.endsWith(".wat"))
      .map((f) => f.slice(0, -4));
    expect(names).toEqual(expect.arrayContaining(["adam", "binary", "conv-cols", "ema", "tanh"]));
    for (const name of names) {
      const ts = readFileSync(join(dir, `${name}-bytes.ts`), "utf8");
      expect(ts, `${name}-bytes.ts is stale: run npm run wasm`).toBe(
        bytesModule(name, await assemble(join(dir, `${name}.wat`))),
      );
    }
  });
});
