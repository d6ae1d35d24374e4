// FLUX.2 transformer against the shared fixtures (every output and debug tensor within the case's tolerance),
// batch independence (a B=2 pass equals two B=1 passes row by row) without leaked intermediates, the CPU sinusoid
// against torch's, and load-time config checks.
import { describe, expect, test } from "bun:test";
import { joinPath, Tensor } from "../../core/index.ts";
import { loadCase } from "../../core/verify.ts";
import { timestepSinusoid } from "../../models/flux2/timestep.ts";
import { type Flux2TransformerConfig, Flux2Transformer } from "../../models/flux2/transformer.ts";
import "../../models/flux2/verify.ts";
import { Weights } from "../../models/weights.ts";
import { expectCasePasses, FIXTURES, maxAbsErr, rand, relErr, testDevice } from "../util.ts";

const PLAIN = joinPath(FIXTURES, "flux2_transformer");
const GUIDANCE = joinPath(FIXTURES, "flux2_transformer_guidance");

async function expectAllPass(dir: string): Promise<void> {
  expect((await expectCasePasses(dir)).rows.length).toBeGreaterThan(10);
}

describe("flux2 transformer", () => {
  test("fixture flux2_transformer: every tensor passes", () => expectAllPass(PLAIN), 120_000);

  test("fixture flux2_transformer_guidance: every tensor passes", () => expectAllPass(GUIDANCE), 120_000);

  test("timestep sinusoid matches torch's float32 features", async () => {
    const c = await loadCase(GUIDANCE);
    for (const [input, proj] of [["timestep", "timestep_proj"], ["guidance", "guidance_proj"]]) {
      const ref = await c.tensor(proj);
      const ours = timestepSinusoid(Array.from(await c.tensor(input)), ref.length);
      expect(maxAbsErr(ours, ref)).toBeLessThanOrEqual(2.5e-7);
    }
  });

  test("batch of 2 equals two single passes (different latents, text, timesteps, guidance)", async () => {
    const dev = await testDevice();
    const c = await loadCase(GUIDANCE);
    const model = await Flux2Transformer.load(dev, await Weights.open(dev, joinPath(GUIDANCE, "weights.safetensors")), c.json.config as Flux2TransformerConfig);
    const [, Li, Cin] = c.shape("hidden_states");
    const [, Lt, J] = c.shape("encoder_hidden_states");
    const ids = async (n: string, L: number) => Int32Array.from((await c.tensor(n)).subarray(0, L * 4));
    const imgIds = await ids("img_ids", Li);
    const txtIds = await ids("txt_ids", Lt);
    const xs = [await c.tensor("hidden_states"), rand(Li * Cin, 11)];
    const cs = [await c.tensor("encoder_hidden_states"), rand(Lt * J, 12)];
    const ts = [0.618, 0.05];
    const gs = [3.5, 1.25];
    const run = (rows: number[]) => {
      const cat = (parts: Float32Array[]) => {
        const out = new Float32Array(rows.length * parts[0].length);
        rows.forEach((r, i) => out.set(parts[r], i * parts[0].length));
        return out;
      };
      const x = Tensor.fromArray(dev, cat(xs), [rows.length, Li, Cin]);
      const context = Tensor.fromArray(dev, cat(cs), [rows.length, Lt, J]);
      const y = model.forward({ x, context, timestep: rows.map((r) => ts[r]), guidance: rows.map((r) => gs[r]), imgIds, txtIds });
      x.dispose();
      context.dispose();
      return y.toArray().finally(() => y.dispose());
    };
    try {
      const single = [await run([0]), await run([1])];
      const both = await run([0, 1]);
      const n = single[0].length;
      expect(maxAbsErr(single[0], single[1])).toBeGreaterThan(0.1); // the rows really differ
      for (const r of [0, 1]) {
        const e = relErr(both.subarray(r * n, (r + 1) * n), single[r]);
        console.log(`B=2 row ${r} vs B=1: rel err ${e.toExponential(2)}`);
        expect(e).toBeLessThanOrEqual(1e-6);
      }
      // Every intermediate goes back to the pool: a repeated pass allocates nothing new.
      const allocated = dev.allocatedBytes;
      await run([0, 1]);
      expect(dev.allocatedBytes).toBe(allocated);
    } finally {
      model.dispose();
    }
  }, 120_000);

  test("load rejects a config that does not match the checkpoint", async () => {
    const dev = await testDevice();
    const c = await loadCase(PLAIN);
    const cfg = { ...(c.json.config as Flux2TransformerConfig), num_attention_heads: 4 };
    const w = await Weights.open(dev, joinPath(PLAIN, "weights.safetensors"));
    await expect(Flux2Transformer.load(dev, w, cfg)).rejects.toThrow(/weight" is \[96,96\], config wants \[128,128\]/);
    const bad = { ...(c.json.config as Flux2TransformerConfig), axes_dims_rope: [8, 8, 8] };
    await expect(Flux2Transformer.load(dev, w, bad)).rejects.toThrow(/axes_dims_rope/);
    w.dispose();
  });
});
