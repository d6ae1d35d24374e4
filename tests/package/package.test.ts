// The npm package as a user gets it: `npm pack` (which runs the prepack build, pack/build.ts), the tarball
// installed with `npm install` into an empty temp project, then the bin and the library used from there on Node,
// Bun and Deno: `flux2ts info` on Node and Bun, a plain ESM script that runs `matmul` on the WebGPU adapter against
// a CPU product (type-checked by tsc with every entry's shipped .d.ts; Deno imports it the README's way, `npm:…`),
// `flux2ts generate` on the tiny fixture repos on Node and Bun (byte-identical PNGs), and `flux2ts serve` on Node
// serving the prebuilt app. Packing and installing happen once for the file; the packed size is printed.
import { afterAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { FIXTURES } from "../util.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BUN = (globalThis as { Bun?: unknown }).Bun ? process.execPath : join(ROOT, "node_modules/.bin/bun");
const DENO = join(ROOT, "node_modules/.bin/deno");
const TSC = join(ROOT, "node_modules/typescript/bin/tsc");
const REPOS = join(FIXTURES, "repos");
/** The public entry points, as package.json exports them ("./core" → "core"). */
const ENTRIES = Object.keys(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).exports).map((k: string) => k.slice(2));

type Result = { code: number | null; stdout: string; stderr: string };
function sh(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Result {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, ...env }, timeout: 600_000, maxBuffer: 64 << 20 });
  const out = { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
  if (out.code !== 0) console.log(`${cmd} ${args.join(" ")} (in ${cwd}) exited ${out.code}:\n${out.stderr}${out.stdout}`);
  return out;
}

interface PackFile {
  path: string;
  mode: number;
}
interface Installed {
  dir: string;
  project: string;
  files: PackFile[];
}

let tempDir: string | undefined;
let installed: Promise<Installed> | undefined;
function install(): Promise<Installed> {
  installed ??= (async () => {
    const dir = (tempDir = mkdtempSync(join(tmpdir(), "flux2ts-pkg-")));
    const pack = sh("npm", ["pack", "--json", "--pack-destination", dir], ROOT);
    if (pack.code !== 0) throw new Error("npm pack failed");
    // The prepack build's own log precedes npm's JSON on stdout.
    const [info] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf("[\n"))) as { filename: string; size: number; unpackedSize: number; files: PackFile[] }[];
    console.log(`packed ${info.filename}: ${(info.size / 1024).toFixed(0)} KiB (${(info.unpackedSize / 1024).toFixed(0)} KiB unpacked, ${info.files.length} files)`);
    const project = join(dir, "project");
    mkdirSync(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "flux2ts-user", private: true, type: "module" }));
    const npmInstall = sh("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", join(dir, info.filename)], project);
    if (npmInstall.code !== 0) throw new Error("npm install of the tarball failed");
    return { dir, project, files: info.files };
  })();
  return installed;
}

/** A user's script: random [37, 53] · [29, 53]ᵀ on the GPU against a float64 CPU product. */
const MATMUL_SCRIPT = `import { Device, Tensor } from "flux2ts/core";
import { matmul } from "flux2ts/kernels";

const M = 37, N = 29, K = 53;
let s = 12345;
const rand = (/** @type {number} */ n) => Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1);
const a = rand(M * K), b = rand(N * K);
const dev = await Device.open();
const y = await matmul(Tensor.fromArray(dev, a, [M, K]), Tensor.fromArray(dev, b, [N, K])).toArray();
let worst = 0;
for (let i = 0; i < M; i++)
  for (let j = 0; j < N; j++) {
    let ref = 0, mag = 0;
    for (let k = 0; k < K; k++) (ref += a[i * K + k] * b[j * K + k]), (mag += Math.abs(a[i * K + k] * b[j * K + k]));
    worst = Math.max(worst, Math.abs(y[i * N + j] - ref) / mag);
  }
console.log(JSON.stringify({ adapter: dev.describe(), length: y.length, worst }));
dev.destroy();
`;

