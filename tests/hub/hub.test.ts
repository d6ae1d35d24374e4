// Hub client against a real HTTP server on 127.0.0.1 (tests/hub/server.ts) serving the tiny fixture repos through
// the ModelScope and Hugging Face API shapes, with injected faults. Each test uses a fresh temp cache folder.
// No GPU: the downloaded folders are compared byte for byte with the fixture folders the loaders are tested on.
import { describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm, mkdir, copyFile, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import {
  autoSelect, cacheContents, fnmatch, normalizePattern, registryEntry, repoCacheDir, resolveModel, selectPaths, type HubOptions,
} from "../../hub/index.ts";
import { env, joinPath } from "../../core/platform.ts";
import { tempPath } from "../../hub/cache.ts";
import { downloadProgress } from "../../cli/download.ts";
import { FIXTURES } from "../util.ts";
import { FIXTURE_REPOS, startHubServer, type HubFaults, type HubServer } from "./server.ts";

const ROOT = joinPath(FIXTURES, "repos");
const KLEIN = "black-forest-labs/FLUX.2-klein-tiny";
const PICK = "AI-ModelScope/PickScore-tiny";
const PROC = "laion/CLIP-ViT-H-14-tiny-processor";
const TRANSFORMER = "transformer/diffusion_pytorch_model.safetensors";

async function files(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(prefix ? `${dir}/${prefix}` : dir, { withFileTypes: true }).catch(() => [])) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await files(dir, rel)));
    else if (!e.name.startsWith(".flux2ts-")) out.push(rel);
  }
  return out.sort();
}

async function expectSameFiles(got: string, want: string, only?: string[]) {
  const names = only ?? (await files(want));
  expect(await files(got)).toEqual(names);
  for (const n of names) {
    const [a, b] = await Promise.all([readFile(`${got}/${n}`), readFile(`${want}/${n}`)]);
    expect(Buffer.compare(a, b)).toBe(0);
  }
}

const exists = (p: string) => stat(p).then(() => true, () => false);

/** A server with faults and a fresh cache; `fn` gets options pointing at both. Everything is removed after. */
async function withHub(faults: HubFaults | undefined, fn: (s: HubServer, opts: HubOptions, cache: string) => Promise<void>, extra: HubOptions = {}) {
  const cache = await mkdtemp(`${tmpdir()}/flux2ts-hub-`);
  const s = await startHubServer({ root: ROOT, faults, repos: FIXTURE_REPOS });
  try {
    await fn(s, { endpoint: s.url, cacheDir: cache, retryDelayMs: 5, ...extra }, cache);
  } finally {
    await s.close();
    await rm(cache, { recursive: true, force: true });
  }
}

const contentRequests = (s: HubServer) => s.requests.filter((r) => r.kind === "content" || r.kind === "file");

