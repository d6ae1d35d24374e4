// The browser path of core/ against the CLI's references: tests/browser/selftest_page.ts runs a kernel test file (elementwise), a
// reference case (flux2_transformer, as `flux2ts verify` runs it) and the OPFS block cache inside chromium.
import { describe, expect, test } from "bun:test";
import { FIXTURES } from "../util.ts";
import { hasChromium, pageSession, settled } from "./harness.ts";

const run = test.skipIf(!hasChromium);

describe("in-page self test", () => {
  const session = pageSession(["--fixtures", FIXTURES, "--repos", `${FIXTURES}/repos`]);

  run("elementwise tests, flux2_transformer case and OPFS cache pass in the page (skipped without /usr/bin/chromium)", async () => {
    const { page } = session.browser();
    const t0 = performance.now();
    await page.goto(`${session.server().url}selftest.html?case=flux2_transformer`);
    const state = await settled(page, 150_000);
    const log = await page.locator("#log").textContent();
    if (state !== "done") throw new Error(`self test ended "${state}":\n${log}\n${session.browser().console.join("\n")}`);
    const r = JSON.parse((await page.locator("#result").textContent()) ?? "{}");
    console.log(`selftest on ${r.adapter}: ${r.tests.length} kernel tests, case ${r.case.name} ${r.case.rows.length} tensors, ${r.opfs.detail}; ${r.seconds.toFixed(1)} s in page, ${((performance.now() - t0) / 1000).toFixed(1)} s total`);
    const failed = r.tests.filter((t: { ok: boolean }) => !t.ok).map((t: { name: string; error: string }) => `${t.name}: ${t.error}`);
    expect(failed.join("\n")).toBe("");
    expect(r.tests.length).toBeGreaterThan(0);
    expect(r.case.code).toBe(0);
    expect(r.case.rows.length).toBeGreaterThan(0);
    expect(r.opfs.ok).toBe(true);
  }, 180_000);
});
