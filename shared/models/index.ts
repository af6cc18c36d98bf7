// The model registry: one file per architecture, selected by the config's
// `model.name`. A network is a plain function of an ordered tensor list whose
// flat form (parameters, then state) is what travels and is checkpointed.
import type { ModelConfig } from "../config.js";
import { buildDcgan } from "./dcgan.js";
import { buildMlp } from "./mlp.js";
import { buildResnet } from "./resnet.js";
import type { GanModel } from "./types.js";

export type { DcganConfig } from "./dcgan.js";
export { DCGAN_SIZES, dcganLayout } from "./dcgan.js";
export { ModelError } from "./errors.js";
export type { MlpConfig } from "./mlp.js";
export type { ResnetConfig } from "./resnet.js";
export { RESNET_DEFAULT_WIDTH, resnetLayout } from "./resnet.js";
export type { ApplyContext, GanModel, InitSpec, Network, ParamSpec } from "./types.js";
export { initWeights, resultSize, toFlat, toTensors } from "./weights.js";

type Builder<C extends ModelConfig> = (cfg: C, sampleShape: number[]) => GanModel;

/** Every architecture by name. A new one adds its config schema (shared/config.ts) and an entry here. */
const REGISTRY: { [N in ModelConfig["name"]]: Builder<Extract<ModelConfig, { name: N }>> } = {
  mlp: buildMlp,
  dcgan: buildDcgan,
  resnet: buildResnet,
};

export const MODEL_NAMES = Object.keys(REGISTRY) as ModelConfig["name"][];

/**
 * Builds a model for samples of `sampleShape` ([H, W, C] images or [2] points).
 * Throws ModelError when the architecture does not support the shape.
 */
export function buildModel(cfg: ModelConfig, sampleShape: number[]): GanModel {
  const build = REGISTRY[cfg.name] as Builder<ModelConfig>;
  return build(cfg, sampleShape);
}
