// Best-of-N random search (the DiffSynth tutorial's `random_search`, "random search" in arXiv 2501.09732): the
// base noise first, then budget − 1 fresh N(0, 1) noises from the seed's stream; a noise replaces the best only
// when strictly better. Noises are drawn as they are scored, so at most `batch` candidates live on the GPU.
// There are no generations: every history entry has generation 0.
import { checkSearchOptions, Evaluation, NoiseStream, retain, type SearchOptions, type SearchResult } from "./objective.ts";

export async function randomSearch(opts: SearchOptions): Promise<SearchResult> {
  const batch = checkSearchOptions("randomSearch", opts);
  const { baseNoise, budget } = opts;
  const ev = new Evaluation("randomSearch", opts.objective, budget, batch, opts.onEval);
  const stream = new NoiseStream(baseNoise.dev, opts.seed);
  return ev.run(async () => {
    await ev.scoreEach(budget, 0, (i) => (i === 0 ? retain(baseNoise) : stream.randn(baseNoise.shape)));
  });
}
