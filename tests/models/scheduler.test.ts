// Flow-matching schedules and updates: the fixture case (diffusers schedules bit-exact, DiffSynth's, the Euler loop),
// the spec's worked values, config variants, partial ranges, and the GPU updates (Euler step, x0, guidance) against
// CPU float32 references on odd sizes, a single element and a grid past 65535 workgroups.
import { describe, expect, test } from "bun:test";
import { Tensor } from "../../core/index.ts";
import "../../models/flux2/verify.ts";
import { axpby, lerpHalves } from "../../kernels/elementwise.ts";
import { diffsynthFlux2Sigmas, empiricalMu, flowMatchSigmas, imageSeqLen } from "../../models/flux2/scheduler.ts";
import { expectCasePasses, FIXTURES, maxAbsErr, rand, testDevice } from "../util.ts";

const FIXTURE = `${FIXTURES}/scheduler`;
const f = Math.fround;

describe("flow-match scheduler", () => {
  test("fixture scheduler: every tensor passes, schedules to the last bit", async () => {
    const r = await expectCasePasses(FIXTURE);
    expect(r.rows.length).toBe(39);
    for (const row of r.rows) if (/sigmas/.test(row.name)) expect(row.maxAbsErr).toBeLessThanOrEqual(1.2e-7);
  }, 60_000);

  test("spec worked values and the mu rule", () => {
    expect(Math.abs(empiricalMu(4096, 4) - 2.29118)).toBeLessThan(1e-5);
    expect(Math.abs(empiricalMu(1024, 4) - 2.03069)).toBeLessThan(1e-5);
    // Above 4300 tokens mu ignores the step count.
    expect(empiricalMu(6400, 4)).toBe(empiricalMu(6400, 50));
    expect(imageSeqLen(1024, 1024)).toBe(4096);
    const s = flowMatchSigmas(4, imageSeqLen(1024, 1024));
    const want = [1.0, 0.967384, 0.908144, 0.7672, 0];
    expect(maxAbsErr(s.sigmas, Float32Array.from(want))).toBeLessThan(1e-6);
    expect(s.steps).toBe(4);
    expect(s.timesteps[3]).toBe(f(s.sigmas[3] * 1000));
    expect(s.modelTimestep(1)).toBe(f(s.timesteps[1] / 1000));
    expect(s.dt(3)).toBe(-s.sigmas[3]);
    const d = diffsynthFlux2Sigmas(4, 4096);
    expect(maxAbsErr(d.sigmas, s.sigmas)).toBeLessThanOrEqual(1.2e-7);
    // One step: sigma 1 only.
    expect(Array.from(flowMatchSigmas(1, 1024).sigmas)).toEqual([1, 0]);
  });

  test("config variants: static shift, shift_terminal, unsupported options", () => {
    const stat = flowMatchSigmas(8, 4096, { use_dynamic_shifting: false, shift: 3 });
    for (let i = 0; i < 8; i++) {
      const t = 1 - (i * (1 - 1 / 8)) / 7;
      expect(Math.abs(stat.sigmas[i] - (3 * t) / (1 + 2 * t))).toBeLessThan(1e-6);
    }
    const term = flowMatchSigmas(8, 4096, { use_dynamic_shifting: true, shift_terminal: 0.1 });
    expect(Math.abs(term.sigmas[7] - 0.1)).toBeLessThan(1e-6);
    expect(term.sigmas[8]).toBe(0);
    const lin = flowMatchSigmas(4, 1024, { time_shift_type: "linear" });
    const mu = empiricalMu(1024, 4);
    expect(Math.abs(lin.sigmas[1] - mu / (mu + (1 / (1 - 0.25) - 1)))).toBeLessThan(1e-6);
    expect(() => flowMatchSigmas(4, 1024, { use_karras_sigmas: true })).toThrow(/use_karras_sigmas/);
    expect(() => flowMatchSigmas(0, 1024)).toThrow(/steps 0/);
    expect(() => flowMatchSigmas(4, 1024).step(null as never, null as never, 4)).toThrow(/index 4 outside 0\.\.3/);
  });

  test("Euler step, x0 and guidance on the GPU match float32 CPU math", async () => {
    const dev = await testDevice();
    const s = flowMatchSigmas(4, 24);
    // 70000·256 + 5 elements: more than 65535 workgroups of 256.
    for (const n of [1, 24 * 16, 1000003, 70000 * 256 + 5]) {
      const x = rand(n, n, -3, 3);
      const v = rand(n, n + 1, -3, 3);
      const xt = Tensor.fromArray(dev, x, [n]);
      const vt = Tensor.fromArray(dev, v, [n]);
      const y = s.step(xt, vt, 1);
      const x0 = s.predictX0(xt, vt, 2);
      const dt = s.dt(1);
      const sig = s.sigmas[2];
      const refStep = x.map((xi, i) => f(xi + f(dt * v[i])));
      const refX0 = x.map((xi, i) => f(xi - f(sig * v[i])));
      const eStep = maxAbsErr(await y.toArray(), refStep);
      const eX0 = maxAbsErr(await x0.toArray(), refX0);
      // One rounding apart at most (the GPU may fuse the multiply-add).
      expect(eStep).toBeLessThanOrEqual(5e-7);
      expect(eX0).toBeLessThanOrEqual(5e-7);
      for (const t of [xt, vt, y, x0]) t.dispose();
    }
    for (const [B, L, C] of [[1, 1, 1], [1, 24, 16], [3, 37, 5]]) {
      const n = B * L * C;
      const data = rand(2 * n, B * 7 + L, -3, 3);
      const v2 = Tensor.fromArray(dev, data, [2 * B, L, C]);
      const g = lerpHalves(v2, 4);
      expect(g.shape).toEqual([B, L, C]);
      const ref = new Float32Array(n).map((_, i) => f(data[n + i] + f(4 * f(data[i] - data[n + i]))));
      expect(maxAbsErr(await g.toArray(), ref)).toBeLessThanOrEqual(2e-6);
      v2.dispose();
      g.dispose();
    }
    const odd = Tensor.zeros(dev, [3, 2]);
    const five = Tensor.zeros(dev, [5]);
    expect(() => lerpHalves(odd, 2)).toThrow(/must be even/);
    expect(() => axpby(1, odd, 1, five)).toThrow(/must match/);
    odd.dispose();
    five.dispose();
  }, 60_000);
});
