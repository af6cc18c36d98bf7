import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { configHash } from "../coordinator/checkpoint.js";
import { applyOverrides, ConfigError, loadConfig, parseConfig } from "../shared/config.js";
import { microtaskSpec } from "../shared/schedule.js";
import { tempDir } from "./helpers/cli.js";

const minimal = { model: { name: "mlp" }, dataset: { name: "ring" }, steps: 10 };

describe("run config", () => {
  it("fills documented defaults", () => {
    const cfg = parseConfig(minimal);
    expect(cfg.loss.name).toBe("non-saturating");
    expect(cfg.shards).toBe(4);
    expect(cfg.batch).toBe(64);
    expect(cfg.schedule).toEqual({ kD: 1, kG: 1, reuseFakes: false });
    expect(cfg.optimizer.g).toEqual({ lr: 0.0002, beta1: 0.5, beta2: 0.999, eps: 1e-8 });
    expect(cfg.model).toEqual({
      name: "mlp",
      latentDim: 64,
      gHidden: [256, 512],
      dHidden: [512, 256],
    });
  });

  it.each([
    [{ ...minimal, steps: 0 }, /^config: steps: /],
    [{ ...minimal, batch: -64 }, /batch: /],
    [{ ...minimal, batch: 10, shards: 4 }, /batch: must be a multiple of shards \(4\)/],
    [
      { ...minimal, model: { name: "gpt" } },
      /model\.name: unknown name; expected one of mlp, dcgan, resnet/,
    ],
    [{ ...minimal, loss: { name: "l1" } }, /loss\.name: /],
    [
      { ...minimal, dataset: { name: "imagenet" } },
      /dataset\.name: .*mnist, fashion-mnist, folder, prepared, ring/,
    ],
    [{ ...minimal, optimizer: { g: { lr: -1 } } }, /optimizer\.g\.lr: /],
    [{ ...minimal, schedule: { kD: 0 } }, /schedule\.kD: /],
    [{ ...minimal, stepz: 3 }, /unknown field\(s\) stepz/],
    [
      { ...minimal, model: { name: "mlp", conditional: true } },
      /model: unknown field\(s\) conditional for model mlp \(conditional is a field of model dcgan and resnet\)/,
    ],
    [{ ...minimal, model: { name: "dcgan" } }, /model\.name: dcgan needs an image dataset/],
    [
      { ...minimal, run: { id: "a b" } },
      /run\.id: expected 1-64 letters, digits, '-' or '_', got "a b"/,
    ],
  ])("names the field in its error: %j", (raw, pattern) => {
    expect(() => parseConfig(raw)).toThrow(ConfigError);
    expect(() => parseConfig(raw)).toThrow(pattern);
  });

  it("applies key.path=value overrides as YAML scalars, switching kinds cleanly", () => {
    const raw = applyOverrides({ ...minimal, dataset: { name: "ring", size: 100 } }, [
      "steps=7",
      "model.gHidden=[8,8]",
      "dataset.name=mnist",
      "optimizer.d.lr=1e-3",
    ]);
    const cfg = parseConfig(raw);
    expect(cfg.steps).toBe(7);
    expect(cfg.model.name === "mlp" && cfg.model.gHidden).toEqual([8, 8]);
    expect(cfg.dataset).toEqual({ name: "mnist", split: "train" });
    expect(cfg.optimizer.d.lr).toBe(0.001);
    expect(() => applyOverrides(minimal, ["steps"])).toThrow(/expected key\.path=value/);
  });

  it("loads YAML and JSON files and reports unreadable ones by path", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "a.yaml"), "model: { name: mlp }\ndataset: { name: ring }\nsteps: 3\n");
    writeFileSync(join(dir, "b.json"), JSON.stringify(minimal));
    writeFileSync(join(dir, "bad.yaml"), "model: [unclosed\n");
    expect(loadConfig(join(dir, "a.yaml")).steps).toBe(3);
    expect(loadConfig(join(dir, "b.json")).steps).toBe(10);
    expect(() => loadConfig(join(dir, "bad.yaml"))).toThrow(/bad\.yaml is not valid YAML/);
    expect(() => loadConfig(join(dir, "none.yaml"))).toThrow(
      /cannot read config file .*none\.yaml: no such file or directory/,
    );
  });

  it("dcgan defaults to the classic recipe with an EMA generator; sizes and norms are validated", () => {
    const cfg = parseConfig({ model: { name: "dcgan" }, dataset: { name: "mnist" }, steps: 1 });
    expect(cfg.model).toMatchObject({ gNorm: "batch", dNorm: "batch", maxFilters: 512 });
    expect(cfg.ema).toEqual({ halfLifeImages: 10000, rampup: 0.05 });
    expect(parseConfig({ ...minimal, ema: false }).ema).toBe(false);
    const folder = { name: "folder", path: "x", channels: 3 };
    expect(() =>
      parseConfig({ model: { name: "dcgan" }, dataset: { ...folder, size: 48 }, steps: 1 }),
    ).toThrow(/dataset\.size: dcgan builds 16, 28, 32, 64, 128, 256 pixel images; got 48/);
    expect(
      parseConfig({ model: { name: "dcgan" }, dataset: { ...folder, size: 64 }, steps: 1 }).dataset,
    ).toMatchObject({ size: 64, channels: 3 });
    expect(() =>
      parseConfig({
        model: { name: "dcgan", dNorm: "layer" },
        dataset: { name: "mnist" },
        steps: 1,
      }),
    ).toThrow(/model\.dNorm/);
    // The EMA never feeds back into G or D: changing it keeps the config hash.
    expect(configHash(parseConfig({ ...minimal, ema: false }))).toBe(
      configHash(parseConfig(minimal)),
    );
  });

  it("hashes only what decides the trajectory", () => {
    const a = parseConfig(minimal);
    expect(configHash(parseConfig({ ...minimal, steps: 99, run: { dir: "/elsewhere" } }))).toBe(
      configHash(a),
    );
    expect(configHash(parseConfig({ ...minimal, seed: 2 }))).not.toBe(configHash(a));
  });

  it("hashes schedule.reuseFakes when true, not at its default false (runs from before it existed)", () => {
    const fresh = configHash(parseConfig(minimal));
    const reuse = configHash(parseConfig({ ...minimal, schedule: { reuseFakes: true } }));
    expect(fresh).not.toBe(reuse);
    // What a checkpoint written before the setting existed hashed: the schedule without it.
    const { reuseFakes: _r, ...before } = parseConfig(minimal).schedule;
    expect(configHash({ ...parseConfig(minimal), schedule: before } as never)).toBe(fresh);
  });

  it("G phases reuse the step's last D phase's noise with schedule.reuseFakes, draw their own without", () => {
    for (const kD of [1, 2]) {
      const reuse = parseConfig({ ...minimal, schedule: { kD, kG: 2, reuseFakes: true } });
      const fresh = parseConfig({ ...minimal, schedule: { kD, kG: 2 } });
      for (const shard of [0, 3]) {
        const seed = (cfg: typeof reuse, phase: number) =>
          microtaskSpec(cfg, 5, phase, shard).noiseSeed;
        for (let d = 0; d < kD; d++) expect(seed(reuse, d)).toBe(seed(fresh, d));
        for (const g of [kD, kD + 1]) {
          expect(seed(reuse, g)).toBe(seed(fresh, kD - 1));
          expect(seed(fresh, g)).not.toBe(seed(fresh, kD - 1));
        }
        expect(seed(fresh, kD)).not.toBe(seed(fresh, kD + 1));
      }
    }
  });

  it("hashes a prepared dataset by its fingerprint and xflip, not by its path or cache size", () => {
    const fp = (c: string) => c.repeat(64);
    const prepared = (dataset: Record<string, unknown>) =>
      configHash(
        parseConfig({
          ...minimal,
          dataset: { name: "prepared", fingerprint: fp("a"), ...dataset },
        }),
      );
    const base = prepared({ path: "/data/a" });
    expect(prepared({ path: "/mnt/elsewhere", cacheMB: 16 })).toBe(base);
    expect(prepared({ path: "/data/a", fingerprint: fp("b") })).not.toBe(base);
    expect(prepared({ path: "/data/a", xflip: true })).not.toBe(base);
  });

  it("transport precision defaults to fp32, is validated, and is part of the hash unless fp32", () => {
    const a = parseConfig(minimal);
    expect(a.transport).toEqual({ gradients: "fp32", params: "fp32" });
    expect(() => parseConfig({ ...minimal, transport: { gradients: "int8" } })).toThrow(
      /transport\.gradients: expected one of fp32, bf16, fp16; got "int8"/,
    );
    // Spelled out at its default it hashes as before the setting existed (old checkpoints resume).
    const explicit = parseConfig({ ...minimal, transport: { gradients: "fp32", params: "fp32" } });
    expect(configHash(explicit)).toBe(configHash(a));
    const bf16 = configHash(parseConfig({ ...minimal, transport: { gradients: "bf16" } }));
    const bf16Params = configHash(parseConfig({ ...minimal, transport: { params: "bf16" } }));
    expect(new Set([configHash(a), bf16, bf16Params]).size).toBe(3);
  });
});
