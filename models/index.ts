// flux2ts/models: models composed from the kernels, each built from its own config files.
export { Weights } from "./weights.ts";
export { Flux2Pipeline, disposeConditioning, latentIds, type GenerateOptions, type GenerateResult } from "./flux2/pipeline.ts";
export { Flux2Transformer, type Flux2TransformerConfig } from "./flux2/transformer.ts";
export { Flux2Vae, type Flux2VaeConfig, imageBytes, toImageFloat } from "./flux2/vae.ts";
export { FLUX2_SCHEDULER, flowMatchSigmas, diffsynthFlux2Sigmas, empiricalMu, type FlowMatchSchedule } from "./flux2/scheduler.ts";
export { Qwen3Encoder } from "./qwen3/encoder.ts";
export { Qwen3Tokenizer } from "./qwen3/tokenizer.ts";
export { Qwen3PromptEncoder } from "./qwen3/prompt.ts";
export { PickScore } from "./clip/pickscore.ts";
