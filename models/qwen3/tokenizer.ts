// Qwen3 prompt → token ids, as Flux2KleinPipeline prepares text-encoder input:
// chat template (user message, add_generation_prompt, enable_thinking=False) → byte-level BPE with added tokens
// recognised → truncate/pad right to max_length with the pad token → attention mask.
// Design:
// - BPE and added-token splitting come from @huggingface/tokenizers (pure JS; reproduces all 43 llama.cpp Qwen2
//   test vectors), the template from @huggingface/jinja (the renderer transformers.js uses; trim/lstrip blocks as
//   transformers' Jinja environment). Both run unchanged in Bun, Deno, Node and browsers.
// - Files are read through core's readText, so a folder path or a URL prefix works. The template comes from
//   chat_template.jinja when the folder has one (what newer transformers writes), else tokenizer_config.json.
// - The pad id is the tokenizer's own pad token (tokenizer_config.json `pad_token`), never a constant.
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { exists, joinPath, readText } from "../../core/index.ts";

/** ids and mask [B, S] (row-major), right padded. */
export interface TokenBatch {
  ids: Int32Array;
  mask: Int32Array;
  batch: number;
  length: number;
  /** Real (unpadded, after truncation) token count per prompt. */
  lengths: number[];
}

type TokenizerConfig = Record<string, unknown> & { pad_token?: string | { content: string } | null; chat_template?: unknown };

export class Qwen3Tokenizer {
  readonly padId: number;
  private readonly template: Template;

  private constructor(private readonly tok: Tokenizer, config: TokenizerConfig, template: string) {
    const pad = typeof config.pad_token === "string" ? config.pad_token : config.pad_token?.content;
    if (!pad) throw new Error("Qwen3Tokenizer: tokenizer_config.json has no pad_token");
    const id = tok.token_to_id(pad);
    if (id === undefined) throw new Error(`Qwen3Tokenizer: pad token "${pad}" is not in the vocabulary`);
    this.padId = id;
    this.template = new Template(template);
  }

  /** From parsed tokenizer.json, tokenizer_config.json and the chat template text (else the config's). */
  static fromFiles(tokenizerJson: object, config: TokenizerConfig, chatTemplate?: string): Qwen3Tokenizer {
    const template = chatTemplate ?? config.chat_template;
    if (typeof template !== "string") {
      throw new Error("Qwen3Tokenizer: no chat template (neither chat_template.jinja nor a string chat_template in tokenizer_config.json)");
    }
    return new Qwen3Tokenizer(new Tokenizer(tokenizerJson, config), config, template);
  }

  /** Reads a `tokenizer/` folder (local path or URL prefix). */
  static async load(dir: string): Promise<Qwen3Tokenizer> {
    const json = async (name: string) => JSON.parse(await readText(joinPath(dir, name)));
    const templatePath = joinPath(dir, "chat_template.jinja");
    const template = (await exists(templatePath)) ? await readText(templatePath) : undefined;
    return Qwen3Tokenizer.fromFiles(await json("tokenizer.json"), await json("tokenizer_config.json"), template);
  }

  /** The chat-template text the pipeline tokenizes for one prompt. */
  renderPrompt(prompt: string): string {
    return this.template.render({
      messages: [{ role: "user", content: prompt }],
      add_generation_prompt: true,
      enable_thinking: false,
    });
  }

  /** Token ids of a text; added tokens (<|im_start|>, <think>, ...) in it become their single ids. */
  encode(text: string): number[] {
    return this.tok.encode(text).ids;
  }

  /** Inverse of `encode` (special tokens kept). */
  decode(ids: readonly number[]): string {
    return this.tok.decode([...ids]);
  }

  /** Chat-template ids of each prompt, truncated/right-padded to `maxLength`, and the attention mask. */
  encodePrompts(prompts: readonly string[], maxLength = 512): TokenBatch {
    if (!Number.isInteger(maxLength) || maxLength < 1) throw new Error(`Qwen3Tokenizer: maxLength ${maxLength} must be a positive integer`);
    const B = prompts.length;
    const ids = new Int32Array(B * maxLength).fill(this.padId);
    const mask = new Int32Array(B * maxLength);
    const lengths = prompts.map((p, b) => {
      const t = this.encode(this.renderPrompt(p)).slice(0, maxLength);
      ids.set(t, b * maxLength);
      mask.fill(1, b * maxLength, b * maxLength + t.length);
      return t.length;
    });
    return { ids, mask, batch: B, length: maxLength, lengths };
  }
}
