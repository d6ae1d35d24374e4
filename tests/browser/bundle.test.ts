// The library bundles for browsers: core/, kernels/, models/, search/ and generate/ go through `bun build --target browser`
// into one ES module, and their sources use no Node, Bun or Deno API except through core/platform.ts, whose
// runtime-only imports are dynamic imports of a variable (left alone by bundlers, never reached in a browser).
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./harness.ts";

const FOLDERS = ["core", "kernels", "models", "search", "generate"];
const RUNTIME_API = /\b(Deno|Bun)\.\w|\bprocess\.(env|argv|exit|versions|stdout|stderr|cwd)\b|\bfrom\s+["'](node:|fs|path|os|child_process)|\brequire\(|\bimport\(\s*["']node:|\bBuffer\./;

describe("browser bundle", () => {
  test("the library folders bundle to one ES module for browsers", async () => {
    const entry = join(ROOT, ".cache", "bundle-entry.ts");
    await Bun.write(entry, FOLDERS.map((f) => `export * as ${f} from "../${f}/index.ts";`).join("\n") + "\n");
    const r = await Bun.build({ entrypoints: [entry], target: "browser", format: "esm" });
    expect(r.logs.map(String).join("\n")).toBe("");
    expect(r.success).toBe(true);
    expect(r.outputs.length).toBe(1);
    const text = await r.outputs[0].text();
    expect(text).not.toMatch(/\bfrom\s*["']node:/);
  }, 60_000);

  test("no Node, Bun or Deno API in their sources outside core/platform.ts", () => {
    const hits: string[] = [];
    for (const folder of FOLDERS) {
      for (const file of readdirSync(join(ROOT, folder), { recursive: true }) as string[]) {
        if (!file.endsWith(".ts") || `${folder}/${file}` === "core/platform.ts") continue;
        readFileSync(join(ROOT, folder, file), "utf8").split("\n").forEach((line, i) => {
          if (!/^\s*(\/\/|\*)/.test(line) && RUNTIME_API.test(line)) hits.push(`${folder}/${file}:${i + 1}: ${line.trim()}`);
        });
      }
    }
    expect(hits.join("\n")).toBe("");
  });
});
