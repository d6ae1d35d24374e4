// flux2ts/hub: model files from ModelScope (or a Hugging Face mirror) into a cache shared with the modelscope
// library. resolveModel is the entry point; the rest is exposed for the CLI and tests.
export { resolveModel, repoCacheDir, type HubOptions } from "./resolve.ts";
export { cacheContents, cacheRoot, type CachedRepo } from "./cache.ts";
export { REGISTRY, registryEntry, autoSelect, type RegistryEntry } from "./registry.ts";
export { fnmatch, normalizePattern, selectPaths } from "./pattern.ts";
export { HubError } from "./http.ts";
export { checkPath, defaultEndpoint, type RepoFile, type SourceKind } from "./source.ts";
