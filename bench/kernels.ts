// Kernel benchmark: per kernel and size, the time per call, GFLOP/s (compute-bound ops) or GB/s (memory-bound
// ops), next to baselines measured in the same process: the adapter's own FMA-only peak (`fma_peak`), a CPU matmul
// (numpy/OpenBLAS when python3-numpy is installed, else a JS loop; both at the matmul rows' own n³) and the device-to-device copy rate.
// Matmul's ratio to fma_peak comes from rounds that time both back to back (a shared 2-core VM drifts by ±25%
// within a minute, so one peak taken at the start is not a fair yardstick for a row measured later).
// Matmul runs once per kernel the device can run (its default first; `profile` names the kernel), so kernel choices
// compare within one run. Memory-bound rows are set against `stream_peak`, a vec4 WGSL copy of the row's input
// timed just before it (the driver's buffer copy is a memcpy no shader reaches on a CPU adapter: no fair yardstick).
// Correctness lives in tests/kernels; this file only measures. `bun run bench [--quick]
// [--out file]` writes bench/results.json (or the file).
import { Device, grid1d, Tensor, uniforms } from "../core/index.ts";
import * as K from "../kernels/index.ts";

export interface BenchRow {
  kernel: string;
  shape: number[];
  dtype: string;
  ms: number;
  gflops?: number;
  gbps?: number;
  /** matmul: GFLOP/s as a fraction of fma_peak, the median over rounds that measure both back to back. */
  ofFmaPeak?: number;
  /** matmul: the median fma_peak GFLOP/s of those rounds. */
  peak?: number;
  /** matmul: the kernel that ran ("tiled" or "subgroup"); the device's default comes first per dtype. */
  profile?: string;
  /** dispatch_overhead: host µs per launch, and µs per launch including the adapter's execution. */
  us?: number;
  totalUs?: number;
  baseline?: { name: string; gflops?: number; gbps?: number };
  /** memory-bound rows: GB/s as a fraction of stream_peak over the same input, timed just before (baseline). */
  ofStreamPeak?: number;
}

/** Mean ms per call of `fn` after warm-ups; each call's tensors are disposed. */
export async function timeKernel(dev: Device, fn: () => Tensor | { dispose(): void }, minMs = 300, minIters = 3): Promise<number> {
  for (let i = 0; i < 2; i++) fn().dispose();
  await dev.sync();
  let iters = 0;
  const t0 = performance.now();
  while (iters < minIters || performance.now() - t0 < minMs) {
    fn().dispose();
    iters++;
    if (iters % 4 === 0) await dev.sync();
  }
  await dev.sync();
  return (performance.now() - t0) / iters;
}

// Eight independent vec4 FMA chains (enough to cover FMA latency on GPUs and to fill a CPU adapter's SIMD pipes),
// the loop body unrolled FMA_UNROLL times so loop bookkeeping does not count against the peak (on lavapipe a
// single-step loop ran at ~half the FMA rate of this one), and the sum stored so nothing is dead code.
const FMA_CHAINS = 8;
const FMA_UNROLL = 4;
const FMA = uniforms("fmaPeak", { iters: "u32" });
const FMA_WGSL = `
${FMA.wgsl}
@group(0) @binding(1) var<storage, read_write> out: array<vec4f>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let s = f32(gid.x) * 1e-7;
  ${Array.from({ length: FMA_CHAINS }, (_, i) => `var a${i} = vec4f(s + ${(i / 10).toFixed(1)});`).join(" ")}
  let m = vec4f(0.999999); let c = vec4f(1e-6);
  for (var i = 0u; i < u.iters; i++) {
${Array.from({ length: FMA_UNROLL }, () => "    " + Array.from({ length: FMA_CHAINS }, (_, i) => `a${i} = fma(a${i}, m, c);`).join(" ")).join("\n")}
  }
  out[gid.x] = ${Array.from({ length: FMA_CHAINS }, (_, i) => `a${i}`).join(" + ")};
}`;

// The streaming yardstick: each thread copies STREAM_PER vec4s strided by the workgroup size (coalesced per step).
const STREAM_PER = 4;
const STREAM = uniforms("streamPeak", { n: "u32" });
const STREAM_WGSL = `
${STREAM.wgsl}
@group(0) @binding(1) var<storage, read_write> dst: array<vec4f>;
@group(0) @binding(2) var<storage, read> src: array<vec4f>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let first = (wid.x + wid.y * nwg.x) * ${256 * STREAM_PER}u + tid;
  for (var k = 0u; k < ${STREAM_PER}u; k++) {
    let i = first + k * 256u;
    if (i < u.n) { dst[i] = src[i]; }
  }
}`;