function checkMatmul(r: Result): void {
  expect(r.code).toBe(0);
  const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as { adapter: string; length: number; worst: number };
  expect(out.adapter).not.toBe("");
  expect(out.length).toBe(37 * 29);
  expect(out.worst).toBeLessThan(1e-6); // f32 accumulation of 53 terms, relative to Σ|aᵢbᵢ|
}

describe("npm package", () => {
  afterAll(() => {
    if (tempDir) rmSync(tempDir, { recursive: true, force: true }); // ~140 MB: Dawn for 5 platforms
  });

  test("the tarball holds dist/ (every entry's JS, .d.ts and .ts sources, the bin, the web app), README and LICENSE; no tests, CI or bench data", async () => {
    const { files } = await install();
    const paths = new Set(files.map((f) => f.path));
    const want = ["LICENSE", "README.md", "package.json", "dist/cli/flux2ts.js", "dist/web/app.js", "dist/web/index.html", "dist/web/style.css"];
    for (const e of ENTRIES) want.push(`dist/${e}/index.js`, `dist/${e}/index.d.ts`, `dist/src/${e}/index.ts`);
    for (const p of want) expect(paths.has(p) ? p : `missing ${p}`).toBe(p);
    const stray = [...paths].filter((p) => !/^(dist\/|README\.md$|LICENSE$|package\.json$)/.test(p) || /^dist\/(tests|bench\/.*\.(json|svg))/.test(p));
    expect(stray).toEqual([]);
    expect(files.find((f) => f.path === "dist/cli/flux2ts.js")!.mode & 0o111).toBe(0o111);
  }, 600_000);

  test("every relative import of the installed JS and .d.ts names a .js file that is there", async () => {
    const { project } = await install();
    const dist = join(project, "node_modules/flux2ts/dist");
    const files = readdirSync(dist, { recursive: true, encoding: "utf8" }).filter((f) => /\.(js|d\.ts)$/.test(f) && !f.startsWith("src/"));
    expect(files.length).toBeGreaterThan(50);
    const bad = files.flatMap((f) =>
      ts.preProcessFile(readFileSync(join(dist, f), "utf8"), true, true).importedFiles
        .map((i) => i.fileName)
        .filter((spec) => spec.startsWith(".") && (!spec.endsWith(".js") || !existsSync(join(dist, dirname(f), spec))))
        .map((spec) => `${f}: ${spec}`),
    );
    expect(bad).toEqual([]);
  }, 600_000);

  test("npx flux2ts info: on Node, and on Bun (bunx --bun)", async () => {
    const { project } = await install();
    const node = sh("npx", ["flux2ts", "info", "--json"], project);
    expect(node.code).toBe(0);
    expect(JSON.parse(node.stdout).runtime).toBe("node");
    const bun = sh(BUN, ["x", "--bun", "flux2ts", "info", "--json"], project);
    expect(bun.code).toBe(0);
    const info = JSON.parse(bun.stdout) as { runtime: string; adapter: string };
    expect(info.runtime).toBe("bun");
    expect(info.adapter).toBe(JSON.parse(node.stdout).adapter);
  }, 600_000);

  test("an ESM script imports flux2ts/core and flux2ts/kernels and runs matmul: Node (dist JS), Bun (.ts sources), Deno (npm:); tsc checks it and every entry's .d.ts", async () => {
    const { project } = await install();
    writeFileSync(join(project, "matmul.mjs"), MATMUL_SCRIPT);
    writeFileSync(join(project, "matmul_deno.mjs"), MATMUL_SCRIPT.replaceAll(`from "flux2ts/`, `from "npm:flux2ts/`));
    checkMatmul(sh("node", ["matmul.mjs"], project));
    checkMatmul(sh(BUN, ["matmul.mjs"], project));
    expect(sh(BUN, ["-e", `console.log(import.meta.resolve("flux2ts/core"))`], project).stdout).toMatch(/dist\/src\/core\/index\.ts\s*$/);
    checkMatmul(sh(DENO, ["run", "-A", "--unstable-webgpu", "matmul_deno.mjs"], project, { NO_COLOR: "1" }));
    // A consumer's tsc resolves every entry to the shipped .d.ts through the `types` condition and checks them too
    // (no skipLibCheck), with no @types/node in the project. batch/ is Node-side (BullMQ on Redis): its types come
    // through bullmq's, which need @types/node, so it is checked with skipLibCheck.
    const reexports = (entries: string[]) => entries.map((e) => `export * as ${e} from "flux2ts/${e}";\n`).join("");
    writeFileSync(join(project, "entries.mjs"), reexports(ENTRIES.filter((e) => e !== "batch")));
    writeFileSync(join(project, "node_entries.mjs"), reexports(ENTRIES.filter((e) => e === "batch")));
    const tscArgs = [TSC, "--noEmit", "--strict", "--allowJs", "--checkJs", "--module", "nodenext", "--target", "es2022", "--lib", "es2022,dom"];
    for (const args of [["matmul.mjs", "entries.mjs"], ["--skipLibCheck", "node_entries.mjs"]]) {
      const tsc = sh("node", [...tscArgs, ...args], project);
      expect(tsc.stdout).toBe("");
      expect(tsc.code).toBe(0);
    }
  }, 600_000);

  test("npx flux2ts generate on the tiny fixture repos: Node writes the PNG Bun writes", async () => {
    const { dir, project } = await install();
    const args = (out: string) => [
      "generate", "--prompt", "a cat", "--width", "32", "--height", "32", "--steps", "1", "--search", "random", "--budget", "2",
      "--model", join(REPOS, "black-forest-labs/FLUX.2-klein-tiny"), "--reward-model", join(REPOS, "AI-ModelScope/PickScore-tiny"),
      "--reward-processor", join(REPOS, "laion/CLIP-ViT-H-14-tiny-processor"), "--offline", "--out", out,
    ];
    const env = { MODELSCOPE_CACHE: join(dir, "cache") };
    expect(sh("npx", ["flux2ts", ...args(join(dir, "node.png"))], project, env).code).toBe(0);
    expect(sh(BUN, ["x", "--bun", "flux2ts", ...args(join(dir, "bun.png"))], project, env).code).toBe(0);
    const node = readFileSync(join(dir, "node.png")), bun = readFileSync(join(dir, "bun.png"));
    expect(node.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(node.equals(bun)).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, "node.json"), "utf8")).evals).toBe(2);
  }, 600_000);

  test("flux2ts serve on Node serves the prebuilt app from the tarball", async () => {
    const { project } = await install();
    const child = spawn("node", [join(project, "node_modules/.bin/flux2ts"), "serve", "--port", "0", "--repos", REPOS], { cwd: project });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = "", err = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d;
          const m = /flux2ts serve: (http:\S+)/.exec(out);
          if (m) resolve(m[1]);
        });
        child.stderr.on("data", (d: Buffer) => (err += d));
        child.on("close", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
      });
      const page = await fetch(url);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("<title>flux2ts");
      const app = await fetch(new URL("app.js", url));
      expect(app.status).toBe(200);
      expect(await app.text()).toBe(readFileSync(join(project, "node_modules/flux2ts/dist/web/app.js"), "utf8"));
      const model = await fetch(new URL("models/black-forest-labs/FLUX.2-klein-tiny/model_index.json", url));
      expect(model.status).toBe(200);
      expect(await model.text()).toBe(readFileSync(join(REPOS, "black-forest-labs/FLUX.2-klein-tiny/model_index.json"), "utf8"));
    } finally {
      child.kill();
    }
  }, 600_000);
});
