// core/platform.ts's pure helpers: file: URLs to paths (spaces, Windows drives, UNC hosts) and the one environment
// reader, and the fixtures lookup of tests/util.ts that relies on them.
import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { env, fileUrlToPath } from "../../core/platform.ts";
import { FIXTURES, fixturesFolder } from "../util.ts";

describe("platform", () => {
  test("fileUrlToPath decodes percent escapes and keeps Windows drives and UNC hosts", () => {
    expect(fileUrlToPath("file:///home/my%20user/shared/fixtures")).toBe("/home/my user/shared/fixtures");
    expect(fileUrlToPath(new URL("file:///home/my user/a#b/ü.txt".replace("#", "%23")))).toBe("/home/my user/a#b/ü.txt");
    expect(fileUrlToPath("file:///C:/Users/a%20b/x.ts")).toBe("C:/Users/a b/x.ts");
    expect(fileUrlToPath("file:///c:/")).toBe("c:/");
    expect(fileUrlToPath("file://server/share/x%20y")).toBe("//server/share/x y");
    expect(fileUrlToPath("file://localhost/etc/hosts")).toBe("/etc/hosts");
    expect(() => fileUrlToPath("file:///a%2Fb")).toThrow(/encoded/);
    expect(() => fileUrlToPath("https://example.com/a")).toThrow(/not a file: URL/);
  });

  test("the fixtures fallback: a checkout path with a space, a file:///C:/... checkout, a page", () => {
    expect(fixturesFolder(undefined, "file:///home/my%20user/flux2ts/tests/util.ts")).toBe("/home/my user/shared/fixtures");
    expect(fixturesFolder(undefined, new URL("file:///srv/my checkout/flux2ts/tests/util.ts"))).toBe("/srv/my checkout/shared/fixtures");
    expect(fixturesFolder(undefined, "file:///C:/Users/a%20b/flux2ts/tests/util.ts")).toBe("C:/Users/a b/shared/fixtures");
    expect(fixturesFolder("/elsewhere/fixtures", "file:///C:/x/tests/util.ts")).toBe("/elsewhere/fixtures");
    expect(fixturesFolder(undefined, "http://127.0.0.1:8787/selftest.js")).toBe("http://127.0.0.1:8787/shared/fixtures"); // in a page
    expect(FIXTURES).toBe(env("FLUX2TS_FIXTURES") || fileUrlToPath(new URL("../../../shared/fixtures", import.meta.url)));
  });

  test("a real file in a folder with a space, through its file: URL", async () => {
    const dir = await mkdtemp(join(tmpdir(), "flux2ts platform "));
    try {
      const file = join(dir, "a b%20c.txt");
      await writeFile(file, "ok");
      const url = pathToFileURL(file);
      expect(url.href).toContain("%20");
      expect(fileUrlToPath(url)).toBe(file);
      expect(await readFile(fileUrlToPath(url), "utf8")).toBe("ok");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("env reads the process environment; unset is undefined", () => {
    expect(env("PATH")).toBeDefined();
    expect(env("FLUX2TS_SURELY_UNSET_VARIABLE")).toBe(undefined);
  });
});