function setEnv(name: string, value: string | undefined) {
  const deno = (globalThis as { Deno?: { env: { set(k: string, v: string): void; delete(k: string): void } } }).Deno;
  if (deno) value === undefined ? deno.env.delete(name) : deno.env.set(name, value);
  else if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

describe("hub: selection, registry and cache layout", () => {
  test("fnmatch and DiffSynth's origin_file_pattern normalisation", () => {
    expect(normalizePattern(undefined)).toBe("*");
    expect(normalizePattern("")).toBe("*");
    expect(normalizePattern("./")).toBe("*");
    expect(normalizePattern("tokenizer/")).toBe("tokenizer/*");
    expect(fnmatch("text_encoder/a/b.safetensors", "text_encoder/*.safetensors")).toBe(true); // * crosses "/"
    expect(fnmatch("text_encoder/config.json", "text_encoder/*.safetensors")).toBe(false);
    expect(fnmatch("model-00001.safetensors", "model-0000?.safetensors")).toBe(true);
    expect(fnmatch("model-0000a.safetensors", "model-0000[0-9].safetensors")).toBe(false);
    expect(fnmatch("model-0000a.safetensors", "model-0000[!0-9].safetensors")).toBe(true);
    expect(fnmatch("a[b", "a[b")).toBe(true); // unclosed set is a literal
    expect(fnmatch("Config.json", "config.json")).toBe(false); // case-sensitive
    expect(fnmatch("a.b(c)+d", "a.b(c)+d")).toBe(true);
    const paths = ["model_index.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "vae/config.json"];
    expect(selectPaths(paths, ["tokenizer/"])).toEqual(["tokenizer/vocab.json", "tokenizer/merges.txt"]);
    expect(selectPaths(paths, [], ["*.txt"])).toEqual(["model_index.json", "tokenizer/vocab.json", "vae/config.json"]);
  });

  test("registry patterns and the automatic choice for other repos", () => {
    const real = [
      "model_index.json", "flux-2-klein-4b.safetensors", "README.md", "teaser.png", "scheduler/scheduler_config.json",
      "text_encoder/config.json", "text_encoder/model-00001-of-00002.safetensors", "text_encoder/model.safetensors.index.json",
      "tokenizer/tokenizer.json", "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
      "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin",
    ];
    const klein = registryEntry("klein-4b")!;
    const picked = selectPaths(real, klein.allow);
    expect(picked.includes("flux-2-klein-4b.safetensors")).toBe(false);
    expect(picked.includes("vae/diffusion_pytorch_model.bin")).toBe(false);
    expect(picked.length).toBe(10);
    // Other repos: the same here, plus top-level text; never the top-level checkpoint, images or .bin weights.
    expect(autoSelect(real)).toEqual(real.filter((p) => picked.includes(p) || p === "README.md"));
    const pick = registryEntry("pickscore")!;
    expect(selectPaths(["config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"], pick.allow)).toEqual(["config.json", "model.safetensors"]);
    expect(autoSelect(["config.json", "model.safetensors", "pytorch_model.bin"])).toEqual(["config.json", "model.safetensors"]);
    expect(registryEntry("clip-h14-processor")!.repos.modelscope).toBe("laion/CLIP-ViT-H-14-laion2B-s32B-b79K");
  });

  test("cache folder: dots become ___, MODELSCOPE_CACHE is honoured", () => {
    expect(repoCacheDir("black-forest-labs/FLUX.2-klein-4B", { cacheDir: "/c" })).toBe("/c/models/black-forest-labs/FLUX___2-klein-4B");
    const old = env("MODELSCOPE_CACHE");
    setEnv("MODELSCOPE_CACHE", "/from-env");
    try {
      expect(repoCacheDir("a/b.c")).toBe("/from-env/models/a/b___c");
    } finally {
      setEnv("MODELSCOPE_CACHE", old);
    }
    expect(() => repoCacheDir("../etc")).toThrow(/owner\/name/);
  });
});

describe("hub: downloads from a loopback ModelScope server", () => {
  test("first download of FLUX.2-klein-tiny is byte-identical to the fixture; redirects followed; progress per file", async () => {
    await withHub(undefined, async (s, opts, cache) => {
      const done = new Set<string>();
      let partial = 0;
      const dir = await resolveModel(KLEIN, { ...opts, onProgress: (p) => (p.done ? done.add(p.path) : partial++) });
      expect(dir).toBe(repoCacheDir(KLEIN, opts));
      await expectSameFiles(dir, `${ROOT}/${KLEIN}`);
      expect(done.size).toBe((await files(`${ROOT}/${KLEIN}`)).length);
      expect(partial).toBeGreaterThan(done.size);
      expect(s.requests.filter((r) => r.kind === "listing").length).toBe(1);
      expect(s.requests.filter((r) => r.kind === "file").length).toBe(done.size); // each answered with a 302 …
      expect(s.requests.filter((r) => r.kind === "content").length).toBe(done.size); // … that was followed
      expect(s.requests.some((r) => r.file === ".gitattributes")).toBe(false);
      expect(await files(`${cache}/._____temp`)).toEqual([]);
    });
  }, 30_000);

  test("cache hit: no request at all, online or offline", async () => {
    await withHub(undefined, async (s, opts) => {
      const dir = await resolveModel(PICK, opts);
      const n = s.requests.length;
      expect(await resolveModel(PICK, opts)).toBe(dir);
      expect(await resolveModel(PICK, { ...opts, offline: true })).toBe(dir);
      expect(s.requests.length).toBe(n);
    });
  });

  test("offline and not cached: a clear error naming the repo and how to download, no request", async () => {
    await withHub(undefined, async (s, opts) => {
      await expect(resolveModel(PICK, { ...opts, offline: true })).rejects.toThrow(/PickScore-tiny is not in the cache .*flux2ts download AI-ModelScope\/PickScore-tiny/);
      expect(s.requests.length).toBe(0);
    });
  });

  test("a cache written by the modelscope library (no manifest) is reused: offline without requests, online without content requests", async () => {
    await withHub(undefined, async (s, opts) => {
      const dir = repoCacheDir(PROC, opts);
      await mkdir(dir, { recursive: true });
      for (const f of await files(`${ROOT}/${PROC}`)) await copyFile(`${ROOT}/${PROC}/${f}`, `${dir}/${f}`);
      expect(await resolveModel(PROC, { ...opts, offline: true })).toBe(dir);
      expect(s.requests.length).toBe(0);
      expect(await resolveModel(PROC, opts)).toBe(dir); // lists once and hashes the local files
      expect(s.requests.map((r) => r.kind)).toEqual(["listing"]);
      expect(await resolveModel(PROC, opts)).toBe(dir); // now the manifest answers
      expect(s.requests.length).toBe(1);
    });
  });

  test("resume after a connection dropped mid-file: the retry sends Range and the file ends correct", async () => {
    await withHub({ drop: [{ path: TRANSFORMER, afterBytes: 600_000 }] }, async (s, opts) => {
      const dir = await resolveModel(KLEIN, opts);
      await expectSameFiles(dir, `${ROOT}/${KLEIN}`);
      const tries = s.requests.filter((r) => r.kind === "content" && r.file === TRANSFORMER);
      expect(tries.length).toBe(2);
      expect(tries[0].range).toBe(undefined);
      expect(tries[1].range).toMatch(/^bytes=[1-9]\d*-1849343$/); // from what had arrived to the end
    });
  }, 30_000);

  test("500s then success, for a file and for the listing", async () => {
    await withHub({ error500: [{ path: "config.json", times: 2 }, { path: "<listing>", times: 1 }] }, async (s, opts) => {
      const dir = await resolveModel(PICK, opts);
      await expectSameFiles(dir, `${ROOT}/${PICK}`);
      expect(s.requests.filter((r) => r.kind === "listing").length).toBe(2);
      expect(s.requests.filter((r) => r.kind === "content" && r.file === "config.json").length).toBe(3);
    });
  });

  test("two downloads of one repo at once (two processes, one cache): every file is fetched once, both get it whole", async () => {
    await withHub(undefined, async (s, opts, cache) => {
      const [a, b] = await Promise.all([resolveModel(PICK, opts), resolveModel(PICK, opts)]);
      expect(a).toBe(b);
      await expectSameFiles(a, `${ROOT}/${PICK}`);
      expect(s.requests.filter((r) => r.kind === "listing").length).toBe(2);
      expect(s.requests.filter((r) => r.kind === "content").length).toBe((await files(`${ROOT}/${PICK}`)).length);
      expect(await readdir(`${cache}/._____temp`, { recursive: true }).then((l) => l.filter((n) => String(n).endsWith(".lock")))).toEqual([]);
    });
  }, 30_000);

  test("a lock left by a process that died is taken over and its temp file resumed", async () => {
    await withHub(undefined, async (s, opts, cache) => {
      const temp = tempPath(cache, PICK, "model.safetensors");
      await mkdir(temp.slice(0, temp.lastIndexOf("/")), { recursive: true });
      await writeFile(temp, (await readFile(`${ROOT}/${PICK}/model.safetensors`)).subarray(0, 1000));
      await writeFile(`${temp}.lock`, "");
      const old = new Date(Date.now() - 60_000);
      await utimes(`${temp}.lock`, old, old);
      await expectSameFiles(await resolveModel(PICK, opts), `${ROOT}/${PICK}`);
      expect(s.requests.filter((r) => r.file === "model.safetensors" && r.kind === "content").map((r) => r.range)).toEqual([`bytes=1000-${(await stat(`${ROOT}/${PICK}/model.safetensors`)).size - 1}`]);
      expect(await exists(`${temp}.lock`)).toBe(false);
    });
  }, 30_000);

  test("a wrong sha256 in the listing: the file is rejected and nothing corrupt is left", async () => {
    await withHub({ wrongSha: ["model.safetensors"] }, async (s, opts, cache) => {
      await expect(resolveModel(PICK, { ...opts, retries: 2 })).rejects.toThrow(/AI-ModelScope\/PickScore-tiny: model\.safetensors: sha256 mismatch: expected f{64}, got [0-9a-f]{64} \(gave up after 3 attempts\)/);
      expect(s.requests.filter((r) => r.kind === "content" && r.file === "model.safetensors").length).toBe(3);
      expect(await exists(`${repoCacheDir(PICK, opts)}/model.safetensors`)).toBe(false);
      expect(await files(`${cache}/._____temp`)).toEqual([]);
      // Offline, the half-done repo is not handed out.
      await expect(resolveModel(PICK, { ...opts, offline: true })).rejects.toThrow(/not completely in the cache/);
    });
  });

  test("a truncated response: a clear error, nothing at the final path", async () => {
    await withHub({ truncate: [{ path: "model.safetensors", bytes: 1000 }] }, async (s, opts) => {
      await expect(resolveModel(PICK, { ...opts, retries: 1 })).rejects.toThrow(/PickScore-tiny: model\.safetensors: .*\b1000 of \d+ bytes/);
      expect(await exists(`${repoCacheDir(PICK, opts)}/model.safetensors`)).toBe(false);
    });
  });

  test("a truncated response once: the next attempt resumes and the file ends correct", async () => {
    await withHub({ truncate: [{ path: "model.safetensors", bytes: 100_000, times: 1 }] }, async (s, opts) => {
      await expectSameFiles(await resolveModel(PICK, opts), `${ROOT}/${PICK}`);
      expect(s.requests.filter((r) => r.file === "model.safetensors" && r.kind === "content").map((r) => r.range)).toEqual([undefined, "bytes=100000-" + ((await stat(`${ROOT}/${PICK}/model.safetensors`)).size - 1)]);
    });
  });

  test("a missing file: a clear error naming the repo and the path, no retries", async () => {
    await withHub({ missing: ["merges.txt"] }, async (s, opts) => {
      await expect(resolveModel(PROC, opts)).rejects.toThrow(/laion\/CLIP-ViT-H-14-tiny-processor: merges\.txt: HTTP 404/);
      expect(s.requests.filter((r) => r.file === "merges.txt" && r.kind === "content").length).toBe(1);
      expect(await exists(`${repoCacheDir(PROC, opts)}/merges.txt`)).toBe(false);
    });
  });

  test("an unknown repo: a clear error naming it", async () => {
    await withHub(undefined, async (_s, opts) => {
      await expect(resolveModel("nobody/nothing", opts)).rejects.toThrow(/nobody\/nothing: listing files: HTTP 404/);
    });
  });

  test("a listing path that escapes the cache folder is refused before anything is written", async () => {
    await withHub({ extraPaths: ["../../../escape.txt"] }, async (s, opts, cache) => {
      await expect(resolveModel(PROC, opts)).rejects.toThrow(/laion\/CLIP-ViT-H-14-tiny-processor: the listing has a path that escapes the cache folder, refused: "\.\.\/\.\.\/\.\.\/escape\.txt"/);
      expect(contentRequests(s).length).toBe(0);
      expect(await files(cache)).toEqual([]);
    });
    await withHub({ extraPaths: ["/etc/escape.txt"] }, async (_s, opts) => {
      await expect(resolveModel(PROC, opts)).rejects.toThrow(/escapes the cache folder/);
    });
  });
});

describe("hub: names, Hugging Face source, cache listing", () => {
  test("Hugging Face source: paginated tree listing, LFS sha256 and git blob sha1 checked, byte-identical", async () => {
    await withHub(undefined, async (s, opts) => {
      const dir = await resolveModel("pickscore", { ...opts, source: "huggingface" });
      expect(dir).toBe(repoCacheDir("yuvalkirstain/PickScore_v1", opts));
      await expectSameFiles(dir, `${ROOT}/${PICK}`);
      const klein = await resolveModel(KLEIN, { ...opts, source: "huggingface" });
      await expectSameFiles(klein, `${ROOT}/${KLEIN}`);
      // 24 entries (5 folders, .gitattributes, 18 files) at 8 a page: 3 pages, the next ones found in Link headers.
      expect(s.requests.filter((r) => r.kind === "listing").map((r) => /cursor=(\d+)/.exec(r.path)?.[1])).toEqual([undefined, undefined, "8", "16"]);
      expect(s.requests.some((r) => /\/resolve\/main\//.test(r.path))).toBe(true);
    });
    await withHub({ wrongSha: ["vocab.json"] }, async (_s, opts) => {
      await expect(resolveModel(PROC, { ...opts, source: "huggingface", retries: 0 })).rejects.toThrow(/vocab\.json: git sha1 mismatch/);
    });
  });

  test("registry names resolve to the repos and download only the files the loaders read", async () => {
    await withHub(undefined, async (_s, opts) => {
      const pick = await resolveModel("pickscore", opts);
      expect(pick).toBe(repoCacheDir("AI-ModelScope/PickScore_v1", opts));
      await expectSameFiles(pick, `${ROOT}/${PICK}`);
      await expectSameFiles(await resolveModel("clip-h14-processor", opts), `${ROOT}/${PROC}`);
      const klein = await resolveModel("klein-4b", opts);
      expect(klein).toBe(repoCacheDir("black-forest-labs/FLUX.2-klein-4B", opts));
      expect(klein.endsWith("/FLUX___2-klein-4B")).toBe(true);
      await expectSameFiles(klein, `${ROOT}/${KLEIN}`);
    });
  }, 30_000);

  test("a local folder is used as is; a bad name is a clear error", async () => {
    expect(await resolveModel(`${ROOT}/${PICK}`, { offline: true })).toBe(`${ROOT}/${PICK}`);
    await expect(resolveModel("no-such-model", { offline: true })).rejects.toThrow(/"no-such-model" is not a local folder, a known model \(klein-4b, pickscore, clip-h14-processor\) or a repo id owner\/name/);
  });

  test("cacheContents lists cached repos with their sizes", async () => {
    await withHub(undefined, async (_s, opts) => {
      await resolveModel(PROC, opts);
      await resolveModel("pickscore", opts);
      const sizeOf = async (dir: string) => (await Promise.all((await files(dir)).map(async (f) => (await stat(`${dir}/${f}`)).size))).reduce((a, b) => a + b, 0);
      const got = await cacheContents(opts);
      expect(got.map((c) => c.repo)).toEqual(["AI-ModelScope/PickScore_v1", PROC]);
      expect(got[0].bytes).toBe(await sizeOf(`${ROOT}/${PICK}`));
      expect(got[1].files).toBe(6);
    });
  });
});

describe("hub: checks weaker than a checksum are said", () => {
  /** Stderr of `flux2ts download`'s renderer (not a terminal), collected. */
  const stderrOf = () => {
    const out = { text: "", tty: false, write: (s: string) => void (out.text += s) };
    return out;
  };

  test("a listing without checksums: size-only verification in onWarning and in download's output; full checksums: no warning", async () => {
    for (const source of ["modelscope", "huggingface"] as const) {
      await withHub({ noChecksum: [TRANSFORMER, "model_index.json"] }, async (_s, opts) => {
        const warnings: string[] = [];
        const dir = await resolveModel(KLEIN, { ...opts, source, onWarning: (m) => warnings.push(m) });
        await expectSameFiles(dir, `${ROOT}/${KLEIN}`); // still downloaded whole, checked by size
        expect(warnings.length).toBe(1);
        expect(warnings[0]).toMatch(new RegExp(`^${KLEIN}: the listing from http://127\\.0\\.0\\.1:\\d+ gives no checksum for 2 files \\(model_index\\.json, ${TRANSFORMER.replace(/\./g, "\\.")}\\): size-only verification$`));
        const err = stderrOf();
        const progress = downloadProgress(err);
        await resolveModel(PICK, { ...opts, source, onProgress: progress.onProgress, onWarning: progress.onWarning });
        progress.finish();
        expect(err.text).not.toMatch(/warning/); // PickScore's entries all have checksums
        await rm(dir, { recursive: true, force: true });
        await resolveModel(KLEIN, { ...opts, source, onProgress: progress.onProgress, onWarning: progress.onWarning });
        progress.finish();
        expect(err.text).toMatch(/^warning: black-forest-labs\/FLUX\.2-klein-tiny: .* gives no checksum for 2 files .*: size-only verification$/m);
      });
    }
  }, 60_000);

  test("offline on a cache without our manifest: the files are used unverified, and that is said", async () => {
    await withHub(undefined, async (s, opts) => {
      const dir = repoCacheDir(PROC, opts);
      await mkdir(dir, { recursive: true });
      for (const f of await files(`${ROOT}/${PROC}`)) await copyFile(`${ROOT}/${PROC}/${f}`, `${dir}/${f}`);
      const err = stderrOf();
      const progress = downloadProgress(err);
      expect(await resolveModel(PROC, { ...opts, offline: true, onWarning: progress.onWarning })).toBe(dir);
      progress.finish();
      expect(err.text).toBe(`warning: ${PROC}: using ${dir} unverified: the cache has no flux2ts manifest (listing) to check sizes or checksums against; run "flux2ts download ${PROC}" online once to verify it\n`);
      expect(s.requests.length).toBe(0);
      const warnings: string[] = [];
      await resolveModel(PROC, { ...opts, onWarning: (m) => warnings.push(m) }); // online: listed and hashed, now verified
      expect(await resolveModel(PROC, { ...opts, offline: true, onWarning: (m) => warnings.push(m) })).toBe(dir);
      expect(warnings).toEqual([]);
    });
  });
});
