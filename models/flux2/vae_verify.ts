// Runner of the `flux2_vae` reference case: the VAE is built from the case's `config` and weights.safetensors.
// Encode side: image → encoder (per-block debug, moments) → posterior mean → patchify + BN normalisation; the
// normalised packed tokens are unpacked to [B, 4C, h, w] for comparison. Decode side: packed_latents are placed on
// the grid their latent_ids give (diffusers' _unpack_latents_with_ids scatters token i to row h_i, column w_i of a
// max(h)+1 × max(w)+1 grid, zeros elsewhere), then de-normalised, unpatchified and decoded.
import { type Device, joinPath, Tensor } from "../../core/index.ts";
import { CaseError, type LoadedCase, registerCase } from "../../core/verify.ts";
import { unpackLatents } from "../../kernels/layout.ts";
import { Weights } from "../weights.ts";
import { type Flux2VaeConfig, Flux2Vae } from "./vae.ts";

/** Tokens [B, L, C] in raster order of the grid their ids [B, L, 4] (t, h, w, l) name, with the grid size. */
async function tokensOnGrid(c: LoadedCase): Promise<{ data: Float32Array; B: number; h: number; w: number; C: number }> {
  const [B, L, C] = c.shape("packed_latents");
  const idShape = c.shape("latent_ids");
  if (idShape.length !== 3 || idShape[0] !== B || idShape[1] !== L || idShape[2] < 3) {
    throw new CaseError(`${c.dir}: latent_ids [${idShape}] must be [${B}, ${L}, 4] for packed_latents [${B}, ${L}, ${C}]`);
  }
  const k = idShape[2];
  const ids = await c.tensor("latent_ids");
  const src = await c.tensor("packed_latents");
  let h = 0, w = 0;
  for (let i = 0; i < B * L; i++) {
    h = Math.max(h, ids[i * k + 1] + 1);
    w = Math.max(w, ids[i * k + 2] + 1);
  }
  const data = new Float32Array(B * h * w * C);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < L; i++) {
      const at = b * L + i;
      const pos = ids[at * k + 1] * w + ids[at * k + 2];
      data.set(src.subarray(at * C, (at + 1) * C), (b * h * w + pos) * C);
    }
  }
  return { data, B, h, w, C };
}

async function runVae(c: LoadedCase, dev: Device): Promise<Map<string, Float32Array>> {
  const cfg = c.json.config as Flux2VaeConfig | undefined;
  if (!cfg || typeof cfg !== "object") throw new CaseError(`${c.dir}: case.json has no "config"`);
  const vae = await Flux2Vae.load(dev, await Weights.open(dev, joinPath(c.dir, "weights.safetensors")), cfg);
  const out = new Map<string, Float32Array>();
  const pending: Promise<void>[] = [];
  const expected = new Set([...Object.keys(c.json.outputs), ...Object.keys(c.json.debug ?? {})]);
  const debug = (name: string, t: Tensor) => {
    if (expected.has(name) && c.wants(name)) pending.push(t.toArray().then((a) => void out.set(name, a)));
  };
  const tensors: Tensor[] = [];
  const keep = (t: Tensor) => (tensors.push(t), t);
  try {
    const img = keep(Tensor.fromArray(dev, await c.tensor("image"), c.shape("image")));
    const mean = keep(vae.encode(img, debug));
    debug("enc_mean", mean);
    const tokens = keep(vae.normalizeToPacked(mean, debug));
    debug("enc_normalized", keep(unpackLatents(tokens, mean.shape[2] / 2, mean.shape[3] / 2)));

    const grid = await tokensOnGrid(c);
    const packed = keep(Tensor.fromArray(dev, grid.data, [grid.B, grid.h * grid.w, grid.C]));
    const z = keep(vae.denormalizePacked(packed, grid.h, grid.w, debug));
    debug("dec_unpatchified", z);
    debug("decoded", keep(vae.decode(z, debug)));
    await Promise.all(pending);
  } finally {
    for (const t of tensors) t.dispose();
    vae.dispose();
  }
  return out;
}

registerCase("flux2_vae", runVae);
