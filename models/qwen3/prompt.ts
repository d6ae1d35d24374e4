// Prompt text → FLUX.2-klein conditioning, as Flux2KleinPipeline._get_qwen3_prompt_embeds does it: chat template
// and tokens (tokenizer.ts), the Qwen3 stack up to the deepest wanted layer (encoder.ts), hidden states stacked
// per token → prompt_embeds [B, S, layers·hidden], and the text RoPE coordinates (0, 0, 0, k).
// Loads from a pipeline repo folder (tokenizer/ + text_encoder/), local path or URL prefix. The defaults are the
// pipeline's (hidden_states 9, 18, 27; 512 tokens), not model sizes. Prompt embeddings are deterministic: callers
// running many seeds of one prompt should encode once.
import { type Device, joinPath, Tensor } from "../../core/index.ts";
import { Qwen3Encoder } from "./encoder.ts";
import { Qwen3Tokenizer, type TokenBatch } from "./tokenizer.ts";

export const DEFAULT_TEXT_LAYERS: readonly number[] = [9, 18, 27];
export const DEFAULT_MAX_SEQUENCE_LENGTH = 512;

/** FLUX.2 text coordinates [B, S, 4]: (t, h, w, l) = (0, 0, 0, k) for token k (diffusers _prepare_text_ids). */
export function textIds(batch: number, length: number): Int32Array {
  const out = new Int32Array(batch * length * 4);
  for (let i = 0; i < batch * length; i++) out[4 * i + 3] = i % length;
  return out;
}

export interface PromptEmbeddings {
  tokens: TokenBatch;
  /** [B, S, layers·hidden] f32. */
  promptEmbeds: Tensor;
  /** [B, S, 4]. */
  txtIds: Int32Array;
}

export class Qwen3PromptEncoder {
  private constructor(
    readonly tokenizer: Qwen3Tokenizer,
    readonly encoder: Qwen3Encoder,
    readonly layers: readonly number[],
    readonly maxLength: number,
  ) {}

  /** Reads `<repo>/tokenizer` and `<repo>/text_encoder` (only the layers up to max(layers) are uploaded). */
  static async load(
    dev: Device,
    repoDir: string,
    opts: { layers?: readonly number[]; maxLength?: number } = {},
  ): Promise<Qwen3PromptEncoder> {
    const layers = opts.layers ?? DEFAULT_TEXT_LAYERS;
    const tokenizer = await Qwen3Tokenizer.load(joinPath(repoDir, "tokenizer"));
    const encoder = await Qwen3Encoder.fromFolder(dev, joinPath(repoDir, "text_encoder"), { maxHiddenState: Math.max(...layers) });
    return new Qwen3PromptEncoder(tokenizer, encoder, layers, opts.maxLength ?? DEFAULT_MAX_SEQUENCE_LENGTH);
  }

  /** One row per prompt. The caller owns promptEmbeds. */
  encode(prompts: readonly string[]): PromptEmbeddings {
    const tokens = this.tokenizer.encodePrompts(prompts, this.maxLength);
    const { stacked } = this.encoder.encode(tokens.ids, tokens.mask, tokens.batch, this.layers);
    return { tokens, promptEmbeds: stacked, txtIds: textIds(tokens.batch, tokens.length) };
  }

  dispose(): void {
    this.encoder.dispose();
  }
}

/** The prompt stage under the names the end-to-end cases use (qwen_input_ids, qwen_attention_mask, prompt_embeds, txt_ids). */
export async function promptCaseTensors(p: PromptEmbeddings): Promise<Map<string, Float32Array>> {
  return new Map([
    ["qwen_input_ids", Float32Array.from(p.tokens.ids)],
    ["qwen_attention_mask", Float32Array.from(p.tokens.mask)],
    ["prompt_embeds", await p.promptEmbeds.toArray()],
    ["txt_ids", Float32Array.from(p.txtIds)],
  ]);
}
