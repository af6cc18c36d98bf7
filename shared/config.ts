// The run config: one YAML/JSON file plus CLI overrides, parsed once into a
// typed, validated value. Errors name the field and say what is allowed.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { DTYPES } from "./precision.js";

const positiveInt = z.number().int().positive();

/** DiffAugment's ops (shared/augment.ts's DIFF_AUGMENT_OPS; repeated so the config loads no TensorFlow.js). */
export const AUGMENT_OPS = ["color", "translation", "cutout"] as const;

const adam = z
  .object({
    lr: z.number().positive().default(0.0002),
    beta1: z.number().min(0).max(1).lt(1).default(0.5),
    beta2: z.number().min(0).lt(1).default(0.999),
    eps: z.number().positive().default(1e-8),
  })
  .strict();

const mlpModel = z
  .object({
    name: z.literal("mlp"),
    latentDim: positiveInt.default(64),
    gHidden: z.array(positiveInt).min(1).default([256, 512]),
    dHidden: z.array(positiveInt).min(1).default([512, 256]),
  })
  .strict();

/** Square image sizes the dcgan model builds (powers of two, plus 28 for MNIST-shaped data). */
export const DCGAN_SIZES = [16, 28, 32, 64, 128, 256] as const;

const dcganModel = z
  .object({
    name: z.literal("dcgan"),
    latentDim: positiveInt.default(64),
    /**
     * Base channel counts: a map of side s (below full size) has
     * min(maxFilters, f·size/(2s)) channels, e.g. 28×28: 7×7×2f → 14×14×f → 28×28×C.
     */
    gFilters: positiveInt.default(32),
    dFilters: positiveInt.default(32),
    maxFilters: positiveInt.default(512),
    /** G's normalization: batch norm after every layer but the last (the DCGAN recipe), or none. */
    gNorm: z.enum(["batch", "none"]).default("batch"),
    /** D's: batch norm after every conv but the first, spectral norm on every layer, or none. */
    dNorm: z.enum(["batch", "spectral", "none"]).default("batch"),
  })
  .strict();

/**
 * The EMA generator (Karras et al. 2020, StyleGAN2-ADA): after every G update,
 * ema ← β·ema + (1−β)·G with β = 0.5^(batch / h), h = min(halfLifeImages,
 * rampup · images shown to G) — rampup null keeps h = halfLifeImages.
 */
const emaConfig = z
  .object({
    halfLifeImages: z.number().positive().default(10000),
    rampup: z.number().positive().nullable().default(0.05),
  })
  .strict();

const dataset = z.discriminatedUnion("name", [
  z
    .object({
      name: z.literal("mnist"),
      split: z.enum(["train", "test"]).default("train"),
      limit: positiveInt.optional(),
    })
    .strict(),
  z
    .object({
      name: z.literal("fashion-mnist"),
      split: z.enum(["train", "test"]).default("train"),
      limit: positiveInt.optional(),
    })
    .strict(),
  z
    .object({
      name: z.literal("folder"),
      path: z.string().min(1),
      channels: z.union([z.literal(1), z.literal(3)]).default(1),
      /** Square side in pixels the images are resized to (dcgan: 16, 28, 32, 64, 128 or 256). */
      size: z.number().int().min(8).max(512).default(28),
      limit: positiveInt.optional(),
    })
    .strict(),
  z
    .object({
      name: z.literal("prepared"),
      /** Directory written by `agon data prepare`; a worker may override it with --data-path. */
      path: z.string().min(1),
      /** Bound of the worker's chunk cache in MiB (default 256); does not change results. */
      cacheMB: z
        .number()
        .int()
        .min(0)
        .max(1 << 20)
        .optional(),
      /** Mirror each real sample left-right with probability 1/2, seeded per microtask. */
      xflip: z.boolean().optional(),
      limit: positiveInt.optional(),
      /**
       * The prepared dataset's fingerprint (manifest.json). Filled in when the run
       * starts; when given, a dataset with another fingerprint is refused.
       */
      fingerprint: z
        .string()
        .regex(/^[0-9a-f]{64}$/, "a sha256 in hex, as manifest.json's fingerprint")
        .optional(),
      /** From manifest.json, filled in with the fingerprint: the run's sample shape. */
      resolution: z.number().int().min(1).optional(),
      channels: z.union([z.literal(1), z.literal(3)]).optional(),
    })
    .strict(),
  z
    .object({
      name: z.literal("ring"),
      size: positiveInt.default(8192),
      modes: positiveInt.default(8),
      radius: z.number().positive().default(2),
      std: z.number().positive().default(0.02),
    })
    .strict(),
]);

