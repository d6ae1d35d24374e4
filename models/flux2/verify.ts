// Runners of the `flux2_transformer` and `flux2_transformer_guidance` reference cases: the model is built from the
// case's `config` and weights.safetensors, fed the case inputs (ids of batch item 0: diffusers shares them across
// the batch), and every debug tensor the forward pass reports is read back. RoPE tables are stored by the case as
// [L, head_dim] with each pair's angle repeated (repeat_interleave(2)); ours are [L, head_dim/2] and get expanded.
import { type Device, joinPath, Tensor } from "../../core/index.ts";
import { CaseError, type LoadedCase, registerCase } from "../../core/verify.ts";
import { Weights } from "../weights.ts";
import { type Flux2TransformerConfig, Flux2Transformer } from "./transformer.ts";

/** Each value of a [rows, n] table twice in a row → [rows, 2n]. */
function repeatInterleave2(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length * 2);
  a.forEach((v, i) => out.fill(v, 2 * i, 2 * i + 2));
  return out;
}

/** The first `rows` rows of ids stored as [rows, k] or [B, rows, k]. */
async function ids(c: LoadedCase, name: string): Promise<Int32Array> {
  const shape = c.shape(name);
  const [rows, k] = shape.slice(-2);
  if (shape.length < 2 || shape.length > 3) throw new CaseError(`${c.dir}: "${name}" must be [L, k] or [B, L, k], got [${shape}]`);
  return Int32Array.from((await c.tensor(name)).subarray(0, rows * k));
}

async function runTransformer(c: LoadedCase, dev: Device): Promise<Map<string, Float32Array>> {
  const cfg = c.json.config as Flux2TransformerConfig | undefined;
  if (!cfg || typeof cfg !== "object") throw new CaseError(`${c.dir}: case.json has no "config"`);
  const model = await Flux2Transformer.load(dev, await Weights.open(dev, joinPath(c.dir, "weights.safetensors")), cfg);
  const out = new Map<string, Float32Array>();
  const pending: Promise<void>[] = [];
  const expected = new Set(Object.keys(c.json.debug ?? {}));
  const upload = async (name: string) => Tensor.fromArray(dev, await c.tensor(name), c.shape(name));
  const tensors: Tensor[] = [];
  try {
    const x = await upload("hidden_states");
    const context = await upload("encoder_hidden_states");
    tensors.push(x, context);
    const y = model.forward({
      x,
      context,
      timestep: Array.from(await c.tensor("timestep")),
      guidance: c.json.inputs.guidance ? Array.from(await c.tensor("guidance")) : undefined,
      imgIds: await ids(c, "img_ids"),
      txtIds: await ids(c, "txt_ids"),
      debug: (name, t) => {
        if (!expected.has(name) || !c.wants(name)) return;
        const rope = name === "rope_cos" || name === "rope_sin";
        pending.push(t.toArray().then((a) => void out.set(name, rope ? repeatInterleave2(a) : a)));
      },
    });
    tensors.push(y);
    out.set("output", await y.toArray());
    await Promise.all(pending);
  } finally {
    for (const t of tensors) t.dispose();
    model.dispose();
  }
  return out;
}

registerCase("flux2_transformer", runTransformer);
registerCase("flux2_transformer_guidance", runTransformer);
