// The run config: one YAML/JSON file plus CLI overrides, parsed once into a
// typed, validated value. Errors name the field and say what is allowed.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { fileErrorCause } from "./errno.js";
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
    /**
     * Side of every (transposed) convolution kernel (stride 2, "same" padding): 5 as in
     * Radford et al.'s code and the PyTorch reference of docs/BENCHMARKS.md §10; PyTorch's
     * dcgan example uses 4.
     */
    kernel: z.number().int().min(2).max(7).default(5),
    /** G's normalization: batch norm after every layer but the last (the DCGAN recipe), or none. */
    gNorm: z.enum(["batch", "none"]).default("batch"),
    /** D's: batch norm after every conv but the first, spectral norm on every layer, or none. */
    dNorm: z.enum(["batch", "spectral", "none"]).default("batch"),
    /**
     * Class-conditional (needs a labelled dataset): G gets a learned class embedding
     * beside z, D a projection head (Miyato & Koyama 2018). Absent: unconditional.
     */
    conditional: z.boolean().optional(),
    /**
     * Conditional models with gNorm batch: the class enters G through conditional batch
     * norm (a learned scale and shift per class in every batch norm of G, as the
     * generators of Miyato & Koyama 2018 and BigGAN) instead of an embedding beside z;
     * G's input is z alone. Absent or false: the embedding at G's input.
     */
    conditionalNorm: z.boolean().optional(),
    /** The class count; filled in from the dataset when the run starts (given: must match). */
    classes: z.number().int().min(1).max(65536).optional(),
  })
  .strict();

/**
 * R3GAN-style residual G and D without normalization layers (Huang et al. 2024;
 * shared/models/resnet.ts). Sizes as dcgan's (a 4×4 base map, 7×7 for 28).
 */