export const LOSS_NAMES = ["non-saturating", "minimax", "wgan-gp", "hinge", "rpgan"] as const;

/** A run id (config run.id, `agon watch --run`): it names NATS subjects, so 1-64 letters, digits, '-' or '_'. */
export const RUN_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

const configSchema = z
  .object({
    /** Names the run on the wire (NATS subjects) and in the run dir. */
    run: z
      .object({
        id: z
          .string()
          .regex(RUN_ID_PATTERN, "use 1-64 letters, digits, '-' or '_'")
          .default("agon"),
        dir: z.string().min(1).default("runs/agon"),
      })
      .strict()
      .default({ id: "agon", dir: "runs/agon" }),
    seed: z.number().int().min(0).max(0xffffffff).default(1),
    model: z.discriminatedUnion("name", [mlpModel, dcganModel]),
    loss: z
      .object({
        name: z.enum(LOSS_NAMES).default("non-saturating"),
        /** Gradient-penalty weight λ, used by wgan-gp only. */
        gpWeight: z.number().min(0).default(10),
        /** γ of the zero-centred R1 penalty γ/2·E‖∇x D(x)‖² on real samples (Mescheder et al. 2018); 0: off. */
        r1: z.number().min(0).default(0),
        /** γ of the same penalty on fakes (R2); 0: off. */
        r2: z.number().min(0).default(0),
        /** Apply R1/R2 every N-th D phase, scaled by N (StyleGAN2's lazy regularisation). */
        regEvery: positiveInt.default(1),
      })
      .strict()
      .default({ name: "non-saturating", gpWeight: 10, r1: 0, r2: 0, regEvery: 1 }),
    dataset,
    /**
     * DiffAugment (Zhao et al. 2020) on every image D sees, real and fake, in
     * both phases; absent: none. Ops run in the order color, translation, cutout.
     */
    augment: z
      .object({
        policy: z
          .array(z.enum(AUGMENT_OPS))
          .min(1)
          .refine((ops) => new Set(ops).size === ops.length, "list each op once"),
      })
      .strict()
      .optional(),
    /** The EMA generator used for samples, eval and export; false: none. */
    ema: z.union([z.literal(false), emaConfig]).default(emaConfig.parse({})),
    /** K: the dataset is cut into K shards; each phase has exactly K microtasks. */
    shards: positiveInt.default(4),
    /** Global batch per phase, split evenly over the K shards. */
    batch: positiveInt.default(64),
    /**
     * Samples per forward/backward pass inside a microtask: a microtask's batch is
     * cut into pieces of this size whose gradients are summed in a fixed order
     * (so a big batch fits a small GPU). The same for every worker and for `agon
     * train`, so results stay deterministic; it changes the float rounding, so it
     * is part of the trajectory. Absent: one pass over the whole microtask.
     */
    microbatch: positiveInt.optional(),
    schedule: z
      .object({ kD: positiveInt.default(1), kG: positiveInt.default(1) })
      .strict()
      .default({ kD: 1, kG: 1 }),
    steps: positiveInt,
    optimizer: z
      .object({ g: adam.default(adam.parse({})), d: adam.default(adam.parse({})) })
      .strict()
      .default({ g: adam.parse({}), d: adam.parse({}) }),
    /**
     * How gradients (worker → coordinator) and parameters (coordinator → workers)
     * travel. bf16/fp16 halve the bytes and are part of the training definition:
     * `agon train` rounds exactly as the wire does.
     */
    transport: z
      .object({
        gradients: z.enum(DTYPES).default("fp32"),
        params: z.enum(DTYPES).default("fp32"),
      })
      .strict()
      .default({ gradients: "fp32", params: "fp32" }),
    checkpoint: z
      .object({
        every: positiveInt.default(500),
        keep: positiveInt.default(3),
        /**
         * Also keep the k checkpoints with the lowest evaluation FD (needs `eval`), in
         * best-checkpoints/ beside the latest ones; `<run dir>/best` links to the best.
         */
        keepBest: positiveInt.optional(),
      })
      .strict()
      .default({ every: 500, keep: 3 }),
    /**
     * Evaluation during training: every `every` steps (and at the last), the Fréchet distance
     * of G's samples on `n` fixed latents (seed `seed`) to the test split, in the features of
     * the dataset's classifier (docs/QUALITY.md). Off the training path: weights unchanged.
     */
    eval: z
      .object({
        every: positiveInt,
        n: z.number().int().min(2).default(2000),
        /** The latent seed; 1133 is `agon eval`'s default, so the numbers compare. */
        seed: z.number().int().min(0).max(0xffffffff).default(1133),
      })
      .strict()
      .optional(),
    samples: z
      .object({ every: positiveInt.default(100), count: positiveInt.max(1024).default(64) })
      .strict()
      .default({ every: 100, count: 64 }),
    health: z
      .object({
        /** On NaN/Inf losses, restore the last checkpoint instead of training on. */
        rollback: z.boolean().default(false),
        /** Consecutive D phases with D(x) > 0.99 and D(G(z)) < 0.01 before "D is winning" is signalled. */
        dWinsPhases: positiveInt.default(50),
        /** Mean pairwise distance of the fixed-noise samples below this share of its maximum: collapse. */
        collapseRatio: z.number().gt(0).lt(1).default(0.25),
      })
      .strict()
      .default({ rollback: false, dWinsPhases: 50, collapseRatio: 0.25 }),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if (cfg.batch % cfg.shards !== 0) {
      ctx.addIssue({
        code: "custom",
        path: ["batch"],
        message: `must be a multiple of shards (${cfg.shards}) so every microtask has the same size`,
      });
    }
    if (cfg.augment && cfg.dataset.name === "ring") {
      ctx.addIssue({
        code: "custom",
        path: ["augment"],
        message: "DiffAugment works on images; the ring dataset has none (remove augment)",
      });
    }
    if (cfg.eval && cfg.dataset.name !== "mnist" && cfg.dataset.name !== "fashion-mnist") {
      ctx.addIssue({
        code: "custom",
        path: ["eval"],
        message: `needs a dataset with a feature classifier (mnist, fashion-mnist), not ${cfg.dataset.name}`,
      });
    }
    if (cfg.checkpoint.keepBest !== undefined && !cfg.eval) {
      ctx.addIssue({
        code: "custom",
        path: ["checkpoint", "keepBest"],
        message: "ranks checkpoints by the evaluation's FD: set eval.every too",
      });
    }
    if (cfg.model.name === "dcgan" && cfg.dataset.name === "ring") {
      ctx.addIssue({
        code: "custom",
        path: ["model", "name"],
        message:
          "dcgan needs an image dataset (mnist, fashion-mnist, folder, prepared); use mlp for ring",
      });
    }
    if (
      cfg.model.name === "dcgan" &&
      cfg.dataset.name === "folder" &&
      !(DCGAN_SIZES as readonly number[]).includes(cfg.dataset.size)
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["dataset", "size"],
        message: `dcgan builds ${DCGAN_SIZES.join(", ")} pixel images; got ${cfg.dataset.size}`,
      });
    }
  });