/** GB/s (bytes read + written) of a vec4 WGSL copy of `x` (its size a multiple of 4): the streaming peak. */
export async function streamPeak(dev: Device, x: Tensor): Promise<{ ms: number; gbps: number }> {
  const n4 = x.size / 4;
  const p = dev.pipeline(STREAM_WGSL);
  const u = STREAM.pack({ n: n4 });
  const ms = await timeKernel(dev, () => {
    const o = Tensor.empty(dev, x.shape);
    dev.run(p, [o.binding(), x.binding()], grid1d(n4, 256 * STREAM_PER), u);
    return o;
  });
  return { ms, gbps: (2 * x.bytes) / (ms * 1e6) };
}

/** GFLOP/s of a kernel that does nothing but independent vec4 FMAs: the adapter's practical arithmetic peak. */
export async function fmaPeak(dev: Device, groups = dev.isCpu ? 256 : 4096, iters = 1024): Promise<number> {
  const out = Tensor.empty(dev, [groups * 256 * 4]);
  const p = dev.pipeline(FMA_WGSL);
  const u = FMA.pack({ iters });
  const ms = await timeKernel(dev, () => {
    dev.run(p, [out.binding()], [groups], u);
    return { dispose() {} };
  });
  out.dispose();
  return (groups * 256 * iters * FMA_UNROLL * FMA_CHAINS * 4 * 2) / (ms * 1e6);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
};

/**
 * `fn` (doing `flops` each call) against the FMA peak: `rounds` rounds of fma_peak then `fn`, back to back, so a
 * noisy host slows both alike; the ratio is the median of the rounds' ratios, ms and peak the medians.
 */
export async function againstPeak(dev: Device, fn: () => Tensor, flops: number, rounds = 5) {
  const ms: number[] = [], peaks: number[] = [], ratios: number[] = [];
  for (let i = 0; i < rounds; i++) {
    peaks.push(await fmaPeak(dev));
    ms.push(await timeKernel(dev, fn));
    ratios.push(flops / (ms[i] * 1e6) / peaks[i]);
  }
  return { ms: median(ms), peak: median(peaks), ofFmaPeak: median(ratios) };
}

/**
 * Host cost of one eager launch: µs per dispatch of a tiny elementwise op (64 elements; the output is disposed each
 * time, so the pool hands the same buffer back, as in a model's loops). `hostUs`: encoding and submitting batches
 * of 200 launches with the queue idle (waits excluded), so a CPU adapter's concurrent execution does not blur it;
 * `totalUs`: `n` launches then one wait, which on a CPU adapter is bound by its own per-dispatch execution cost.
 */
export async function dispatchOverhead(dev: Device, n = 2000): Promise<{ hostUs: number; totalUs: number }> {
  const x = Tensor.zeros(dev, [64]);
  const launch = () => K.scale(x, 2).dispose();
  for (let i = 0; i < 8; i++) launch();
  await dev.sync();
  let host = 0;
  for (let b = 0; b < n; b += 200) {
    const t0 = performance.now();
    for (let i = 0; i < 200; i++) launch();
    dev.flush();
    host += performance.now() - t0;
    await dev.sync();
  }
  const t0 = performance.now();
  for (let i = 0; i < n; i++) launch();
  await dev.sync();
  const totalUs = ((performance.now() - t0) * 1e3) / n;
  x.dispose();
  return { hostUs: (host * 1e3) / (Math.ceil(n / 200) * 200), totalUs };
}

/** CPU matmul baseline at n³: numpy (OpenBLAS) in a subprocess when available, else a plain i-k-j JS loop. */
export async function cpuMatmulGflops(n: number): Promise<{ name: string; gflops: number }> {
  try {
    const cp = await import("node:child_process");
    const code = `import numpy as np, time
a=np.random.rand(${n},${n}).astype(np.float32); b=np.random.rand(${n},${n}).astype(np.float32); a@b
t=time.perf_counter(); k=0
while time.perf_counter()-t<1.0: a@b; k+=1
print(2*${n}**3*k/(time.perf_counter()-t)/1e9)`;
    const r = cp.spawnSync("python3", ["-c", code], { encoding: "utf8", timeout: 60_000 });
    const g = Number(r.stdout.trim());
    if (r.status === 0 && g > 0) return { name: "numpy-openblas", gflops: g };
  } catch {
    // no subprocesses here (browser): fall through to the JS loop
  }
  // Timed at n itself: a smaller product would measure another cache regime than the row it stands beside.
  const a = new Float32Array(n * n).map(Math.random), b = new Float32Array(n * n).map(Math.random), c = new Float32Array(n * n);
  const t0 = performance.now();
  for (let i = 0; i < n; i++)
    for (let k = 0; k < n; k++) {
      const av = a[i * n + k];
      for (let j = 0; j < n; j++) c[i * n + j] += av * b[k * n + j];
    }
  return { name: "js-loop", gflops: (2 * n ** 3) / ((performance.now() - t0) * 1e6) };
}

