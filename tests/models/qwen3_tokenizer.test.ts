// Qwen3 tokenizer: the 43 llama.cpp Qwen2 test vectors on the real tokenizer.json (plain BPE, no template),
// the chat-template rendering of "sketch, a cat", the tiny FLUX.2-klein repo's tokenizer folder (template only in
// chat_template.jinja) against the end-to-end cases' ids, and truncation / right padding / batching.
import { describe, expect, test } from "bun:test";
import { joinPath, openSafetensors, readText } from "../../core/index.ts";
import { Qwen3Tokenizer } from "../../models/qwen3/tokenizer.ts";
import { FIXTURES } from "../util.ts";

const QWEN3 = joinPath(FIXTURES, "tokenizers/qwen3");
const REPO_TOKENIZER = joinPath(FIXTURES, "repos/black-forest-labs/FLUX.2-klein-tiny/tokenizer");
const EXPECTED = joinPath(FIXTURES, "repos/expected");

let shared: Promise<Qwen3Tokenizer> | undefined;
const realTokenizer = () => (shared ??= Qwen3Tokenizer.load(QWEN3));

describe("qwen3 tokenizer", () => {
  test("all llama.cpp ggml-vocab-qwen2 test vectors", async () => {
    const tok = await realTokenizer();
    const inputs = (await readText(joinPath(QWEN3, "ggml-vocab-qwen2.gguf.inp"))).split("\n__ggml_vocab_test__\n");
    inputs.pop(); // the text after the last separator is empty
    const outputs = (await readText(joinPath(QWEN3, "ggml-vocab-qwen2.gguf.out"))).split("\n");
    expect(inputs.length).toBe(43);
    const failures: string[] = [];
    inputs.forEach((text, i) => {
      const want = outputs[i].trim() ? outputs[i].trim().split(/\s+/).map(Number) : [];
      const got = tok.encode(text);
      if (got.join(" ") !== want.join(" ")) failures.push(`#${i} ${JSON.stringify(text)}: got [${got}], want [${want}]`);
    });
    expect(failures).toEqual([]);
  }, 60_000);

  test('chat template of "sketch, a cat" (enable_thinking=False, generation prompt)', async () => {
    const tok = await realTokenizer();
    const want = await readText(joinPath(QWEN3, "expected_prompt_sketch_a_cat.txt"));
    expect(tok.renderPrompt("sketch, a cat")).toBe(want);
    // The same template from tokenizer_config.json's chat_template key renders the same text.
    const json = (n: string) => readText(joinPath(QWEN3, n)).then((s) => JSON.parse(s));
    const fromConfig = Qwen3Tokenizer.fromFiles(await json("tokenizer.json"), await json("tokenizer_config.json"));
    expect(fromConfig.renderPrompt("sketch, a cat")).toBe(want);
    expect(tok.padId).toBe(151643);
    // Special tokens in the rendered text are single ids: <|im_start|> user \n ... <think> \n\n </think> \n\n.
    const ids = tok.encode(want);
    expect(ids.slice(0, 3)).toEqual([151644, 872, 198]);
    expect(ids.slice(-4)).toEqual([151667, 271, 151668, 271]);
    expect(tok.decode(ids)).toBe(want);
  }, 60_000);

  test("tiny repo tokenizer folder reproduces the end-to-end cases' ids and mask", async () => {
    const tok = await Qwen3Tokenizer.load(REPO_TOKENIZER);
    expect(tok.padId).toBe(151643);
    for (const n of ["0", "1"]) {
      const dir = joinPath(EXPECTED, n);
      const c = JSON.parse(await readText(joinPath(dir, "case.json")));
      const io = await openSafetensors(joinPath(dir, "io.safetensors"));
      expect(tok.renderPrompt(c.prompt)).toBe(c.rendered_chat_template);
      const b = tok.encodePrompts([c.prompt], 512);
      expect(b.lengths).toEqual([c.num_prompt_tokens]);
      expect(Array.from(b.ids)).toEqual(Array.from(await io.readFloat32("qwen_input_ids")));
      expect(Array.from(b.mask)).toEqual(Array.from(await io.readFloat32("qwen_attention_mask")));
    }
  }, 60_000);

  test("batching, right padding and truncation", async () => {
    const tok = await realTokenizer();
    const prompts = ["sketch, a cat", "A cozy cabin in the snowy mountains at dusk, warm light — 35mm photo"];
    const full = prompts.map((p) => tok.encode(tok.renderPrompt(p)));
    const S = 40;
    const b = tok.encodePrompts(prompts, S);
    expect([b.batch, b.length, b.ids.length]).toEqual([2, S, 2 * S]);
    expect(b.lengths).toEqual(full.map((f) => f.length));
    prompts.forEach((_, r) => {
      const row = Array.from(b.ids.subarray(r * S, (r + 1) * S));
      const m = Array.from(b.mask.subarray(r * S, (r + 1) * S));
      expect(row.slice(0, full[r].length)).toEqual(full[r]);
      expect(row.slice(full[r].length).every((id) => id === tok.padId)).toBe(true);
      expect(m).toEqual(row.map((_, i) => (i < full[r].length ? 1 : 0)));
    });
    // Truncation keeps the first max_length ids (the template's tail is cut, as transformers does).
    const t = tok.encodePrompts([prompts[1]], 10);
    expect(Array.from(t.ids)).toEqual(full[1].slice(0, 10));
    expect(Array.from(t.mask)).toEqual(new Array(10).fill(1));
    expect(() => tok.encodePrompts(prompts, 0)).toThrow(/maxLength 0/);
  }, 60_000);
});
