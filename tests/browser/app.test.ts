// The browser app end to end: `flux2ts serve --repos <fixture repos>`, the page opened with a shareable URL
// (autorun=1) running SES on the tiny klein repo with the tiny PickScore, checked against `flux2ts generate` with
// the same settings: every candidate in the gallery with its score (equal to the CLI's, candidate by candidate),
// #best's data-score equal to the best of the page's JSON log, and the best PNG within ±1 of the CLI's PNG (the
// fixtures' uint8 tolerance). The finished page's screenshot goes to tests/artifacts/browser-app.png.
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { decodePng } from "../../core/png.ts";
import { FIXTURES } from "../util.ts";
import { ARTIFACTS, hasChromium, pageSession, ROOT, settled } from "./harness.ts";

const run = test.skipIf(!hasChromium);
const REPOS = `${FIXTURES}/repos`;
const MODELS = { model: "black-forest-labs/FLUX.2-klein-tiny", "reward-model": "AI-ModelScope/PickScore-tiny", "reward-processor": "laion/CLIP-ViT-H-14-tiny-processor" };
const SETTINGS = { prompt: "sketch, a cat", width: "32", height: "32", steps: "2", seed: "3", search: "ses", budget: "4", verifier: "pickscore" };
/**
 * Scores of the same candidate in the page (SwiftShader) and the CLI (lavapipe). The images agree to float32
 * rounding, but PickScore sees them after the uint8 truncation, where a pixel on a rounding boundary flips by 1
 * (the fixtures' uint8 tolerance); on these random tiny models one flip moves the score by ~1e-4.
 */
const SCORE_TOL = 1e-3;

interface Log {
  bestScore: number;
  bestIndex: number;
  evals: number;
  seconds: number;
  candidates: { index: number; score: number; generation: number }[];
}

/** `flux2ts generate` with the same settings, on the local fixture folders. */
async function cliRun(out: string): Promise<{ log: Log; png: Uint8Array }> {
  const { execFileSync } = await import("node:child_process");
  const flags = Object.entries(SETTINGS).flatMap(([k, v]) => [`--${k}`, v]);
  const models = Object.entries(MODELS).flatMap(([k, v]) => [`--${k}`, join(REPOS, v)]);
  execFileSync(process.execPath, [join(ROOT, "cli", "flux2ts.ts"), "generate", ...flags, ...models, "--offline", "--out", out], { stdio: ["ignore", "pipe", "pipe"] });
  return { log: JSON.parse(readFileSync(out.replace(/\.png$/, ".json"), "utf8")), png: readFileSync(out) };
}

describe("browser app", () => {
  const session = pageSession(["--repos", REPOS]);
  beforeAll(() => void mkdirSync(ARTIFACTS, { recursive: true }));

  run("SES from a shared link: gallery, #best, downloads and the CLI's result (skipped without /usr/bin/chromium)", async () => {
    const cli = await cliRun(join(ARTIFACTS, "browser-cli.png"));
    const { page } = session.browser();
    const query = new URLSearchParams({ ...SETTINGS, ...MODELS, autorun: "1" });
    await page.goto(`${session.server().url}?${query}`);
    const state = await settled(page, 200_000);
    await page.screenshot({ path: join(ARTIFACTS, "browser-app.png"), fullPage: true });
    if (state !== "done") throw new Error(`page ended "${state}": ${await page.locator("#error").textContent()}\n${session.browser().console.join("\n")}`);

    const [pngDl, jsonDl] = [await Promise.all([page.waitForEvent("download"), page.click("#download-png")]), await Promise.all([page.waitForEvent("download"), page.click("#download-json")])];
    const png = readFileSync((await pngDl[0].path())!);
    const log: Log & { models: { model: string } } = JSON.parse(readFileSync((await jsonDl[0].path())!, "utf8"));

    // Every candidate is in the gallery with its score; the page scored what the CLI scored.
    const cards = await page.locator("#gallery .card").evaluateAll((els) =>
      els.map((e) => {
        const d = (e as HTMLElement).dataset;
        return { index: Number(d.index), score: Number(d.score), seconds: Number(d.seconds), text: e.textContent ?? "" };
      }),
    );
    expect(log.evals).toBe(Number(SETTINGS.budget));
    expect(cards.length).toBe(log.evals);
    expect(log.models.model).toBe(MODELS.model);
    let scoreDiff = 0;
    for (const c of cards) {
      const mine = log.candidates.find((x) => x.index === c.index)!;
      const theirs = cli.log.candidates.find((x) => x.index === c.index)!;
      expect(c.score).toBe(mine.score);
      expect(c.text).toContain(c.score.toFixed(5));
      scoreDiff = Math.max(scoreDiff, Math.abs(c.score - theirs.score));
    }
    // #best holds the log's best; the best candidate is highlighted.
    expect(Number(await page.locator("#best").getAttribute("data-score"))).toBe(log.bestScore);
    expect(log.bestScore).toBe(Math.max(...log.candidates.map((c) => c.score)));
    expect(await page.locator("#gallery .card.best").getAttribute("data-index")).toBe(String(log.bestIndex));

    // The best image: the page's PNG against the CLI's, uint8 ±1.
    const a = decodePng(new Uint8Array(png)), b = decodePng(new Uint8Array(cli.png));
    expect([a.width, a.height, a.channels]).toEqual([b.width, b.height, b.channels]);
    let maxDiff = 0, flips = 0;
    for (let i = 0; i < a.data.length; i++) {
      const d = Math.abs(a.data[i] - b.data[i]);
      maxDiff = Math.max(maxDiff, d);
      if (d) flips++;
    }
    const perPage = log.seconds / log.evals, perCli = cli.log.seconds / cli.log.evals;
    const steady = (cards[cards.length - 1].seconds - cards[0].seconds) / (cards.length - 1);
    console.log(
      `browser app: ${log.evals} candidates, best #${log.bestIndex} ${log.bestScore.toFixed(6)} (CLI #${cli.log.bestIndex} ${cli.log.bestScore.toFixed(6)}), ` +
        `max score diff ${scoreDiff.toExponential(2)}, best PNG max diff ${maxDiff} (${flips} of ${a.data.length} values); ` +
        `${perPage.toFixed(2)} s per candidate in the page (${steady.toFixed(2)} s after the first) vs ${perCli.toFixed(2)} s in the CLI (first-call pipeline compiles included)`,
    );
    expect(scoreDiff).toBeLessThanOrEqual(SCORE_TOL);
    expect(log.bestIndex).toBe(cli.log.bestIndex);
    expect(maxDiff).toBeLessThanOrEqual(1);
  }, 300_000);
});