export async function runBench(dev: Device, opts: { quick?: boolean; log?: (s: string) => void } = {}): Promise<BenchRow[]> {
  const log = opts.log ?? console.log;
  const rows: BenchRow[] = [];
  const push = (r: BenchRow) => {
    rows.push(r);
    const rate = r.gflops !== undefined ? `${r.gflops.toFixed(2)} GFLOP/s` : `${r.gbps!.toFixed(2)} GB/s`;
    const base = r.baseline ? `  (${r.baseline.name}: ${(r.baseline.gflops ?? r.baseline.gbps)!.toFixed(2)}${r.baseline.gflops !== undefined ? " GFLOP/s" : " GB/s"})` : "";
    log(`${(r.profile ? `${r.kernel}:${r.profile}` : r.kernel).padEnd(16)} ${`[${r.shape.join("x")}]`.padEnd(22)} ${r.dtype.padEnd(5)} ${r.ms.toFixed(3).padStart(10)} ms  ${rate}${base}`);
  };
  const peak = await fmaPeak(dev);
  rows.push({ kernel: "fma_peak", shape: [], dtype: "f32", ms: 0, gflops: peak, baseline: { name: dev.describe(), gflops: peak } });
  // The device's matmul kernel first, then any other it can run, all measured against this run's fma_peak.
  const kernels = [K.matmulKernel(dev), ...K.matmulKernels(dev).filter((k) => k !== K.matmulKernel(dev))];
  log(
    `adapter: ${dev.describe()}${dev.isCpu ? " (CPU adapter)" : ""}\nfma_peak: ${peak.toFixed(2)} GFLOP/s\n` +
      `matmul kernel: ${kernels[0]} (also measured: ${kernels.slice(1).join(", ") || "none"}); tiled tiles ${JSON.stringify(K.matmulTiles(dev))}`,
  );
  const disp = await dispatchOverhead(dev);
  rows.push({ kernel: "dispatch_overhead", shape: [64], dtype: "f32", ms: disp.hostUs / 1e3, us: disp.hostUs, totalUs: disp.totalUs });
  log(`dispatch_overhead: ${disp.hostUs.toFixed(1)} µs/dispatch on the host (${disp.totalUs.toFixed(1)} µs with the adapter's execution)`);
  const n = opts.quick ? 512 : 1024;
  const cpu = await cpuMatmulGflops(n);
  const fmaBase = { name: "fma_peak", gflops: peak };

  await dev.scope(async () => {
    for (const dtype of ["f32", "bf16"] as const) {
      const a = Tensor.randn(dev, [n, n], { seed: 1 });
      const w = Tensor.fromArray(dev, new Float32Array(n * n).map(() => Math.random() - 0.5), [n, n], dtype);
      for (const kernel of kernels) {
        const r = await againstPeak(dev, () => K.matmul(a, w, { transposeB: true, kernel }), 2 * n ** 3);
        const gflops = (2 * n ** 3) / (r.ms * 1e6);
        push({ kernel: "matmul", shape: [n, n, n], dtype, ms: r.ms, gflops, ofFmaPeak: r.ofFmaPeak, peak: r.peak, profile: kernel, baseline: cpu });
        log(`  matmul ${dtype} (${kernel}): ${(r.ofFmaPeak * 100).toFixed(1)}% of fma_peak (median of 5 paired rounds; peak ${r.peak.toFixed(1)} GFLOP/s), ${(gflops / cpu.gflops).toFixed(2)}x ${cpu.name}`);
      }
    }
    const [L, H, D] = opts.quick ? [256, 4, 128] : [1024, 4, 128];
    const q = Tensor.randn(dev, [1, L, H, D], { seed: 2 });
    const ms = await timeKernel(dev, () => K.flashAttention(q, q, q));
    push({ kernel: "flashAttention", shape: [1, L, H, D], dtype: "f32", ms, gflops: (4 * L * L * H * D) / (ms * 1e6), baseline: fmaBase });
    const [C, S] = opts.quick ? [64, 32] : [128, 64];
    const x = Tensor.randn(dev, [1, C, S, S], { seed: 3 });
    const cw = Tensor.randn(dev, [C, C, 3, 3], { seed: 4 });
    const cms = await timeKernel(dev, () => K.conv2d(x, cw, undefined, { padding: 1 }));
    push({ kernel: "conv2d_3x3", shape: [1, C, S, S, C], dtype: "f32", ms: cms, gflops: (2 * C * C * 9 * S * S) / (cms * 1e6), baseline: fmaBase });
    // Memory-bound rows at klein-4B's shapes: the transformer's [tokens, 3072] activations (4096 image tokens at
    // 1024², a quarter under --quick), the VAE decoder's widest and largest GroupNorm inputs, the latent for haar.
    // Each row's ratio is to a stream_peak over its own input timed just before it (a shared VM drifts within a
    // minute, and a copy of another size meets other caches).
    const r = Tensor.randn(dev, opts.quick ? [1024, 3072] : [4096, 3072], { seed: 5 });
    const stream = await streamPeak(dev, r);
    push({ kernel: "stream_peak", shape: [...r.shape], dtype: "f32", ms: stream.ms, gbps: stream.gbps, baseline: { name: dev.describe(), gbps: stream.gbps } });
    /** Times `fn` over `x`, moving `bytes` per call (default: read x, write as much), against stream_peak. */
    const memRow = async (kernel: string, x: Tensor, fn: () => { dispose(): void }, bytes = 2 * x.bytes) => {
      const peak = await streamPeak(dev, x);
      const ms = await timeKernel(dev, fn);
      const gbps = bytes / (ms * 1e6);
      push({ kernel, shape: [...x.shape], dtype: "f32", ms, gbps, baseline: { name: "stream_peak", gbps: peak.gbps }, ofStreamPeak: gbps / peak.gbps });
      log(`  ${kernel}: ${((gbps / peak.gbps) * 100).toFixed(1)}% of stream_peak`);
    };
    await memRow("rmsNorm", r, () => K.rmsNorm(r, undefined, { eps: 1e-6 }));
    await memRow("layerNorm", r, () => K.layerNorm(r, undefined, undefined, { eps: 1e-6 }));
    await memRow("softmax", r, () => K.softmax(r));
    await memRow("silu", r, () => K.silu(r));
    await memRow("randn", r, () => Tensor.randn(dev, r.shape, { seed: 9 }), r.bytes);
    for (const shape of opts.quick ? [[1, 128, 256, 256]] : [[1, 512, 128, 128], [1, 128, 512, 512]]) {
      const g = Tensor.randn(dev, shape, { seed: 6 });
      await memRow("groupNorm", g, () => K.groupNorm(g, 32, undefined, undefined, { eps: 1e-6 }));
      g.dispose();
    }
    for (const shape of [[1, 128, 64, 64], [1, 32, 128, 128]]) {
      const z = Tensor.randn(dev, shape, { seed: 7 });
      await memRow("haarDwt2d", z, () => {
        const d = K.haarDwt2d(z, 4);
        return { dispose: () => [d.low, ...d.details.flatMap((l) => [l.h, l.v, l.d])].forEach((t) => t.dispose()) };
      });
    }
  });
  return rows;
}

/** Runs the bench and writes the rows as a JSON list to `path`. */
export async function benchToFile(path: string, quick: boolean): Promise<BenchRow[]> {
  const dev = await Device.open();
  const rows = await runBench(dev, { quick });
  const { mkdir, writeFile } = await import("node:fs/promises");
  const { dirname } = await import("node:path");
  await mkdir(dirname(path), { recursive: true }); // `flux2ts bench` from a folder without bench/
  await writeFile(path, JSON.stringify(rows, null, 2) + "\n");
  console.log(`wrote ${path}`);
  dev.destroy();
  return rows;
}

if (import.meta.main) {
  const argv = (globalThis as { process?: { argv: string[] } }).process?.argv ?? [];
  const out = argv.includes("--out") ? argv[argv.indexOf("--out") + 1] : new URL("./results.json", import.meta.url).pathname;
  await benchToFile(out, argv.includes("--quick"));
}
