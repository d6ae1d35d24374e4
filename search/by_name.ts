// The searches by name: the names `generate --search` and the browser form accept, and the one dispatch from a name
// to its algorithm, so front ends and the generation layer agree on what "ses" or "none" means.
// - "none" is best-of-1: random search with a budget of 1, i.e. the base noise scored once.
// - "paths" searches over sampler states, so it alone needs a denoiser.
import type { SearchOptions, SearchResult } from "./objective.ts";
import { type Denoiser, pathSearch } from "./paths.ts";
import { randomSearch } from "./random.ts";
import { sesSearch } from "./ses.ts";
import { zeroOrderSearch } from "./zero_order.ts";

export const SEARCH_NAMES = ["none", "random", "zero-order", "paths", "ses"] as const;
export type SearchName = (typeof SEARCH_NAMES)[number];

export function isSearchName(s: string): s is SearchName {
  return (SEARCH_NAMES as readonly string[]).includes(s);
}

const noiseSearches = { none: randomSearch, random: randomSearch, "zero-order": zeroOrderSearch, ses: sesSearch } as const;

/** Runs the search called `name` with its default settings ("none": budget 1; "paths": needs `denoiser`). */
export function searchByName(name: SearchName, o: SearchOptions & { denoiser?: Denoiser }): Promise<SearchResult> {
  if (!isSearchName(name)) throw new Error(`search: unknown search "${name}" (one of ${SEARCH_NAMES.join(", ")})`);
  const { denoiser, ...common } = o;
  if (name === "none") return randomSearch({ ...common, budget: 1 });
  if (name !== "paths") return noiseSearches[name](common);
  if (!denoiser) throw new Error('search: "paths" needs a denoiser');
  return pathSearch({ ...common, denoiser });
}