const resnetModel = z
  .object({
    name: z.literal("resnet"),
    latentDim: positiveInt.default(64),
    /**
     * Width of each stage, smallest map first (4×4, or 7×7 at 28 px) up to full
     * size, one entry per stage (e.g. 32 px: 4 entries for 4, 8, 16, 32); G runs
     * it in this order, D in reverse. Absent: 64 at every stage.
     */
    channels: z.array(positiveInt).min(2).max(7).optional(),
    /** Residual blocks per stage in G and in D (R3GAN: 2). */
    blocks: positiveInt.default(1),
    /**
     * Width of a residual branch relative to its stage: 1×1 conv to
     * round(expansion·C), 3×3 conv, 1×1 conv back to C. R3GAN expands ×2 around a
     * grouped 3×3 conv; a plain 3×3 conv (TF.js has no grouped one) costs
     * expansion² as much, so the default is 1; below 1 is a bottleneck.
     */
    expansion: z.number().positive().max(4).default(1),
    /**
     * Class-conditional, as dcgan's: a learned class embedding beside z at G's
     * input, a projection head on D's final features. Absent: unconditional.
     */
    conditional: z.boolean().optional(),
    /** The class count; filled in from the dataset when the run starts (given: must match). */
    classes: z.number().int().min(1).max(65536).optional(),
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
      /** Square side in pixels the images are resized to (dcgan, resnet: 16, 28, 32, 64, 128 or 256). */
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
        id: z.string().regex(RUN_ID_PATTERN, "1-64 letters, digits, '-' or '_'").default("agon"),
        dir: z.string().min(1).default("runs/agon"),
        /** Also write TensorBoard event files (scalars, sample grids, the config) in the run dir. */
        tensorboard: z.boolean().default(true),
      })
      .strict()
      .default({ id: "agon", dir: "runs/agon", tensorboard: true }),
    seed: z.number().int().min(0).max(0xffffffff).default(1),
    model: z.discriminatedUnion("name", [mlpModel, dcganModel, resnetModel]),
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
        /**
         * The probability in [0, 1] that each op is applied to each image: an
         * independent Bernoulli draw per image and op from the microtask's seed
         * (StyleGAN2-ADA's p, fixed). Absent or 1: every op on every image, the
         * reference DiffAugment; p = 1 is left out of the parsed config, so its
         * config hash is that of a config without p.
         */
        p: z.number().min(0).max(1).optional(),
      })
      .strict()
      .transform(({ p, ...rest }): { policy: (typeof AUGMENT_OPS)[number][]; p?: number } =>
        p === undefined || p === 1 ? rest : { ...rest, p },
      )
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
      .object({
        kD: positiveInt.default(1),
        kG: positiveInt.default(1),
        /**
         * G phases train on the step's last D phase's fakes: each G microtask draws the
         * same z (and fake classes) as that D phase's microtask of its shard, so G(z),
         * G's batch statistics and its running statistics are those D was just updated
         * on, as in PyTorch's examples/dcgan/main.py (`output = netD(fake)`). false (the
         * default): every G phase draws fresh z from its own seed. On MNIST, reusing did
         * not improve FD (docs/BENCHMARKS.md §10).
         */
        reuseFakes: z.boolean().default(false),
      })
      .strict()
      .default({ kD: 1, kG: 1, reuseFakes: false }),
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
     * of G's samples on `n` fixed latents (seed `seed`) to the test split (mnist,
     * fashion-mnist) or to the prepared dataset's rows (features fitted with `agon eval
     * fit-features`), in the features of the dataset's classifier (docs/QUALITY.md),
     * computed by the workers as evaluation microtasks. Off the training path: weights unchanged.
     */
    eval: z
      .object({
        every: positiveInt,
        n: z.number().int().min(2).default(2000),
        /** The latent seed; 1133 is `agon eval`'s default, so the numbers compare. */
        seed: z.number().int().min(0).max(0xffffffff).default(1133),
        /**
         * The features: `classifier` (absent: the dataset's own classifier, reported as FD)
         * or `inception` (pytorch-fid's Inception-v3, reported as the standard FID; needs
         * `inception`).
         */
        features: z.enum(["classifier", "inception"]).optional(),
        /** Inception-v3 weights (safetensors, bench/convert_inception.py), with features: inception. */
        inception: z.string().min(1).optional(),
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
    if (cfg.eval?.features === "inception" && cfg.eval.inception === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["eval", "inception"],
        message:
          "eval.features inception needs the Inception-v3 weights file (eval.inception: FILE, converted by bench/convert_inception.py)",
      });
    }
    if (cfg.eval?.inception !== undefined && cfg.eval.features !== "inception") {
      ctx.addIssue({
        code: "custom",
        path: ["eval", "inception"],
        message: "is used only with eval.features inception (set it, or remove eval.inception)",
      });
    }
    if (cfg.eval?.features === "inception" && cfg.dataset.name === "ring") {
      ctx.addIssue({
        code: "custom",
        path: ["eval", "features"],
        message: "Inception features need images; the ring dataset has none",
      });
    }
    if (
      cfg.eval &&
      cfg.eval.features !== "inception" &&
      !["mnist", "fashion-mnist", "prepared"].includes(cfg.dataset.name)
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["eval"],
        message: `needs a dataset with a feature classifier (mnist, fashion-mnist, or a prepared one after agon eval fit-features), not ${cfg.dataset.name}; or eval.features inception`,
      });
    }
    if (cfg.checkpoint.keepBest !== undefined && !cfg.eval) {
      ctx.addIssue({
        code: "custom",
        path: ["checkpoint", "keepBest"],
        message: "ranks checkpoints by the evaluation's FD: set eval.every too",
      });
    }
    if ("conditional" in cfg.model && cfg.model.conditional && cfg.dataset.name === "ring") {
      ctx.addIssue({
        code: "custom",
        path: ["model", "conditional"],
        message:
          "needs a labelled image dataset (mnist, fashion-mnist, a labelled folder or prepared set)",
      });
    }
    if (cfg.model.name === "dcgan" && cfg.model.conditionalNorm) {
      if (!cfg.model.conditional || cfg.model.gNorm !== "batch") {
        ctx.addIssue({
          code: "custom",
          path: ["model", "conditionalNorm"],
          message: "only goes with model.conditional: true and model.gNorm: batch",
        });
      }
    }
    if ("classes" in cfg.model && cfg.model.classes !== undefined && !cfg.model.conditional) {
      ctx.addIssue({
        code: "custom",
        path: ["model", "classes"],
        message: "only goes with model.conditional: true",
      });
    }
    const imageModel = cfg.model.name === "dcgan" || cfg.model.name === "resnet";
    if (imageModel && cfg.dataset.name === "ring") {
      ctx.addIssue({
        code: "custom",
        path: ["model", "name"],
        message: `${cfg.model.name} needs an image dataset (mnist, fashion-mnist, folder, prepared); use mlp for ring`,
      });
    }
    if (
      imageModel &&
      cfg.dataset.name === "folder" &&
      !(DCGAN_SIZES as readonly number[]).includes(cfg.dataset.size)
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["dataset", "size"],
        message: `${cfg.model.name} builds ${DCGAN_SIZES.join(", ")} pixel images; got ${cfg.dataset.size}`,
      });
    }
    const side = imageSide(cfg.dataset);
    if (cfg.model.name === "resnet" && cfg.model.channels && side !== undefined) {
      const stages = resnetSides(side).length;
      if (stages > 0 && cfg.model.channels.length !== stages) {
        ctx.addIssue({
          code: "custom",
          path: ["model", "channels"],
          message: `needs one width per stage: ${stages} for ${side}×${side} (maps ${resnetSides(side).join(", ")}), got ${cfg.model.channels.length}`,
        });
      }
    }
  });

/**
 * The map sides of the resnet model's stages for square images of side `size`:
 * a 4×4 map (7×7 for 28) doubling up to `size`; [] for a size it does not build.
 */
export function resnetSides(size: number): number[] {
  if (!(DCGAN_SIZES as readonly number[]).includes(size)) return [];
  const sides: number[] = [];
  for (let s = size === 28 ? 7 : 4; s <= size; s *= 2) sides.push(s);
  return sides;
}

/** The square side of a dataset's images when the config alone tells it (else undefined). */
function imageSide(ds: z.infer<typeof dataset>): number | undefined {
  if (ds.name === "mnist" || ds.name === "fashion-mnist") return 28;
  if (ds.name === "folder") return ds.size;
  if (ds.name === "prepared") return ds.resolution;
  return undefined;
}

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
export function parseConfig(
  raw: unknown,
  source = "config",
  origins?: ReadonlyMap<string, string>,
): RunConfig {
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  let fromFile = false;
  const lines = result.error.issues.map((issue) => {
    const field = issue.path.length > 0 ? issue.path.join(".") : "(top level)";
    // A value given by a flag or --set is blamed on it, not on the file.
    const origin = origins?.get(field);
    if (!origin) fromFile = true;
    return `${field}${origin ? ` (from ${origin})` : ""}: ${describeIssue(issue, raw)}`;
  });
  // Named only when something wrong came from it (a bad flag is not the file's fault).
  throw new ConfigError(`${fromFile ? source : "config"}: ${lines.join("; ")}`);
}

/** The value at `path` in a raw config (undefined where the path leads nowhere). */
function valueAt(raw: unknown, path: PropertyKey[]): unknown {
  let node = raw;
  for (const key of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** A value as a message shows it: `"ten"` (a string), `[1,2]`, `null`. */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

/** One zod issue in words (not zod's own "Invalid input: expected number, received string"). */
function describeIssue(issue: z.core.$ZodIssue, raw?: unknown): string {
  const value = valueAt(raw, issue.path);
  if (issue.code === "invalid_type") {
    if (value === undefined) return "missing (required)";
    const article = /^[aeiou]/.test(issue.expected) ? "an" : "a";
    return `expected ${article} ${issue.expected}, got ${shown(value)}`;
  }
  if (issue.code === "too_small" || issue.code === "too_big") {
    const small = issue.code === "too_small";
    const bound = small ? issue.minimum : issue.maximum;
    const op = small ? (issue.inclusive ? "≥" : ">") : issue.inclusive ? "≤" : "<";
    if (issue.origin === "array" || issue.origin === "set") {
      return `needs ${small ? "at least" : "at most"} ${String(bound)} item(s), got ${shown(value)}`;
    }
    if (issue.origin === "string") {
      return `needs ${small ? "at least" : "at most"} ${String(bound)} character(s), got ${shown(value)}`;
    }
    return `must be ${op} ${String(bound)}, got ${shown(value)}`;
  }
  if (issue.code === "invalid_value") {
    return `expected one of ${issue.values.map((v) => String(v)).join(", ")}; got ${shown(value)}`;
  }
  if (issue.code === "not_multiple_of") {
    return `must be a multiple of ${String(issue.divisor)}, got ${shown(value)}`;
  }
  if (issue.code === "invalid_format") {
    // A pattern's own message says what it wants ("use 1-64 letters, digits, '-' or '_'").
    return issue.format === "regex"
      ? `expected ${issue.message}, got ${shown(value)}`
      : `not a valid ${issue.format}: ${shown(value)}`;
  }
  if (
    issue.code === "invalid_union" &&
    "note" in issue &&
    issue.note === "No matching discriminator"
  ) {
    return `unknown name; expected one of ${discriminatorOptions(issue)}`;
  }
  if (issue.code === "unrecognized_keys") return unknownFields(issue.keys, issue.path, raw);
  if (issue.code === "invalid_union") return `${shown(value)} matches none of the accepted forms`;
  return issue.message.replace(/^Invalid input:?\s*/, "") || `invalid value ${shown(value)}`;
}

/** The model variants by name, to say which of them has a field another lacks. */
const MODEL_VARIANTS = { mlp: mlpModel, dcgan: dcganModel, resnet: resnetModel } as const;

/**
 * "unknown field(s) x, y"; for a model field that another model has (`model.conditional` on
 * the mlp), which models take it instead.
 */
function unknownFields(keys: string[], path: PropertyKey[], raw: unknown): string {
  const base = `unknown field(s) ${keys.join(", ")}`;
  if (path.length !== 1 || path[0] !== "model") return base;
  const name = String((valueAt(raw, ["model", "name"]) as unknown) ?? "");
  const elsewhere = keys.map((k) => {
    const owners = Object.entries(MODEL_VARIANTS)
      .filter(([n, schema]) => n !== name && k in schema.shape)
      .map(([n]) => n);
    return owners.length > 0 ? `${k} is a field of model ${owners.join(" and ")}` : "";
  });
  const hints = elsewhere.filter((h) => h !== "");
  return hints.length > 0 ? `${base} for model ${name} (${hints.join("; ")})` : base;
}

function discriminatorOptions(issue: z.core.$ZodIssue): string {
  const section = issue.path[0];
  if (section === "model") return "mlp, dcgan, resnet";
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
    throw new ConfigError(`cannot read config file ${path}: ${fileErrorCause(err)}`);
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (err) {
    throw new ConfigError(
      // The parser's first line ends in ":" before a quote of the text: keep the line, drop the colon.
      `config file ${path} is not valid YAML/JSON: ${(err as Error).message.split("\n")[0].replace(/:\s*$/, "")}; fix the file`,
    );
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigError(`config file ${path}: the top level must be a mapping of fields`);
  }
  return value as Record<string, unknown>;
}

/** Loads a config file (optional) and overrides into a validated RunConfig. */
export function loadConfig(
  path: string | undefined,
  overrides: string[] = [],
  origins?: ReadonlyMap<string, string>,
): RunConfig {
  const raw = path ? readConfigFile(path) : {};
  return parseConfig(applyOverrides(raw, overrides), path ?? "config", origins);
}

/**
 * What a checkpoint's config may differ in and still resume without --force (as
 * coordinator/checkpoint.ts configHash leaves them out): top-level fields.
 */
export const CHECKPOINT_IGNORES: readonly string[] = [
  "steps",
  "run",
  "checkpoint",
  "samples",
  "health",
  "eval",
  "ema",
];

/**
 * What a worker never reads (the coordinator's alone): a worker carries on across a
 * coordinator restart whose config differs only here (a raised --steps, other checkpoint or
 * sample settings, another run dir). run.id, the model, data, loss, schedule, transport and
 * eval are the worker's too.
 */
export const WORKER_IGNORES: readonly string[] = [
  "steps",
  "run.dir",
  "checkpoint",
  "samples",
  "health",
  "ema",
];

/**
 * The leaves in which two configs (parsed, or as JSON objects) differ, as
 * "optimizer.g.lr 0.0002 → 0.01", sorted by path; `ignores` are dotted paths (a field and
 * everything under it) left out.
 */
export function configChanges(was: unknown, now: unknown, ignores: readonly string[]): string[] {
  const ignored = new Set(ignores);
  const leaves = (v: unknown, path: string, out: Map<string, string>) => {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) {
        const at = path ? `${path}.${k}` : k;
        if (!ignored.has(at)) leaves(x, at, out);
      }
    } else out.set(path, JSON.stringify(v) ?? "absent");
    return out;
  };
  const a = leaves(was, "", new Map());
  const b = leaves(now, "", new Map());
  return [...new Set([...a.keys(), ...b.keys()])]
    .sort()
    .filter((k) => a.get(k) !== b.get(k))
    .map((k) => `${k} ${a.get(k) ?? "absent"} → ${b.get(k) ?? "absent"}`);
}

/** configChanges' list as one phrase: at most 3 changes, then "and N more". */
export function describeChanges(diffs: readonly string[]): string {
  return diffs.length > 3
    ? `${diffs.slice(0, 3).join(", ")} and ${diffs.length - 3} more`
    : diffs.join(", ");
}

/**
 * configChanges as one phrase (describeChanges); "the same fields, another config hash" when
 * none (a difference the hash sees in what is left out here).
 */
export function configDifferences(was: unknown, now: unknown, ignores: readonly string[]): string {
  const diffs = configChanges(was, now, ignores);
  return diffs.length === 0 ? "the same fields, another config hash" : describeChanges(diffs);
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

/** Whether a config's loss needs real samples in the G phase (see GanLoss.pairsReal). */
export function lossPairsReal(cfg: LossConfig): boolean {
  return cfg.name === "rpgan";
}
