// The npm package's build (`prepack`, or `bun pack/build.ts`): emits dist/ from the TypeScript sources.
// - ENTRIES is the one list of public entry points. package.json's `exports` and deno.json's `exports` and
//   `publish` (JSR) are derived from it: the build fails when they differ, and `--sync` rewrites them, so adding
//   an entry is one line here plus `--sync`. `--check` only checks them (CI), without building.
// - dist/<layer>/*.js + .d.ts: tsc over the entries and the CLI, imports rewritten from .ts to .js, checked with
//   node's and WebGPU's types only (no Bun globals may leak into the library). `webgpu` stays a runtime import.
//   Every entry's index.d.ts references @webgpu/types, so a consumer's tsc sees the GPU types without setup;
//   `@internal` declarations (the node: module getters) are left out, so the .d.ts need no @types/node.
// - dist/src/: the .ts sources the entries import, for the `bun` export condition (Bun runs TypeScript itself).
// - dist/cli/flux2ts.js: the `bin`, with a node shebang; it runs on Node ≥ 20 and on Bun.
// - dist/web/: index.html, style.css and app.js, the browser app bundled once here, so `flux2ts serve` needs no
//   bundler at run time (cli/serve.ts serves a prebuilt app.js when one sits beside index.html).
// It fails, naming the file, when an emitted import still ends in ".ts". Everything is written to dist.tmp/ and
// renamed to dist/ only once complete and checked.
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ENTRIES = ["core", "kernels", "models", "search", "generate", "hub", "batch"];

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const TMP = join(ROOT, "dist.tmp");
const DIST = join(ROOT, "dist");
const BIN = "cli/flux2ts.ts";
const WEB_FILES = ["index.html", "style.css"];

/** package.json's `exports`: types and JS from dist/, the .ts sources under the `bun` condition. */
const npmExports = () =>
  Object.fromEntries(ENTRIES.map((e) => [`./${e}`, { types: `./dist/${e}/index.d.ts`, bun: `./dist/src/${e}/index.ts`, import: `./dist/${e}/index.js` }]));
/** deno.json's `exports` (JSR): the .ts sources. */
const denoExports = () => Object.fromEntries(ENTRIES.map((e) => [`./${e}`, `./${e}/index.ts`]));
/** What `deno publish` uploads to JSR: the entries' folders (they import nothing outside them), README, LICENSE. */
const denoPublish = () => ({ include: [...ENTRIES, "README.md", "LICENSE"] });

/** The manifest fields derived from ENTRIES, by file. */
const derived = (): [string, Record<string, unknown>][] => [
  ["package.json", { exports: npmExports() }],
  ["deno.json", { exports: denoExports(), publish: denoPublish() }],
];

