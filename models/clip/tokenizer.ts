// CLIP tokenizer (the OpenAI CLIP BPE that laion/CLIP-ViT-H-14 and PickScore use), as transformers' CLIPTokenizer
// (tokenizers backend) runs it: NFC, whitespace runs → one space, lowercase; split on the CLIP regex; byte-level
// characters; BPE by merge rank with `</w>` closing each word; <|startoftext|> … <|endoftext|>.
// Design:
// - The BPE itself is @huggingface/tokenizers (already used for Qwen3; its CLIP ids equal an independent Python BPE
//   over vocab.json/merges.txt, per the fixtures' notes). The repo's tokenizer.json is used as is; a folder with
//   only vocab.json + merges.txt gets the tokenizer.json transformers would build for CLIP from them (first
//   48894 merges, as CLIPTokenizer reads them).
// - Special tokens come from the folder's files (special_tokens_map.json over tokenizer_config.json), never
//   constants: the pad token is `<|endoftext|>` in the laion repo but "!" (id 0) in others.
// - Truncation as `processor(text, truncation=True, max_length=77)`: the text's tokens are cut to max_length − 2,
//   then BOS/EOS are added, so EOS is always last. Batches pad right to the longest (padding=True) or to max_length.
import { Tokenizer } from "@huggingface/tokenizers";
import { exists, joinPath, readText } from "../../core/index.ts";

/** ids and mask [B, L] (row-major), right padded. */
export interface ClipTokens {
  ids: Int32Array;
  mask: Int32Array;
  batch: number;
  length: number;
  /** Tokens per text including BOS/EOS. */
  lengths: number[];
}

type TokenField = string | { content?: string } | null | undefined;
type Json = Record<string, unknown>;

const CLIP_SPLIT = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";
/** merges.txt lines CLIPTokenizer reads (49152 − 256 − 2 after the version line). */
const CLIP_MERGES = 48894;

const tokenText = (t: TokenField) => (typeof t === "string" ? t : t?.content);

/** The tokenizer.json transformers builds for CLIPTokenizer from vocab.json and merges.txt. */
export function clipTokenizerJson(vocab: Record<string, number>, mergesTxt: string, bos: string, eos: string, unk: string): Json {
  const lines = mergesTxt.split("\n");
  const merges = lines.slice(lines[0].startsWith("#version") ? 1 : 0).filter((l) => l.trim()).slice(0, CLIP_MERGES);
  const special = (content: string) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
  return {
    version: "1.0",
    added_tokens: [...new Set([bos, eos])].filter((t) => t in vocab).map(special),
    normalizer: { type: "Sequence", normalizers: [{ type: "NFC" }, { type: "Replace", pattern: { Regex: "\\s+" }, content: " " }, { type: "Lowercase" }] },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: CLIP_SPLIT }, behavior: "Removed", invert: true },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: unk, continuing_subword_prefix: "", end_of_word_suffix: "</w>", fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

export class ClipTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;

  private constructor(private readonly tok: Tokenizer, tokens: { bos: string; eos: string; pad: string }, readonly maxLength: number) {
    const id = (t: string, what: string) => {
      const v = tok.token_to_id(t);
      if (v === undefined) throw new Error(`ClipTokenizer: ${what} token "${t}" is not in the vocabulary`);
      return v;
    };
    this.bosId = id(tokens.bos, "bos");
    this.eosId = id(tokens.eos, "eos");
    this.padId = id(tokens.pad, "pad");
  }

  /**
   * From parsed files: tokenizer.json (or null with vocab.json + merges.txt), tokenizer_config.json and
   * special_tokens_map.json (either may be empty).
   */
  static fromFiles(files: { tokenizerJson?: Json | null; vocab?: Record<string, number>; merges?: string; config?: Json; specialTokens?: Json }): ClipTokenizer {
    const config = files.config ?? {};
    const pick = (key: string, def: string) => tokenText((files.specialTokens?.[key] ?? config[key]) as TokenField) ?? def;
    const bos = pick("bos_token", "<|startoftext|>");
    const eos = pick("eos_token", "<|endoftext|>");
    const tokens = { bos, eos, pad: pick("pad_token", eos) };
    let json = files.tokenizerJson;
    if (!json) {
      if (!files.vocab || files.merges === undefined) throw new Error("ClipTokenizer: need tokenizer.json, or vocab.json and merges.txt");
      json = clipTokenizerJson(files.vocab, files.merges, bos, eos, pick("unk_token", eos));
    }
    // Configs without a real limit store a huge sentinel; CLIP's text tower has 77 positions.
    const max = config.model_max_length;
    const maxLength = typeof max === "number" && Number.isInteger(max) && max >= 2 && max <= 1e6 ? max : 77;
    return new ClipTokenizer(new Tokenizer(json, config), tokens, maxLength);
  }

  /** Reads a tokenizer folder (local path or URL prefix): tokenizer.json or vocab.json + merges.txt, and the configs. */
  static async load(dir: string): Promise<ClipTokenizer> {
    const opt = async (name: string) => ((await exists(joinPath(dir, name))) ? readText(joinPath(dir, name)) : undefined);
    const parse = (name: string, text: string | undefined) => {
      try {
        return text === undefined ? undefined : (JSON.parse(text) as Json);
      } catch (e) {
        throw new Error(`${joinPath(dir, name)}: ${(e as Error).message}`);
      }
    };
    const tokenizerJson = parse("tokenizer.json", await opt("tokenizer.json"));
    const vocabText = tokenizerJson ? undefined : await opt("vocab.json");
    const merges = tokenizerJson ? undefined : await opt("merges.txt");
    if (!tokenizerJson && (vocabText === undefined || merges === undefined)) {
      throw new Error(`${dir}: no CLIP tokenizer files (tokenizer.json, or vocab.json and merges.txt)`);
    }
    return ClipTokenizer.fromFiles({
      tokenizerJson,
      vocab: parse("vocab.json", vocabText) as Record<string, number> | undefined,
      merges,
      config: parse("tokenizer_config.json", await opt("tokenizer_config.json")),
      specialTokens: parse("special_tokens_map.json", await opt("special_tokens_map.json")),
    });
  }

  /** [BOS, tokens…, EOS] of one text, the tokens cut so the whole fits `maxLength`. */
  encode(text: string, maxLength = this.maxLength): number[] {
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new Error(`ClipTokenizer: maxLength ${maxLength} must be an integer ≥ 2`);
    const ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    return [this.bosId, ...ids.slice(0, maxLength - 2), this.eosId];
  }

  /** Several texts, right padded with the pad id to the longest (`padding: "longest"`) or to maxLength. */
  encodeBatch(texts: readonly string[], opts: { padding?: "longest" | "max_length"; maxLength?: number } = {}): ClipTokens {
    const maxLength = opts.maxLength ?? this.maxLength;
    const seqs = texts.map((t) => this.encode(t, maxLength));
    const L = opts.padding === "max_length" ? maxLength : Math.max(0, ...seqs.map((s) => s.length));
    const ids = new Int32Array(seqs.length * L).fill(this.padId);
    const mask = new Int32Array(seqs.length * L);
    seqs.forEach((s, b) => {
      ids.set(s, b * L);
      mask.fill(1, b * L, b * L + s.length);
    });
    return { ids, mask, batch: seqs.length, length: L, lengths: seqs.map((s) => s.length) };
  }

  decode(ids: readonly number[]): string {
    return this.tok.decode([...ids], { skip_special_tokens: true });
  }
}
