// In-page self test: checks the browser path of core/ (navigator.gpu, fetch + Range file sources, the OPFS block
// cache) against the same references as the CLI. Test code, so it lives in tests/ (web/ holds only the app);
// `flux2ts serve` bundles it for /selftest.html?case=<name> (tests/browser/selftest.html), which runs, in order:
// 1. the kernel test file imported below (elementwise: SwiftShader runs the matmul file for minutes), through
//    page_shim.ts (bun:test's describe/test/expect);
// 2. the reference case /fixtures/<name> (default flux2_transformer) through core/verify.ts, as `flux2ts verify` does;
// 3. the OPFS cache: a fixture file read through it must equal the plain URL reads, and a second source over the
//    same file must fetch nothing.
// The outcome is written as JSON into #result and body.dataset.state becomes "done" (or "error" on a crash).
import "../kernels/elementwise.test.ts";
import "../../cli/cases.ts";
import { Device, formatTable, verifyCase } from "../../core/index.ts";
import { clearOpfsCache, disableOpfsCache, enableOpfsCache, openFile, opfsStats } from "../../core/platform.ts";
import { runRegistered, type TestOutcome } from "./page_shim.ts";

const log = document.getElementById("log")!;
const say = (line: string) => void log.append(line + "\n");

async function opfsCheck(file: string): Promise<{ ok: boolean; detail: string }> {
  const plain = openFile(file);
  const size = await plain.size();
  const ranges: [number, number][] = [[0, 8], [3, Math.min(size - 3, 100_000)], [size - 17, 17], [Math.floor(size / 3), Math.floor(size / 3)]];
  if (!(await enableOpfsCache({ blockBytes: 64 << 10 }))) return { ok: false, detail: "OPFS unavailable" };
  try {
    await clearOpfsCache(); // a profile used before must not turn the first reads into hits
    const before = { ...opfsStats };
    const first = openFile(file);
    for (const [o, n] of ranges) {
      const [a, b] = await Promise.all([first.read(o, n), plain.read(o, n)]);
      if (a.length !== b.length || a.some((v, i) => v !== b[i])) return { ok: false, detail: `bytes differ at range ${o}+${n}` };
    }
    const fetched = opfsStats.fetchedBlocks - before.fetchedBlocks;
    const second = openFile(file);
    for (const [o, n] of ranges) await second.read(o, n);
    const refetched = opfsStats.fetchedBlocks - before.fetchedBlocks - fetched;
    return { ok: fetched > 0 && refetched === 0, detail: `${fetched} blocks fetched, then ${refetched} refetched, ${opfsStats.cachedBlocks - before.cachedBlocks} from OPFS` };
  } finally {
    disableOpfsCache();
  }
}

async function main(): Promise<void> {
  const q = new URLSearchParams(location.search);
  const caseName = q.get("case") ?? "flux2_transformer";
  const t0 = performance.now();
  const tests: TestOutcome[] = await runRegistered((r) => say(`${r.ok ? "PASS" : "FAIL"} ${r.name} (${r.ms.toFixed(0)} ms)${r.error ? ": " + r.error : ""}`));
  const dev = await Device.open();
  const v = await verifyCase(`/fixtures/${caseName}`, dev).finally(() => dev.destroy());
  say(formatTable(v));
  const opfs = await opfsCheck(`/fixtures/${caseName}/io.safetensors`);
  say(`${opfs.ok ? "PASS" : "FAIL"} OPFS cache: ${opfs.detail}`);
  const result = { adapter: dev.describe(), tests, case: { name: caseName, code: v.code, rows: v.rows }, opfs, seconds: (performance.now() - t0) / 1000 };
  document.getElementById("result")!.textContent = JSON.stringify(result);
  document.body.dataset.state = "done";
}

main().catch((e) => {
  say(`ERROR ${(e as Error).stack ?? e}`);
  document.body.dataset.state = "error";
});