const IMPORT = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])(\.{1,2}\/[^"']*)\2/g;

/** Relative specifiers of import/export/import() statements in JS, TS or .d.ts text. */
const relativeImports = (text: string): string[] => [...text.matchAll(IMPORT)].map((m) => m[3]);

/** tsc rewrites ".ts" imports in the JS it emits but not in declarations: the same rewrite for .d.ts text. */
const declarationImportsToJs = (text: string): string => text.replace(IMPORT, (m, lead, q, spec) => (spec.endsWith(".ts") ? `${lead}${q}${spec.slice(0, -3)}.js${q}` : m));

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, d.name);
    if (d.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

async function syncManifests(write: boolean): Promise<void> {
  const stale: string[] = [];
  for (const [file, want] of derived()) {
    const path = join(ROOT, file);
    const text = await readFile(path, "utf8");
    const json = JSON.parse(text);
    const keys = Object.keys(want).filter((k) => JSON.stringify(json[k]) !== JSON.stringify(want[k]));
    if (!keys.length) continue;
    if (!write) {
      stale.push(`${file} ${keys.join(", ")}`);
      continue;
    }
    Object.assign(json, want);
    await writeFile(path, JSON.stringify(json, null, 2) + (text.endsWith("\n") ? "\n" : ""));
    console.log(`pack/build.ts: updated ${file} ${keys.join(", ")}`);
  }
  if (stale.length) throw new Error(`${stale.join("; ")}: differ from pack/build.ts ENTRIES; run \`bun pack/build.ts --sync\``);
}

function emit(): void {
  const base = ts.getParsedCommandLineOfConfigFile(join(ROOT, "tsconfig.json"), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
  if (!base) throw new Error("tsconfig.json: cannot be read");
  const options: ts.CompilerOptions = {
    ...base.options,
    types: ["@webgpu/types", "node"],
    noEmit: false,
    outDir: TMP,
    rootDir: ROOT,
    declaration: true,
    stripInternal: true,
    rewriteRelativeImportExtensions: true,
  };
  const program = ts.createProgram([...ENTRIES.map((e) => join(ROOT, e, "index.ts")), join(ROOT, BIN)], options);
  // Declarations only for the library layers; the CLI's modules are no API.
  const library = (file: string) => ENTRIES.includes(relative(TMP, file).split(/[\\/]/)[0]);
  const result = program.emit(undefined, (file, text, bom) => {
    if (!file.endsWith(".d.ts")) ts.sys.writeFile(file, text, bom);
    else if (library(file)) ts.sys.writeFile(file, declarationImportsToJs(text), bom);
  });
  const diags = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics];
  if (diags.length) {
    const host = { getCanonicalFileName: (f: string) => f, getCurrentDirectory: () => ROOT, getNewLine: () => "\n" };
    throw new Error(`tsc:\n${ts.formatDiagnostics(diags, host)}`);
  }
}

/** The entries' .ts sources and everything they import, copied to dist.tmp/src/. */
async function copySources(): Promise<void> {
  const seen = new Set<string>();
  const visit = async (file: string): Promise<void> => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = await readFile(file, "utf8");
    const to = join(TMP, "src", relative(ROOT, file));
    await mkdir(dirname(to), { recursive: true });
    await writeFile(to, text);
    for (const spec of relativeImports(text)) await visit(join(dirname(file), spec));
  };
  for (const e of ENTRIES) await visit(join(ROOT, e, "index.ts"));
}

async function buildWeb(): Promise<void> {
  const out = join(TMP, "web");
  await mkdir(out, { recursive: true });
  for (const f of WEB_FILES) await copyFile(join(ROOT, "web", f), join(out, f));
  type BunBuild = (o: object) => Promise<{ success: boolean; logs: unknown[]; outputs: { text(): Promise<string> }[] }>;
  const bun = (globalThis as { Bun?: { build: BunBuild } }).Bun;
  if (!bun) throw new Error("pack/build.ts: run it with bun (it bundles web/app.ts with Bun.build)");
  const r = await bun.build({ entrypoints: [join(ROOT, "web/app.ts")], target: "browser", format: "esm", minify: true });
  if (!r.success) throw new Error(`web/app.ts: bundling failed:\n${r.logs.map(String).join("\n")}`);
  await writeFile(join(out, "app.js"), await r.outputs[0].text());
}

async function finishBin(): Promise<void> {
  const bin = join(TMP, BIN.replace(/\.ts$/, ".js"));
  const text = await readFile(bin, "utf8");
  await writeFile(bin, `#!/usr/bin/env node\n${text.replace(/^#!.*\n/, "")}`);
  await chmod(bin, 0o755);
}

async function addGpuTypes(): Promise<void> {
  for (const e of ENTRIES) {
    const d = join(TMP, e, "index.d.ts");
    await writeFile(d, `/// <reference types="@webgpu/types" />\n${await readFile(d, "utf8")}`);
  }
}

/** Fails naming every emitted file whose imports still end in ".ts". */
async function checkNoTsImports(): Promise<void> {
  const bad: string[] = [];
  for (const f of await filesUnder(TMP)) {
    if (f.startsWith(join(TMP, "src")) || !/\.(js|d\.ts)$/.test(f)) continue;
    const specs = relativeImports(await readFile(f, "utf8")).filter((s) => /\.ts$/.test(s));
    if (specs.length) bad.push(`${relative(ROOT, f)}: ${specs.join(", ")}`);
  }
  if (bad.length) throw new Error(`imports of .ts files left in dist:\n${bad.join("\n")}`);
}

async function main(args: string[]): Promise<void> {
  await syncManifests(args.includes("--sync"));
  if (args.includes("--check")) return;
  await rm(TMP, { recursive: true, force: true });
  emit();
  await Promise.all([copySources(), buildWeb(), finishBin(), addGpuTypes()]);
  await checkNoTsImports();
  await rm(DIST, { recursive: true, force: true });
  await rename(TMP, DIST);
  console.log(`pack/build.ts: dist/ for ${ENTRIES.join(", ")} and the flux2ts bin`);
}

try {
  await main(process.argv.slice(2));
} catch (e) {
  console.error((e as Error).message);
  process.exit(1);
}
