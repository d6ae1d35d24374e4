// Browser test harness: `flux2ts serve` in a child process (the same command users run) and Debian's chromium
// driven by playwright-core, headless with WebGPU on SwiftShader (Vulkan) and a fresh profile per launch (so the
// OPFS cache starts empty). No browser is ever downloaded: without /usr/bin/chromium the suites skip, saying so.
import { afterAll, beforeAll } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { fileUrlToPath } from "../../core/platform.ts";

export const CHROMIUM = "/usr/bin/chromium";
export const hasChromium = existsSync(CHROMIUM);
export const ROOT = fileUrlToPath(new URL("../../", import.meta.url));
export const ARTIFACTS = join(ROOT, "tests", "artifacts");

if (!hasChromium) console.warn(`tests/browser: SKIPPED, ${CHROMIUM} is missing (Debian: apt-get install -y chromium)`);

export interface Served {
  url: string;
  stop(): void;
}

/** Starts `flux2ts serve --port 0 <args>` with the current runtime and waits for the URL it prints. */
export async function serve(args: string[]): Promise<Served> {
  const { spawn } = await import("node:child_process");
  const child = spawn(process.execPath, [join(ROOT, "cli", "flux2ts.ts"), "serve", "--port", "0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) resolve(m[1]);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`flux2ts serve exited with ${code}:\n${out}`)));
  });
  return { url, stop: () => void child.kill() };
}

export interface Browser {
  page: Page;
  context: BrowserContext;
  /** Distinct browser console lines and page errors, for failure messages. */
  console: string[];
  close(): Promise<void>;
}

export async function launch(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), "flux2ts-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: false, // the flags below ask for the new headless mode, the one with WebGPU
    args: [
      "--headless=new",
      "--no-sandbox",
      "--enable-unsafe-webgpu",
      "--enable-features=Vulkan",
      "--use-vulkan=native",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-gpu-watchdog", // SwiftShader runs a batch of dispatches for longer than the watchdog allows
    ],
    acceptDownloads: true,
    viewport: { width: 1200, height: 1000 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  // Each distinct line once: a lost device repeats the same error for every pending call.
  const lines: string[] = [];
  const add = (line: string) => void (lines.includes(line) || lines.push(line));
  page.on("console", (m) => add(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => add(`pageerror: ${e.message}`));
  return {
    page,
    context,
    console: lines,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Waits until body[data-state] is "done" or "error"; returns it. */
export async function settled(page: Page, timeoutMs: number): Promise<string> {
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state ?? ""), null, { timeout: timeoutMs, polling: 250 });
  return (await page.evaluate(() => document.body.dataset.state)) ?? "";
}

/**
 * One server and one browser for a describe block: `flux2ts serve <args>` and chromium start before its tests and
 * stop after them (nothing starts without chromium; the tests skip then). The getters are valid inside the tests.
 */
export function pageSession(serveArgs: string[]): { server(): Served; browser(): Browser } {
  let server: Served | undefined;
  let browser: Browser | undefined;
  beforeAll(async () => {
    if (!hasChromium) return;
    server = await serve(serveArgs);
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
    server?.stop();
  });
  return { server: () => server!, browser: () => browser! };
}
