// File selection with DiffSynth's `origin_file_pattern` semantics: Python `fnmatch.fnmatch` on the repo-relative
// path (case-sensitive, `*` also crosses `/`, `?` one character, `[...]`/`[!...]` sets), where an empty pattern or
// "./" means the whole repo and a pattern ending in "/" means everything under that folder. Ignore patterns win.

/** DiffSynth's normalisation of one `origin_file_pattern`. */
export function normalizePattern(pattern: string | null | undefined): string {
  if (!pattern || pattern === "./") return "*";
  return pattern.endsWith("/") ? pattern + "*" : pattern;
}

const regexCache = new Map<string, RegExp>();

/** fnmatch's translation of a glob to an anchored regular expression. */
function toRegExp(pattern: string): RegExp {
  let re = regexCache.get(pattern);
  if (re) return re;
  let src = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*") src += "[\\s\\S]*";
    else if (c === "?") src += "[\\s\\S]";
    else if (c === "[") {
      // A set runs to the next "]" that is not its first member; with none, "[" is a literal (as in fnmatch).
      let j = i + 1;
      if (pattern[j] === "!") j++;
      if (pattern[j] === "]") j++;
      while (j < pattern.length && pattern[j] !== "]") j++;
      if (j >= pattern.length) src += "\\[";
      else {
        let body = pattern.slice(i + 1, j).replace(/\\/g, "\\\\").replace(/\^/g, "\\^");
        if (body.startsWith("!")) body = "^" + body.slice(1);
        src += `[${body}]`;
        i = j;
      }
    } else src += c.replace(/[.+^${}()|\\\]/-]/g, "\\$&");
  }
  re = new RegExp(`^${src}$`);
  regexCache.set(pattern, re);
  return re;
}

export function fnmatch(path: string, pattern: string): boolean {
  return toRegExp(pattern).test(path);
}

/** The paths matching any allow pattern (normalised) and no ignore pattern, in their input order. */
export function selectPaths(paths: readonly string[], allow: readonly string[], ignore: readonly string[] = []): string[] {
  const yes = (allow.length ? allow : ["*"]).map(normalizePattern);
  const no = ignore.map(normalizePattern);
  return paths.filter((p) => yes.some((g) => fnmatch(p, g)) && !no.some((g) => fnmatch(p, g)));
}
