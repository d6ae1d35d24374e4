// Lifetime stress: hundreds of eager launches of random sizes (1..200k) in one process, chained on each other's
// outputs, with tensors, views and inputs disposed at random while their kernels may still be pending, so a pooled
// buffer is reused as early as the device allows. Every few launches one live tensor is read back and checked
// against its CPU reference; at the end all are, and the pool must account for every byte.
import { describe, expect, test } from "bun:test";
import { randnRef, Tensor } from "../../core/index.ts";
import * as ew from "../../kernels/elementwise.ts";
import * as ref from "../../kernels/elementwise.ref.ts";
import { assertClose, rand, testDevice } from "../util.ts";

interface Live {
  t: Tensor;
  ref: Float32Array;
  exact: boolean; // bit-exact (uploads, randn) or computed in f32 (relative error bound)
  depth: number;
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

describe("stress", () => {
  test("300 random launches with random lifetimes match their CPU references", async () => {
    const dev = await testDevice();
    dev.trimPool();
    const baseline = dev.allocatedBytes;
    const rnd = lcg(2024);
    const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
    // half uniform, half log-uniform: large buffers and many small odd sizes
    const size = (max = 200_000) => Math.max(1, Math.floor(rnd() < 0.5 ? rnd() * max : Math.exp(rnd() * Math.log(max))));
    let seeds = 1;
    const live: Live[] = [];
    const upload = (shape: number[]): Live => {
      const data = rand(shape.reduce((a, b) => a * b, 1), seeds++, -3, 3);
      return { t: Tensor.fromArray(dev, data, shape), ref: data, exact: true, depth: 0 };
    };
    const pick = (): Live | undefined => {
      const c = live.filter((l) => l.depth < 4);
      return c.length ? c[int(0, c.length - 1)] : undefined;
    };
    const counts: Record<string, number> = {};
    let checks = 0, worst = 0;
    const check = async (l: Live, label: string) => {
      const got = await l.t.toArray();
      if (l.exact) {
        const a = new Uint32Array(got.buffer), b = new Uint32Array(l.ref.buffer, l.ref.byteOffset, l.ref.length);
        expect(`${label}: ${a.length === b.length && a.every((v, i) => v === b[i])}`).toBe(`${label}: true`);
      } else worst = Math.max(worst, assertClose(got, l.ref, 1e-5, label));
      checks++;
    };

    const t0 = performance.now();
    for (let step = 0; step < 300; step++) {
      const a = pick();
      const op = a ? ["upload", "randn", "add", "mul", "silu", "swiglu", "modulate", "view"][int(0, 7)] : "upload";
      counts[op] = (counts[op] ?? 0) + 1;
      let out: Live;
      if (op === "upload" || !a) {
        const n = size(), cols = int(1, 64);
        out = upload([Math.ceil(n / cols), cols]);
      } else if (op === "randn") {
        const n = size(65_536), seed = int(0, 2 ** 30) * 2 ** 21 + int(0, 2 ** 21), offset = int(0, 2 ** 31);
        out = { t: Tensor.randn(dev, [n], { seed, offset }), ref: randnRef(n, seed, offset), exact: true, depth: 0 };
      } else if (op === "add" || op === "mul") {
        const cols = a.t.shape[a.t.shape.length - 1];
        const b = upload(rnd() < 0.5 ? [...a.t.shape] : [cols]); // same shape or a broadcast row
        const f = op === "add" ? (x: number, y: number) => x + y : (x: number, y: number) => x * y;
        const t = op === "add" ? ew.add(a.t, b.t) : ew.mul(a.t, b.t);
        out = { t, ref: ref.binaryRef(a.ref, b.ref, f), exact: false, depth: a.depth + 1 };
        if (rnd() < 0.7) b.t.dispose(); // released while the kernel reading it is pending
        else live.push(b);
      } else if (op === "silu") {
        out = { t: ew.silu(a.t), ref: ref.mapRef(a.ref, ref.unaryRef.silu), exact: false, depth: a.depth + 1 };
      } else if (op === "swiglu") {
        const F = int(1, 300), rows = Math.max(1, Math.floor(size() / (2 * F)));
        const x = upload([rows, 2 * F]);
        out = { t: ew.swiglu(x.t), ref: ref.swigluRef(x.ref, F), exact: false, depth: 1 };
        x.t.dispose();
      } else if (op === "modulate") {
        const D = int(1, 200), B = int(1, 3), L = Math.max(1, Math.floor(size() / (B * D)));
        const x = upload([B, L, D]), sc = upload([B, D]), sh = upload([B, D]);
        out = { t: ew.modulate(x.t, sc.t, sh.t), ref: ref.modulateRef(x.ref, B, D, sc.ref, sh.ref), exact: false, depth: 1 };
        for (const u of [x, sc, sh]) u.t.dispose();
      } else {
        // a view over a's storage; a itself may be dropped first
        out = { ...a, t: a.t.reshape([a.t.size]) };
        if (rnd() < 0.5) live.splice(live.indexOf(a), 1)[0].t.dispose();
      }
      live.push(out);
      while (live.length > 10) live.splice(int(0, live.length - 1), 1)[0].t.dispose();
      if (step % 4 === 3) {
        const l = live[int(0, live.length - 1)];
        await check(l, `step ${step} [${l.t.shape}]`);
      }
    }
    for (const [i, l] of live.entries()) await check(l, `final ${i} [${l.t.shape}]`);
    for (const l of live) l.t.dispose();
    dev.trimPool();
    expect(dev.allocatedBytes).toBe(baseline);
    console.log(`stress: ${JSON.stringify(counts)}, ${checks} readbacks, worst rel err ${worst.toExponential(2)}, ${dev.stats.dispatches} dispatches, ${dev.stats.submits} submits, peak ${(dev.peakBytes / 1e6).toFixed(1)} MB, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }, 60_000);

  test("a batch longer than the dispatch and uniform limits stays in order", async () => {
    const dev = await testDevice();
    const n = 1000;
    const one = Tensor.fromArray(dev, new Float32Array(n).fill(1), [n]);
    let acc = Tensor.zeros(dev, [n]);
    const submits = dev.stats.submits;
    for (let i = 0; i < 600; i++) {
      const next = ew.add(acc, one);
      acc.dispose(); // its buffer is reused two launches later, inside the same batch
      acc = next;
    }
    expect(dev.stats.submits - submits).toBeGreaterThanOrEqual(2); // the batch was split
    const got = await acc.toArray();
    expect(got.every((v) => v === 600)).toBe(true);
    acc.dispose();
    one.dispose();
  }, 60_000);
});
