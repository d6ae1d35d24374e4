// Runner of the `qwen3_text_encoder` reference case: the encoder is built from the case's `config` and
// weights.safetensors and fed the case's (already tokenized, right-padded) ids and mask. prompt_embeds stacks the
// case's hidden_states_layers; hidden_states_all is every hidden state (the last one normed, as transformers
// returns it), computed in the same pass; text_ids are the FLUX.2 text coordinates (0, 0, 0, k).
// The reference model was cast to the stored weight dtype and back to float32, which rounds its RoPE inv_freq
// buffer to that dtype too: the runner loads with ropeFreqDType = the embedding table's dtype (measured on the
// shared case: f32 frequencies give max err 2.3e-5 > 2e-5, bf16 ones 2.4e-7).
import { type Device, joinPath, safetensorsDType } from "../../core/index.ts";
import { CaseError, EXACT, type LoadedCase, registerCase } from "../../core/verify.ts";
import { Weights } from "../weights.ts";
import { type Qwen3Config, Qwen3Encoder } from "./encoder.ts";
import { textIds } from "./prompt.ts";

async function runQwen3(c: LoadedCase, dev: Device): Promise<Map<string, Float32Array>> {
  const cfg = c.json.config as Qwen3Config | undefined;
  const layers = c.json.hidden_states_layers;
  if (!cfg || typeof cfg !== "object") throw new CaseError(`${c.dir}: case.json has no "config"`);
  if (!Array.isArray(layers) || !layers.every((k) => Number.isInteger(k))) throw new CaseError(`${c.dir}: case.json needs integer "hidden_states_layers"`);
  const [B, S] = c.shape("input_ids");
  const ids = Int32Array.from(await c.tensor("input_ids"));
  const mask = Int32Array.from(await c.tensor("attention_mask"));
  const weights = await Weights.open(dev, joinPath(c.dir, "weights.safetensors"));
  const table = weights.ckpt.names().find((n) => n.endsWith("embed_tokens.weight"));
  if (!table) throw new CaseError(`${c.dir}: weights.safetensors has no embed_tokens.weight`);
  const freqDType = safetensorsDType(weights.ckpt.get(table).dtype, `${c.dir}: ${table}`);
  const model = await Qwen3Encoder.load(dev, weights, cfg, { ropeFreqDType: freqDType });
  const out = new Map<string, Float32Array>();
  try {
    const all = c.wants("hidden_states_all");
    const { stacked, hidden } = model.encode(ids, mask, B, layers, all ? { hiddenUpTo: model.numLayers } : {});
    out.set("prompt_embeds", await stacked.toArray());
    stacked.dispose();
    if (hidden) {
      const n = B * S * model.hidden;
      const buf = new Float32Array(hidden.length * n);
      for (const [k, t] of hidden.entries()) buf.set(await t.toArray(), k * n);
      hidden.forEach((t) => t.dispose());
      out.set("hidden_states_all", buf);
    }
  } finally {
    model.dispose();
  }
  out.set("text_ids", Float32Array.from(textIds(B, S)));
  return out;
}

registerCase("qwen3_text_encoder", runQwen3, { rules: { text_ids: EXACT } });
