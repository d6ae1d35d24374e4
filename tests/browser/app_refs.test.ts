// The browser app's reference images (editing): a shared link whose run used references says they must be added
// again and does not autorun; files picked in the page become thumbnails and set the output size to the first one's
// cropped size; a run with them completes and its JSON log records each one's name, size and SHA-256 (as `generate --ref` does). The
// reference PNGs are Pillow's (tests/cli/data/make_references.py).
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES } from "../util.ts";
import { hasChromium, pageSession, ROOT, settled } from "./harness.ts";

const run = test.skipIf(!hasChromium);
const REPOS = `${FIXTURES}/repos`;
const MODELS = { model: "black-forest-labs/FLUX.2-klein-tiny", "reward-model": "AI-ModelScope/PickScore-tiny", "reward-processor": "laion/CLIP-ViT-H-14-tiny-processor" };
const SETTINGS = { prompt: "sketch, a cat", steps: "1", seed: "3", search: "random", budget: "2", verifier: "pickscore", batch: "2" };
const REFS = ["ref_a.png", "ref_b.png"].map((f) => join(ROOT, "tests", "cli", "data", f));

describe("browser app with reference images", () => {
  const session = pageSession(["--repos", REPOS]);

  run("a link with refs=2 asks for them; picked files run and are logged (skipped without /usr/bin/chromium)", async () => {
    const { page } = session.browser();
    await page.goto(`${session.server().url}?${new URLSearchParams({ ...SETTINGS, ...MODELS, refs: "2", autorun: "1" })}`);
    await page.waitForTimeout(500);
    expect(await page.evaluate(() => document.body.dataset.state)).toBe("idle");
    expect(await page.locator("#ref-note").textContent()).toContain("used 2 reference image(s): add them again");

    await page.setInputFiles("#ref-files", REFS);
    await page.waitForFunction(() => document.querySelectorAll("#ref-thumbs canvas").length === 2);
    expect([await page.inputValue("input[name=width]"), await page.inputValue("input[name=height]")]).toEqual(["80", "64"]);
    // A smaller output keeps the run short on SwiftShader (the references are still encoded at their own sizes).
    await page.fill("input[name=width]", "32");
    await page.fill("input[name=height]", "32");
    await page.click("#generate");
    const state = await settled(page, 520_000).catch(async (e) => {
      throw new Error(`${(e as Error).message}; page status: ${await page.locator("#status").textContent()} ${await page.locator("#eta").textContent()}\n${session.browser().console.join("\n")}`);
    });
    if (state !== "done") throw new Error(`page ended "${state}": ${await page.locator("#error").textContent()}\n${session.browser().console.join("\n")}`);
    expect(new URL(page.url()).searchParams.get("refs")).toBe("2");

    const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#download-json")]);
    const log = JSON.parse(readFileSync((await dl.path())!, "utf8"));
    expect(log.evals).toBe(2);
    expect([log.settings.width, log.settings.height]).toEqual([32, 32]);
    const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");
    expect(log.settings.references.map((r: { file: string; width: number; sha256: string }) => [r.file, r.width, r.sha256])).toEqual([
      ["ref_a.png", 89, sha(REFS[0])],
      ["ref_b.png", 70, sha(REFS[1])],
    ]);
  }, 580_000);
});