export type RunConfig = z.infer<typeof configSchema>;
/** What parseConfig accepts: a RunConfig whose fields with defaults may be left out. */
export type RunConfigInput = z.input<typeof configSchema>;
export type ModelConfig = RunConfig["model"];
export type LossConfig = RunConfig["loss"];
export type AdamConfig = RunConfig["optimizer"]["g"];
export type DatasetConfig = RunConfig["dataset"];
export type EmaConfig = z.infer<typeof emaConfig>;
export type TransportConfig = RunConfig["transport"];

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses an unknown value (from YAML, JSON or the wire) into a RunConfig. */
export function parseConfig(raw: unknown, source = "config"): RunConfig {
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const field = issue.path.length > 0 ? issue.path.join(".") : "(top level)";
    return `${field}: ${describeIssue(issue)}`;
  });
  throw new ConfigError(`${source}: ${lines.join("; ")}`);
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (
    issue.code === "invalid_union" &&
    "note" in issue &&
    issue.note === "No matching discriminator"
  ) {
    return `unknown name; expected one of ${discriminatorOptions(issue)}`;
  }
  if (issue.code === "unrecognized_keys") return `unknown field(s) ${issue.keys.join(", ")}`;
  return issue.message;
}

function discriminatorOptions(issue: z.core.$ZodIssue): string {
  const section = issue.path[0];
  if (section === "model") return "mlp, dcgan";
  if (section === "dataset") return "mnist, fashion-mnist, folder, prepared, ring";
  return "see docs/CONFIG.md";
}

