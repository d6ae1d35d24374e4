// Qwen3 text encoder: the qwen3_text_encoder fixture (every output within the case's tolerance), batch independence
// (a B=2 pass equals two B=1 passes row by row, pads included) without leaked intermediates, the tiny FLUX.2-klein
// repo end to end from prompt text (chat-template ids, mask, prompt_embeds, txt_ids against expected/<n> under the
// case's tensor names), partial loading, and load-time config checks.
import { describe, expect, test } from "bun:test";
import { joinPath, openSafetensors } from "../../core/index.ts";
import { formatTable, loadCase } from "../../core/verify.ts";
import { type Qwen3Config, Qwen3Encoder, qwen3RopeTables } from "../../models/qwen3/encoder.ts";
import { promptCaseTensors, Qwen3PromptEncoder } from "../../models/qwen3/prompt.ts";
import "../../models/qwen3/verify.ts";
import { Weights } from "../../models/weights.ts";
import { expectCasePasses, FIXTURES, maxAbsErr, relErr, testDevice } from "../util.ts";

const CASE = joinPath(FIXTURES, "qwen3_text_encoder");
const REPO = joinPath(FIXTURES, "repos/black-forest-labs/FLUX.2-klein-tiny");
const EXPECTED = joinPath(FIXTURES, "repos/expected");

describe("qwen3 text encoder", () => {
  test("fixture qwen3_text_encoder: every output passes", async () => {
    const r = await expectCasePasses(CASE);
    console.log(formatTable(r));
    expect(r.rows.map((row) => row.name).sort()).toEqual(["hidden_states_all", "prompt_embeds", "text_ids"]);
  }, 120_000);

  test("batch of 2 equals two single passes (different lengths of padding)", async () => {
    const dev = await testDevice();
    const c = await loadCase(CASE);
    const model = await Qwen3Encoder.load(dev, await Weights.open(dev, joinPath(CASE, "weights.safetensors")), c.json.config as Qwen3Config);
    const [B, S] = c.shape("input_ids");
    expect(B).toBe(2);
    const ids = Int32Array.from(await c.tensor("input_ids"));
    const mask = Int32Array.from(await c.tensor("attention_mask"));
    const layers = [1, 3];
    const run = async (i: Int32Array, m: Int32Array, b: number) => {
      const { stacked } = model.encode(i, m, b, layers);
      return stacked.toArray().finally(() => stacked.dispose());
    };
    try {
      const row = (a: Int32Array, r: number) => a.subarray(r * S, (r + 1) * S);
      const single = [await run(row(ids, 0), row(mask, 0), 1), await run(row(ids, 1), row(mask, 1), 1)];
      const both = await run(ids, mask, 2);
      const n = single[0].length;
      for (const r of [0, 1]) {
        const e = relErr(both.subarray(r * n, (r + 1) * n), single[r]);
        console.log(`B=2 row ${r} vs B=1: rel err ${e.toExponential(2)}`);
        expect(e).toBeLessThanOrEqual(1e-6);
      }
      // Every intermediate goes back to the pool: a repeated pass allocates nothing new.
      const allocated = dev.allocatedBytes;
      await run(ids, mask, 2);
      expect(dev.allocatedBytes).toBe(allocated);
    } finally {
      model.dispose();
    }
  }, 120_000);

  test("tiny FLUX.2-klein repo end to end from prompt text matches expected/0 and expected/1", async () => {
    const dev = await testDevice();
    const pe = await Qwen3PromptEncoder.load(dev, REPO);
    try {
      // Only the layers the pipeline reads (hidden_states up to 27) are uploaded; deeper ones are refused.
      expect(pe.encoder.maxHiddenState).toBe(27);
      expect(() => pe.encoder.encode(new Int32Array(4), new Int32Array(4).fill(1), 1, [28])).toThrow(/hidden state 28 outside 0..27/);
      for (const n of ["0", "1"]) {
        const dir = joinPath(EXPECTED, n);
        const c = await loadCase(dir);
        const io = await openSafetensors(joinPath(dir, "io.safetensors"));
        const got = pe.encode([c.json.prompt as string]);
        const ours = await promptCaseTensors(got);
        got.promptEmbeds.dispose();
        expect(got.tokens.lengths).toEqual([c.json.num_prompt_tokens as number]);
        for (const [name, v] of ours) {
          const ref = await io.readFloat32(name);
          const atol = c.json.suggested_tolerance?.[name]?.atol ?? 0;
          const err = maxAbsErr(v, ref);
          console.log(`expected/${n} ${name}: max abs err ${err.toExponential(2)} (bound ${atol})`);
          expect(v.length).toBe(ref.length);
          expect(err).toBeLessThanOrEqual(atol);
        }
      }
    } finally {
      pe.dispose();
    }
  }, 120_000);

  test("RoPE inverse frequencies: f32 by default, bf16-rounded on request", () => {
    const f32 = qwen3RopeTables(3, 16, 1e6, "f32");
    const bf16 = qwen3RopeTables(3, 16, 1e6, "bf16");
    // Row 1 holds cos/sin(inv_freq): j = 0 is 1 in both, j = 1 (1e6^-1/8 = 0.17783) moves by the bf16 rounding.
    expect(f32.cos[8]).toBe(Math.fround(Math.cos(1)));
    expect(Math.abs(f32.sin[9] - Math.sin(0.17782794))).toBeLessThan(1e-7);
    expect(Math.abs(bf16.sin[9] - f32.sin[9])).toBeGreaterThan(1e-5);
  });

  test("load rejects configs the checkpoint or the model does not support", async () => {
    const dev = await testDevice();
    const c = await loadCase(CASE);
    const cfg = c.json.config as Qwen3Config;
    const w = await Weights.open(dev, joinPath(CASE, "weights.safetensors"));
    await expect(Qwen3Encoder.load(dev, w, { ...cfg, head_dim: 8 })).rejects.toThrow(/q_proj.weight" is \[64,32\], config wants \[32,32\]/);
    await expect(Qwen3Encoder.load(dev, w, { ...cfg, num_key_value_heads: 3 })).rejects.toThrow(/multiple of num_key_value_heads/);
    await expect(Qwen3Encoder.load(dev, w, { ...cfg, rope_parameters: { rope_theta: 1e6, rope_type: "yarn" } })).rejects.toThrow(/rope type "yarn"/);
    await expect(Qwen3Encoder.load(dev, w, { ...cfg, num_hidden_layers: 5 })).rejects.toThrow(/no "model.layers.4/);
    w.dispose();
  }, 60_000);
});
