// Flow-matching sampling for FLUX.2: the sigma schedule of diffusers' FlowMatchEulerDiscreteScheduler as
// Flux2KleinPipeline sets it (and DiffSynth's own FLUX.2 schedule), the Euler update and the x0 prediction.
// Design:
// - Schedules are tiny CPU arrays computed with the rounding of the reference: diffusers builds the base sigmas
//   with numpy in float64, casts them to float32 and applies the time shift in numpy float32 (a Python float scalar
//   does not upcast under numpy 2, it is rounded to float32 first); mu is a Python float (float64). DiffSynth does
//   the same in torch float32, where `c / t` is `reciprocal(t) * c`. Every such step is mirrored with Math.fround.
// - sigmas has steps + 1 values ending in the terminal 0; timesteps = sigma·1000 (float32). Step i goes from
//   sigmas[i] to sigmas[i + 1], so a caller can run any sub-range [from, to) of the schedule.
// - The GPU side is kernels/elementwise axpby: x + a·v (Euler step with a = σ_{i+1} − σ_i in float32 as diffusers
//   rounds it; x0 = x − σ·v).
import type { Tensor } from "../../core/index.ts";
import { axpby } from "../../kernels/elementwise.ts";

const f = Math.fround;

/** The scheduler_config.json fields this module reads (diffusers FlowMatchEulerDiscreteScheduler). */
export interface FlowMatchConfig {
  num_train_timesteps?: number;
  shift?: number;
  use_dynamic_shifting?: boolean;
  time_shift_type?: "exponential" | "linear";
  shift_terminal?: number | null;
  invert_sigmas?: boolean;
  use_karras_sigmas?: boolean;
  use_exponential_sigmas?: boolean;
  use_beta_sigmas?: boolean;
  stochastic_sampling?: boolean;
}

/** The FLUX.2 scheduler settings (the klein repos' scheduler_config.json). */
export const FLUX2_SCHEDULER: FlowMatchConfig = {
  num_train_timesteps: 1000,
  shift: 3.0,
  use_dynamic_shifting: true,
  time_shift_type: "exponential",
  shift_terminal: null,
};

/**
 * FLUX.2's resolution- and step-dependent shift (compute_empirical_mu, float64): above 4300 tokens the 200-step
 * line alone, else linear in `steps` between the 10-step and the 200-step lines.
 */
export function empiricalMu(imageSeqLen: number, steps: number): number {
  const a1 = 8.73809524e-5, b1 = 1.89833333;
  const a2 = 0.00016927, b2 = 0.45666666;
  if (imageSeqLen > 4300) return a2 * imageSeqLen + b2;
  const m200 = a2 * imageSeqLen + b2;
  const m10 = a1 * imageSeqLen + b1;
  const a = (m200 - m10) / 190.0;
  const b = m200 - 200.0 * a;
  return a * steps + b;
}

/** Packed latent tokens of an image: (height/16)·(width/16). */
export const imageSeqLen = (width: number, height: number) => Math.floor(height / 16) * Math.floor(width / 16);

function checkSteps(steps: number, what: string): void {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`${what}: steps ${steps} must be a positive integer`);
}

/** numpy.linspace(start, stop, n) in float64 (i·step + start, last value exactly stop). */
function linspace64(start: number, stop: number, n: number): Float64Array {
  const out = new Float64Array(n);
  const step = (stop - start) / (n - 1);
  for (let i = 0; i < n; i++) out[i] = n > 1 ? i * step + start : start;
  if (n > 1) out[n - 1] = stop;
  return out;
}

/**
 * torch.linspace(start, stop, n) in float32 on the CPU: the first half counts up from start, the second back from
 * stop, each value one fused multiply-add (torch's kernel is compiled with FMA contraction; this matches the
 * fixture bit for bit where separate roundings miss by an ulp). step·k is exact in float64 and the sum of two
 * float32 values of similar size is too, so the single f32 rounding below is the FMA's.
 */
function linspace32(start: number, stop: number, n: number): Float32Array {
  const s = f(start), e = f(stop);
  const step = f(f(e - s) / (n - 1));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = i < n >> 1 ? f(s + step * i) : f(e - step * (n - i - 1));
  return out;
}

/** A denoising schedule: `steps` Euler steps from sigmas[0] down to the terminal sigmas[steps] = 0. */
export class FlowMatchSchedule {
  /** steps + 1 values, the last one 0. */
  readonly sigmas: Float32Array;
  /** steps values: sigma·num_train_timesteps in float32. */
  readonly timesteps: Float32Array;

  constructor(sigmas: Float32Array, readonly mu: number, trainTimesteps = 1000) {
    if (!sigmas.length) throw new Error("FlowMatchSchedule: no sigmas");
    this.sigmas = new Float32Array(sigmas.length + 1);
    this.sigmas.set(sigmas);
    this.timesteps = sigmas.map((s) => f(s * trainTimesteps));
  }

