// flux2ts/generate: text to image with noise search: a FLUX.2 pipeline, a verifier and a search wired together, the
// run's log, and replay of any logged candidate. What the CLI, the browser app and batch workers share.
export {
  type GenerationEvent,
  type GenerationLog,
  type GenerationModels,
  type GenerationResult,
  type GenerationSettings,
  generateWithSearch,
  imageRgb8,
  type LoadedReference,
  loadReferences,
  type ProgressEvent,
  type ReferenceRecord,
  referenceOutputSize,
  replayGeneration,
  resolveSettings,
  SEARCH_SEED_OFFSET,
  selfVerifierStep,
  VERIFIER_NAMES,
  type VerifierName,
} from "./generation.ts";
export {
  type CandidateEvent,
  type CandidateRecord,
  type CandidateRenderer,
  formatSeconds,
  type Rendering,
  replayCandidate,
  runSearch,
  type RunSearchOptions,
  type RunSearchResult,
} from "./run_search.ts";
export { isSearchName, SEARCH_NAMES, type SearchName } from "../search/by_name.ts";
export { type ModelNames, type RunLog, runLog, stem } from "./run_log.ts";
