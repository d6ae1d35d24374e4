// Sinusoidal timestep/guidance features of diffusers' `Timesteps(channels, flip_sin_to_cos=True,
// downscale_freq_shift=0)` as FLUX.2 uses them (the value is first scaled by 1000 in the activation dtype).
// Computed on the CPU, where the values already are: a GPU sin of arguments up to ~1e4 rad loses digits that
// f32 keeps. Every step is rounded to f32 where torch rounds, and the frequencies use torch's CPU float exp
// (SLEEF expf_u10, FMA build) step by step: a correctly rounded exp differs from it by 1 ulp for ~15 of 128
// frequencies, which moves an argument of 3500 by 1e-4 rad. With it, the features match the reference to 1 ulp.

const f = Math.fround;
/** Fused multiply-add rounded once to f32 (the f32 product is exact in f64). */
const fma = (a: number, b: number, c: number) => f(a * b + c);

/** SLEEF's xexpf (u10) for f32 inputs in [-104, 100] (the frequencies here are in (-10, 0]). */
function sleefExpf(d: number): number {
  const q = Math.round(f(d * f(Math.LOG2E)));
  let s = fma(q, f(-0.693145751953125), d);
  s = fma(q, f(-1.428606765330187045e-6), s);
  let u = f(0.000198527617612853646278381);
  u = fma(u, s, f(0.00139304355252534151077271));
  u = fma(u, s, f(0.00833336077630519866943359));
  u = fma(u, s, f(0.0416664853692054748535156));
  u = fma(u, s, f(0.166666671633720397949219));
  u = fma(u, s, 0.5);
  u = f(1 + fma(f(s * s), u, s));
  return f(u * 2 ** q);
}

/** [cos(x·f_i) | sin(x·f_i)] for x = fround(v)·1000, f_i = exp(-ln(10000)·i/half): [values.length, channels]. */
export function timestepSinusoid(values: readonly number[], channels: number): Float32Array {
  if (!Number.isInteger(channels) || channels < 2 || channels % 2) {
    throw new Error(`timestepSinusoid: channels ${channels} must be a positive even integer`);
  }
  const half = channels / 2;
  const c = f(-Math.log(10000));
  const freqs = new Float64Array(half);
  for (let i = 0; i < half; i++) freqs[i] = sleefExpf(f(f(c * i) / half));
  const out = new Float32Array(values.length * channels);
  values.forEach((v, b) => {
    if (!Number.isFinite(v)) throw new Error(`timestepSinusoid: value ${b} is ${v}`);
    const x = f(f(v) * 1000);
    for (let i = 0; i < half; i++) {
      const arg = f(x * freqs[i]);
      out[b * channels + i] = Math.cos(arg);
      out[b * channels + half + i] = Math.sin(arg);
    }
  });
  return out;
}