/**
 * Applies `a.b.c=value` overrides to a raw config object. Values are parsed as
 * YAML scalars so `steps=10`, `loss.name=hinge` and `model.gHidden=[64,64]` work.
 */
export function applyOverrides(
  raw: Record<string, unknown>,
  overrides: string[],
): Record<string, unknown> {
  const out = structuredClone(raw);
  for (const override of overrides) {
    const eq = override.indexOf("=");
    if (eq <= 0) throw new ConfigError(`override "${override}": expected key.path=value`);
    const path = override.slice(0, eq).split(".");
    let value: unknown;
    try {
      value = parseYaml(override.slice(eq + 1));
    } catch {
      throw new ConfigError(`override "${override}": value is not valid YAML`);
    }
    let node: Record<string, unknown> = out;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      if (next === undefined || next === null) node[key] = {};
      else if (typeof next !== "object" || Array.isArray(next)) {
        throw new ConfigError(`override "${override}": ${key} is not an object`);
      }
      node = node[key] as Record<string, unknown>;
    }
    const last = path[path.length - 1];
    // Switching a discriminated object (model/dataset/loss) by name drops fields of the old kind.
    if (last === "name" && node.name !== undefined && node.name !== value) {
      for (const key of Object.keys(node)) delete node[key];
    }
    node[last] = value;
  }
  return out;
}

/** Reads a YAML or JSON config file (YAML is a superset of JSON). */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(resolve(path), "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`cannot read config file ${path}: ${code ?? String(err)}`);
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (err) {
    throw new ConfigError(
      `config file ${path} is not valid YAML/JSON: ${(err as Error).message.split("\n")[0]}`,
    );
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigError(`config file ${path}: the top level must be a mapping of fields`);
  }
  return value as Record<string, unknown>;
}

/** Loads a config file (optional) and overrides into a validated RunConfig. */
export function loadConfig(path: string | undefined, overrides: string[] = []): RunConfig {
  const raw = path ? readConfigFile(path) : {};
  return parseConfig(applyOverrides(raw, overrides), path ?? "config");
}

/** Canonical JSON of a config (sorted keys), the input of the config hash. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** Per-microtask batch size b = batch / K. */
export function microBatch(cfg: RunConfig): number {
  return cfg.batch / cfg.shards;
}
