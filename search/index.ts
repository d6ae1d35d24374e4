// flux2ts/search: inference-time noise search. Every algorithm takes { baseNoise, objective, budget, seed, batch? }
// plus its own options and resolves to { bestNoise, bestScore, history, evals, nfe } (see objective.ts); models
// enter only through the objective, the pathSearch denoiser and the verifier interfaces.
export {
  DEFAULT_NFE_PER_EVAL,
  type HistoryEntry,
  NoiseStream,
  type Objective,
  type SearchOptions,
  type SearchResult,
  withNfe,
} from "./objective.ts";
export { randomSearch } from "./random.ts";
export { sesSearch, type SesOptions } from "./ses.ts";
export { sphereNeighbors, zeroOrderSearch, type ZeroOrderOptions } from "./zero_order.ts";
export { type Denoiser, type DenoiseResult, pathRounds, pathSearch, type PathSearchOptions } from "./paths.ts";
export * from "./verifiers.ts";
export { isSearchName, searchByName, SEARCH_NAMES, type SearchName } from "./by_name.ts";
