// The layering of shared/design.md, checked on every .ts file of the checkout: imports point down only.
// `cli/ web/ batch/` (front ends) > `generate/` > `models/ search/` > `kernels/` > `core/ hub/`; web/ imports neither
// tests/ nor cli/; only cli/bench.ts (the `flux2ts bench` command) imports bench/; tests/ take nothing from bench/.
// Imports are read with TypeScript's own pre-processor (static imports, re-exports, `import "x"` and `import("x")`
// with a literal), so comments and strings never count. tests/ and bench/ are tools on top: they may import
// anything (tests/ nothing from bench/), and so may folders the rules do not name (a packaging script, say); no
// layer may import them.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const LIBRARY = ["core", "hub", "kernels", "models", "search", "generate"];

/** What each top folder may import besides itself; a folder not listed here is not constrained. */
const ALLOWED: Record<string, string[]> = {
  core: [],
  hub: ["core"],
  kernels: ["core"],
  models: ["core", "hub", "kernels"],
  search: ["core", "hub", "kernels"],
  generate: ["core", "hub", "kernels", "models", "search"],
  web: LIBRARY,
  cli: [...LIBRARY, "batch", "bench"],
  batch: LIBRARY,
};

/** Files besides cli/bench.ts that import from bench/: none may. */
const BENCH_IMPORTERS = new Set(["cli/bench.ts"]);

/** The rule an import from `file` to `target` (paths relative to the root, "/"-separated) breaks, or null. */
function violation(file: string, target: string): string | null {
  const [from] = file.split("/"), [to] = target.split("/");
  if (to === "bench" && from !== "bench" && !BENCH_IMPORTERS.has(file)) return `only cli/bench.ts imports bench/`;
  if (from === to || !(from in ALLOWED)) return null;
  return ALLOWED[from].includes(to) ? null : `${from}/ may import only ${ALLOWED[from].map((f) => f + "/").join(" ") || "itself"}`;
}

/** Every relative import of one source file, resolved against the root: [target, line]. */
function relativeImports(file: string, text: string): [string, number][] {
  const info = ts.preProcessFile(text, true, true);
  return info.importedFiles
    .filter((f) => f.fileName.startsWith("."))
    .map((f) => [posix.normalize(posix.join(posix.dirname(file), f.fileName)), text.slice(0, f.pos).split("\n").length]);
}

function sourceFiles(dir = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    if (e.name.startsWith(".") || e.name === "node_modules" || e.name === "dist") continue;
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...sourceFiles(rel));
    else if (e.name.endsWith(".ts")) out.push(rel);
  }
  return out;
}

const breaches = (files: Record<string, string>) =>
  Object.entries(files).flatMap(([file, text]) =>
    relativeImports(file, text).flatMap(([target, line]) => {
      const why = violation(file, target);
      return why ? [`${file}:${line} imports ${target}: ${why}`] : [];
    }),
  );

describe("layers", () => {
  test("no import in the checkout points up a layer", () => {
    const files = sourceFiles();
    expect(files.length).toBeGreaterThan(100);
    expect(files).toContain("generate/generation.ts");
    expect(breaches(Object.fromEntries(files.map((f) => [f, readFileSync(join(ROOT, f), "utf8")])))).toEqual([]);
  });

  test("one place reads the environment: core/platform.ts's env() (tests and benches aside)", () => {
    const readers = sourceFiles().filter((f) => !/^(tests|bench|pack|dist)\//.test(f) && f !== "core/platform.ts")
      .filter((f) => /\bprocess\??\.env\b|\bDeno\??\.env\b|\benv\s*:\s*\{\s*get\b/.test(readFileSync(join(ROOT, f), "utf8")));
    expect(readers).toEqual([]);
  });

  test("file names follow one convention: snake_case (.test.ts, .ref.ts and .d.ts suffixes aside)", () => {
    const odd = sourceFiles().filter((f) => !/^[a-z0-9_]+(\.(test|ref|d))?\.ts$/.test(posix.basename(f)));
    expect(odd).toEqual([]);
  });

  test("every relative import names a file that exists (tsc does not check side-effect imports)", () => {
    const missing = sourceFiles().flatMap((file) =>
      relativeImports(file, readFileSync(join(ROOT, file), "utf8")).flatMap(([target, line]) => (existsSync(join(ROOT, target)) ? [] : [`${file}:${line} imports ${target}, which does not exist`])),
    );
    expect(missing).toEqual([]);
  });

  test("the checker sees each rule broken, and nothing in comments or strings", () => {
    const found = breaches({
      "core/a.ts": 'import { x } from "../hub/b.ts";',
      "hub/a.ts": 'export * from "../kernels/b.ts";',
      "kernels/a.ts": 'import "../hub/b.ts";',
      "models/a.ts": 'import type { S } from "../search/b.ts";',
      "search/a.ts": 'const m = await import("../models/b.ts");',
      "generate/a.ts": 'import {\n  y,\n} from "../batch/b.ts";',
      "web/a.ts": 'import { z } from "../tests/util.ts";\nimport { w } from "../cli/progress.ts";',
      "cli/generate.ts": 'import { q } from "../bench/search.ts";',
      "tests/search/a.test.ts": 'import { o } from "../../bench/search.ts";',
      "models/ok.ts": '// import "../generate/x.ts"\nconst s = \'import "../web/x.ts"\';\nimport { t } from "../kernels/t.ts";',
    });
    expect(found).toEqual([
      "core/a.ts:1 imports hub/b.ts: core/ may import only itself",
      "hub/a.ts:1 imports kernels/b.ts: hub/ may import only core/",
      "kernels/a.ts:1 imports hub/b.ts: kernels/ may import only core/",
      "models/a.ts:1 imports search/b.ts: models/ may import only core/ hub/ kernels/",
      "search/a.ts:1 imports models/b.ts: search/ may import only core/ hub/ kernels/",
      "generate/a.ts:3 imports batch/b.ts: generate/ may import only core/ hub/ kernels/ models/ search/",
      "web/a.ts:1 imports tests/util.ts: web/ may import only core/ hub/ kernels/ models/ search/ generate/",
      "web/a.ts:2 imports cli/progress.ts: web/ may import only core/ hub/ kernels/ models/ search/ generate/",
      "cli/generate.ts:1 imports bench/search.ts: only cli/bench.ts imports bench/",
      "tests/search/a.test.ts:1 imports bench/search.ts: only cli/bench.ts imports bench/",
    ]);
    expect(breaches({ "cli/bench.ts": 'import { b } from "../bench/kernels.ts";', "bench/a.ts": 'import { u } from "../tests/util.ts";', "tests/a.test.ts": 'import "../cli/verify.ts";' })).toEqual([]);
  });
});