  get steps(): number {
    return this.timesteps.length;
  }

  /** The timestep value the pipeline hands the transformer at step i: t/1000 in float32 (not exactly sigma). */
  modelTimestep(i: number): number {
    this.checkIndex(i, this.steps, "modelTimestep");
    return f(this.timesteps[i] / 1000);
  }

  /** σ_{i+1} − σ_i in float32, as diffusers' step computes it. */
  dt(i: number): number {
    this.checkIndex(i, this.steps, "dt");
    return f(this.sigmas[i + 1] - this.sigmas[i]);
  }

  /** Euler step i: x + (σ_{i+1} − σ_i)·v → new tensor (f32, same shape). */
  step(x: Tensor, v: Tensor, i: number): Tensor {
    return axpby(1, x, this.dt(i), v);
  }

  /** The clean-sample estimate at step i (sigma index i, 0..steps): x − σ_i·v. */
  predictX0(x: Tensor, v: Tensor, i: number): Tensor {
    this.checkIndex(i, this.sigmas.length, "predictX0");
    return axpby(1, x, -this.sigmas[i], v);
  }

  private checkIndex(i: number, n: number, what: string): void {
    if (!Number.isInteger(i) || i < 0 || i >= n) throw new Error(`FlowMatchSchedule.${what}: index ${i} outside 0..${n - 1}`);
  }
}

/**
 * The schedule of diffusers' Flux2KleinPipeline: sigmas = linspace(1, 1/n, n) (numpy float64 → float32), shifted
 * with mu = empiricalMu(imageSeqLen, n) by the config's time shift (float32), timesteps = sigma·1000, terminal 0.
 */
export function flowMatchSigmas(steps: number, imageSeqLen: number, cfg: FlowMatchConfig = FLUX2_SCHEDULER): FlowMatchSchedule {
  checkSteps(steps, "flowMatchSigmas");
  for (const k of ["invert_sigmas", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "stochastic_sampling"] as const) {
    if (cfg[k]) throw new Error(`flowMatchSigmas: scheduler config ${k} = true is not supported`);
  }
  const mu = empiricalMu(imageSeqLen, steps);
  const base = Float32Array.from(linspace64(1.0, 1 / steps, steps));
  let sigmas: Float32Array;
  if (cfg.use_dynamic_shifting ?? true) {
    const type = cfg.time_shift_type ?? "exponential";
    if (type !== "exponential" && type !== "linear") throw new Error(`flowMatchSigmas: time_shift_type "${type}" is not supported`);
    // exp(mu)/(exp(mu) + (1/t − 1)) or mu/(mu + (1/t − 1)); `** 1.0` is exact.
    const m = f(type === "exponential" ? Math.exp(mu) : mu);
    sigmas = base.map((t) => f(m / f(m + f(f(1 / t) - 1))));
  } else {
    const shift = cfg.shift ?? 1.0;
    sigmas = base.map((t) => f(f(f(shift) * t) / f(1 + f(f(shift - 1) * t))));
  }
  if (cfg.shift_terminal) {
    // stretch_shift_to_terminal: 1 − (1 − σ)/((1 − σ_last)/(1 − terminal)).
    const scale = f(f(1 - sigmas[steps - 1]) / f(1 - cfg.shift_terminal));
    sigmas = sigmas.map((s) => f(1 - f(f(1 - s) / scale)));
  }
  return new FlowMatchSchedule(sigmas, mu, cfg.num_train_timesteps ?? 1000);
}

/**
 * DiffSynth-Studio's FlowMatchScheduler("FLUX.2").set_timesteps: torch.linspace(strength·(1 − 1/n) + 1/n, 1/n, n)
 * in float32, the same empirical mu, exp(mu)/(exp(mu) + (1/σ − 1)) in torch float32 arithmetic, terminal 0.
 */
export function diffsynthFlux2Sigmas(steps: number, imageSeqLen: number, denoisingStrength = 1.0): FlowMatchSchedule {
  checkSteps(steps, "diffsynthFlux2Sigmas");
  const sigmaMin = 1 / steps;
  const base = linspace32(sigmaMin + (1.0 - sigmaMin) * denoisingStrength, sigmaMin, steps);
  const mu = empiricalMu(imageSeqLen, steps);
  const m = f(Math.exp(mu));
  // torch: c / t is reciprocal(t)·c, c + t adds the scalar rounded to float32.
  const sigmas = base.map((t) => f(f(1 / f(f(f(1 / t) - 1) + m)) * m));
  return new FlowMatchSchedule(sigmas, mu);
}
