// SES, Spectral Evolution Search (DiffSynth-Studio `ses_search`, arXiv 2602.03208), on our GPU Haar transform and
// RNG. The base noise is split once (haarDwt2d, `level` levels, pywt 'db1'/'symmetric' semantics); its detail bands
// stay fixed and the cross-entropy method of ses_core.ts (the one checked against the ses_dwt fixture) searches the
// low band, D = C·⌈H/2^L⌉·⌈W/2^L⌉ numbers, from N(0, I). A candidate is its low band uploaded and inverse-transformed
// with the fixed details. Defaults as upstream: popsize 10, 5 elites, level 4; generations = budget // popsize + 5,
// cut off when the budget is spent. The base noise itself is never scored (it only supplies the details).
// - Draws: every generation takes popsize × D normals from the seed's stream (torch.randn(popsize, D)'s role), the
//   whole matrix even when the budget cuts the generation short, so a run is a prefix of any longer run.
// - Candidates stay f32 (upstream casts them to the base dtype; a bf16 pipeline rounds at its input). They are
//   built as they are scored, at most `batch` at a time, and disposed after scoring except for the best's handle.
import { Tensor } from "../core/index.ts";
import { haarDwt2d, haarIdwt2d } from "../kernels/haar.ts";
import { checkInt, checkSearchOptions, Evaluation, NoiseStream, type SearchOptions, type SearchResult } from "./objective.ts";
import { SesCem, sesMaxGenerations, type SesSettings } from "./ses_core.ts";

export interface SesOptions extends SearchOptions {
  /** Candidates per generation (default 10). */
  popsize?: number;
  /** Elite pool size (default 5). */
  elites?: number;
  /** Haar levels; the search space is the level-`level` approximation band (default 4). */
  level?: number;
}

export async function sesSearch(opts: SesOptions): Promise<SearchResult> {
  const batch = checkSearchOptions("sesSearch", opts);
  const { baseNoise, budget } = opts;
  const settings: SesSettings = { popsize: opts.popsize ?? 10, kElites: opts.elites ?? 5, budget };
  const level = opts.level ?? 4;
  checkInt("sesSearch: popsize", settings.popsize, 1);
  checkInt("sesSearch: elites", settings.kElites, 1);
  checkInt("sesSearch: level", level, 1);
  if (baseNoise.shape.length !== 4 || baseNoise.shape[0] !== 1) throw new Error(`sesSearch: baseNoise must be [1, C, H, W], got [${baseNoise.shape}]`);
  const [, , H, W] = baseNoise.shape;
  const dev = baseNoise.dev;
  const ev = new Evaluation("sesSearch", opts.objective, budget, batch, opts.onEval);
  const stream = new NoiseStream(dev, opts.seed);
  const { low, details } = haarDwt2d(baseNoise, level);
  try {
    const cem = new SesCem(low.size, settings, await low.toArray());
    return await ev.run(async () => {
      for (let g = 0; g < sesMaxGenerations(settings) && !cem.done; g++) {
        const candidates = cem.sample(cem.std(), stream.randnCpu(settings.popsize * cem.dim));
        const scores = await ev.scoreEach(candidates.length, g, (i) => {
          const band = Tensor.fromArray(dev, candidates[i], low.shape);
          const noise = haarIdwt2d(band, details, H, W);
          band.dispose(); // the pending inverse still reads it; later writers are ordered after it
          return noise;
        });
        cem.update(candidates, scores);
      }
    });
  } finally {
    low.dispose();
    for (const d of details) for (const t of [d.h, d.v, d.d]) t.dispose();
  }
}
