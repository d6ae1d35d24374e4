// Model names users can type, mapped to repos on each source and to the files the loaders read (as DiffSynth
// `origin_file_pattern`s), so a download never fetches the multi-GB files nothing reads (PickScore's
// pytorch_model.bin, a diffusers repo's original-format single-file checkpoint, the processor repo's weights).
// `required` patterns must each match a listed file: a repo whose layout changed fails with a clear error instead
// of handing the loader a folder with a piece missing.
export interface RegistryEntry {
  name: string;
  description: string;
  repos: { modelscope: string; huggingface: string };
  allow: string[];
  required: string[];
}

export const REGISTRY: readonly RegistryEntry[] = [
  {
    name: "klein-4b",
    description: "FLUX.2-klein-4B text-to-image pipeline (diffusers layout: Qwen3 text encoder, transformer, VAE)",
    repos: { modelscope: "black-forest-labs/FLUX.2-klein-4B", huggingface: "black-forest-labs/FLUX.2-klein-4B" },
    allow: [
      "model_index.json",
      "scheduler/*.json",
      "text_encoder/*.json",
      "text_encoder/*.safetensors",
      "tokenizer/*",
      "transformer/*.json",
      "transformer/*.safetensors",
      "vae/*.json",
      "vae/*.safetensors",
    ],
    required: ["model_index.json", "scheduler/*.json", "text_encoder/config.json", "text_encoder/*.safetensors", "tokenizer/*",
      "transformer/config.json", "transformer/*.safetensors", "vae/config.json", "vae/*.safetensors"],
  },
  {
    name: "pickscore",
    description: "PickScore_v1 reward model (CLIP ViT-H-14 weights and config)",
    repos: { modelscope: "AI-ModelScope/PickScore_v1", huggingface: "yuvalkirstain/PickScore_v1" },
    allow: ["config.json", "model*.safetensors*"],
    required: ["config.json", "model*.safetensors*"],
  },
  {
    name: "clip-h14-processor",
    description: "CLIP ViT-H-14 image processor and tokenizer files (what PickScore's processor loads)",
    repos: { modelscope: "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", huggingface: "laion/CLIP-ViT-H-14-laion2B-s32B-b79K" },
    allow: ["preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"],
    required: ["preprocessor_config.json"],
  },
];

export function registryEntry(name: string): RegistryEntry | undefined {
  return REGISTRY.find((e) => e.name === name);
}

/** Weight formats our loaders never read; skipped in repos not in the registry. */
const OTHER_WEIGHTS = /\.(bin|pt|pth|ckpt|h5|msgpack|onnx|onnx_data|ot|gguf|tflite|mlmodel)$/i;

/**
 * The files of a repo that is not in the registry: everything, except weights in formats the loaders never read,
 * and — in a diffusers repo (model_index.json at the top) — files at the top other than JSON and text, which are
 * original-format single-file checkpoints and images the diffusers layout does not use.
 */
export function autoSelect(paths: readonly string[]): string[] {
  const diffusers = paths.includes("model_index.json");
  return paths.filter((p) => {
    if (OTHER_WEIGHTS.test(p)) return false;
    return !(diffusers && !p.includes("/") && !/\.(json|txt|md)$/i.test(p));
  });
}
