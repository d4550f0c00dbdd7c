// Flow-matching samplers for Sana: diffusers' DPMSolverMultistepScheduler as Sana configures it
// (dpmsolver++, order 2, midpoint, flow sigmas, lower_order_final, final sigma zero, integer
// truncated model timesteps) and FlowMatchEulerDiscreteScheduler (with its double-shift quirk).
// Latents are Float32Array; every per-element and scalar operation rounds to float32 the way
// torch does on float32 tensors (shared/spec/sana.md §6, fixtures scheduler/steps*.safetensors).
//
// Partial denoising (`denoise` < 1, ComfyUI's rule): the schedule is built for
// floor(steps / denoise) steps and only its last `steps` steps are run, so the run starts at a
// lower sigma. `noiseLatent` mixes an input latent with noise at that first sigma (flow form
// x = (1 − σ)·latent + σ·noise). denoise = 1 is the plain text-to-image schedule.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseLenientJson } from './weights.ts';

const fr = Math.fround;

export type SamplerKind = 'dpmpp_2m' | 'flow_euler';

/** The fields of a diffusers scheduler_config.json that the flow samplers use. */
export interface FlowSchedulerConfig {
  numTrainTimesteps: number;
  flowShift: number;
  solverOrder: number;
  lowerOrderFinal: boolean;
  eulerAtFinal: boolean;
  finalSigmasType: 'zero' | 'sigma_min';
}

export const SANA_SCHEDULER_DEFAULTS: FlowSchedulerConfig = {
  numTrainTimesteps: 1000,
  flowShift: 3.0,
  solverOrder: 2,
  lowerOrderFinal: true,
  eulerAtFinal: false,
  finalSigmasType: 'zero',
};

/**
 * Reads `scheduler_config.json` (a file, or a folder holding it) leniently (Python writes
 * `-Infinity`) and checks that it describes the flow DPM-Solver++ that is implemented here.
 */
export function readSchedulerConfig(pathOrDir: string): FlowSchedulerConfig {
  const file = statSync(pathOrDir).isDirectory() ? join(pathOrDir, 'scheduler_config.json') : pathOrDir;
  const raw = parseLenientJson(readFileSync(file, 'utf8'), file) as Record<string, unknown>;
  return schedulerConfigFromJson(raw, file);
}

export function schedulerConfigFromJson(raw: Record<string, unknown>, where = 'scheduler config'): FlowSchedulerConfig {
  const num = (k: string, d: number): number => {
    const v = raw[k];
    if (v === undefined || v === null) return d;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${where}: ${k} must be a finite number, got ${JSON.stringify(v)}`);
    return v;
  };
  const bool = (k: string, d: boolean): boolean => {
    const v = raw[k];
    if (v === undefined || v === null) return d;
    if (typeof v !== 'boolean') throw new Error(`${where}: ${k} must be a boolean, got ${JSON.stringify(v)}`);
    return v;
  };
  const cls = raw._class_name;
  if (cls === 'DPMSolverMultistepScheduler') {
    const checks: Array<[string, unknown, unknown]> = [
      ['algorithm_type', raw.algorithm_type ?? 'dpmsolver++', 'dpmsolver++'],
      ['solver_type', raw.solver_type ?? 'midpoint', 'midpoint'],
      ['prediction_type', raw.prediction_type, 'flow_prediction'],
      ['use_flow_sigmas', raw.use_flow_sigmas, true],
      ['thresholding', raw.thresholding ?? false, false],
    ];
    for (const [k, got, want] of checks) {
      if (got !== want) throw new Error(`${where}: ${k} = ${JSON.stringify(got)} is not supported (Sana's flow DPM-Solver++ needs ${JSON.stringify(want)})`);
    }
  } else if (cls !== undefined && cls !== 'FlowMatchEulerDiscreteScheduler') {
    throw new Error(`${where}: scheduler class ${String(cls)} is not supported (DPMSolverMultistepScheduler or FlowMatchEulerDiscreteScheduler)`);
  }
  const finalType = (raw.final_sigmas_type ?? 'zero') as string;
  if (finalType !== 'zero' && finalType !== 'sigma_min') throw new Error(`${where}: final_sigmas_type ${finalType} is not supported`);
  const cfg: FlowSchedulerConfig = {
    numTrainTimesteps: num('num_train_timesteps', 1000),
    flowShift: num('flow_shift', num('shift', 3.0)),
    solverOrder: num('solver_order', 2),
    lowerOrderFinal: bool('lower_order_final', true),
    eulerAtFinal: bool('euler_at_final', false),
    finalSigmasType: finalType,
  };
  if (cfg.solverOrder !== 1 && cfg.solverOrder !== 2) throw new Error(`${where}: solver_order ${cfg.solverOrder} is not supported (1 or 2)`);
  if (!(cfg.flowShift > 0)) throw new Error(`${where}: flow_shift must be > 0, got ${cfg.flowShift}`);
  return cfg;
}

/** sigmas (N+1, float32, last is the final sigma) and the model timesteps (N). */
export interface Schedule {
  sigmas: Float32Array;
  timesteps: number[];
}

function shiftSigma(s: number, shift: number): number {
  return (shift * s) / (1 + (shift - 1) * s);
}

/**
 * DPM-Solver++ flow schedule in float64 (numpy semantics), sigmas then cast to float32:
 * s = 1 − linspace(1, 1/T, N+1); shifted; reversed; the zero end dropped; final sigma appended.
 * Model timesteps are trunc(σ·T) taken from the float64 sigmas.
 */
export function dpmFlowSchedule(steps: number, cfg: FlowSchedulerConfig = SANA_SCHEDULER_DEFAULTS): Schedule {
  checkSteps(steps);
  const T = cfg.numTrainTimesteps;
  const n = steps + 1;
  const start = 1;
  const stop = 1 / T;
  const step = (stop - start) / (n - 1);
  const alphas = new Float64Array(n);
  for (let i = 0; i < n; i++) alphas[i] = i * step + start; // numpy.linspace: i·step + start
  alphas[n - 1] = stop; // ... with the end point set exactly
  // shifted sigmas, flipped, last (sigma 0 from alpha 1) dropped: N values, descending
  const sig64: number[] = [];
  for (let i = n - 1; i >= 1; i--) sig64.push(shiftSigma(1 - alphas[i], cfg.flowShift));
  const timesteps = sig64.map((s) => Math.trunc(s * T));
  const last = cfg.finalSigmasType === 'zero' ? 0 : sig64[sig64.length - 1];
  const sigmas = Float32Array.from([...sig64, last]);
  return { sigmas, timesteps };
}

/**
 * FlowMatchEulerDiscreteScheduler.set_timesteps: σ_max, σ_min come from the float32 training
 * table (shift applied once), the inference sigmas are linspace(σ_max·T, σ_min·T, N)/T in
 * float64 and shifted AGAIN (diffusers' quirk, kept), cast to float32; timesteps = σ·T as
 * float32 (not truncated); final 0 appended.
 */
export function eulerFlowSchedule(steps: number, cfg: FlowSchedulerConfig = SANA_SCHEDULER_DEFAULTS): Schedule {
  checkSteps(steps);
  const T = cfg.numTrainTimesteps;
  const s = cfg.flowShift;
  // training table in float32: t = 1..T, σ = t/T, shifted in float32 ops
  const shift32 = (x: number): number => fr(fr(s * x) / fr(1 + fr((s - 1) * x)));
  const sigmaMax = shift32(fr(T / T));
  const sigmaMin = shift32(fr(1 / T));
  const a = sigmaMax * T;
  const b = sigmaMin * T;
  const sig: number[] = [];
  if (steps === 1) sig.push(a / T);
  else {
    const st = (b - a) / (steps - 1);
    for (let i = 0; i < steps; i++) sig.push((i === steps - 1 ? b : i * st + a) / T);
  }
  const sig32 = sig.map((x) => fr(shiftSigma(x, s)));
  const timesteps = sig32.map((x) => fr(x * T));
  return { sigmas: Float32Array.from([...sig32, 0]), timesteps };
}

function checkSteps(steps: number): void {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`scheduler: steps must be a positive integer, got ${steps}`);
}

/** ComfyUI's partial-denoise rule on any schedule builder (see the file header). */
export function partialSchedule(build: (n: number) => Schedule, steps: number, denoise: number): Schedule {
  checkSteps(steps);
  if (!(denoise > 0 && denoise <= 1)) throw new Error(`scheduler: denoise must be in (0, 1], got ${denoise}`);
  if (denoise === 1) return build(steps);
  const total = Math.floor(steps / denoise);
  const full = build(total);
  const first = total - steps;
  return { sigmas: full.sigmas.slice(first), timesteps: full.timesteps.slice(first) };
}

/** x = (1 − σ)·latent + σ·noise in float32 (the flow forward process at the first sigma). */
export function noiseLatent(latent: Float32Array, noise: Float32Array, sigma: number): Float32Array {
  if (latent.length !== noise.length) throw new Error(`noiseLatent: latent has ${latent.length} values but noise has ${noise.length}`);
  const s = fr(sigma);
  const a = fr(1 - s);
  const out = new Float32Array(latent.length);
  for (let i = 0; i < out.length; i++) out[i] = fr(fr(a * latent[i]) + fr(s * noise[i]));
  return out;
}

/** A stateful sampler: call `step` once per timestep, in order, with the model's flow output. */
export interface Sampler {
  readonly kind: SamplerKind;
  readonly sigmas: Float32Array;
  /** What the model is evaluated at, step by step. */
  readonly timesteps: readonly number[];
  readonly stepIndex: number;
  /** v (flow prediction) at the current step, x the current latents -> next latents. */
  step(v: Float32Array, x: Float32Array): Float32Array;
}

const logf = (x: number): number => fr(Math.log(x));
const expf = (x: number): number => fr(Math.exp(x));
/** λ(σ) = log(1 − σ) − log(σ) with float32 tensor semantics. */
const lambdaOf = (sigma: number): number => fr(logf(fr(1 - sigma)) - logf(sigma));

class DpmSolverPP2M implements Sampler {
  readonly kind = 'dpmpp_2m' as const;
  stepIndex = 0;
  private prevX0: Float32Array | undefined;
  private lowerOrderNums = 0;

  constructor(readonly sigmas: Float32Array, readonly timesteps: readonly number[], private readonly cfg: FlowSchedulerConfig) {}

  step(v: Float32Array, x: Float32Array): Float32Array {
    const i = this.stepIndex;
    const n = this.timesteps.length;
    if (i >= n) throw new Error(`dpmpp_2m: step ${i + 1} called after the last of ${n} steps`);
    if (v.length !== x.length) throw new Error(`dpmpp_2m: model output has ${v.length} values but the latents ${x.length}`);
    const s0 = this.sigmas[i];
    const t = this.sigmas[i + 1];
    // x0 = x − σ·v (flow prediction -> data prediction)
    const x0 = new Float32Array(x.length);
    for (let k = 0; k < x.length; k++) x0[k] = fr(x[k] - fr(s0 * v[k]));
    const lowerOrderFinal = i === n - 1 && (this.cfg.eulerAtFinal || (this.cfg.lowerOrderFinal && n < 15) || this.cfg.finalSigmasType === 'zero');
    let out: Float32Array;
    if (t === 0) {
      // λ(0) = +∞: the update reduces exactly to x0 (no log(0)).
      out = x0;
    } else {
      const h = fr(lambdaOf(t) - lambdaOf(s0));
      const ratio = fr(t / s0);
      const c = fr(fr(1 - t) * fr(expf(-h) - 1)); // α_t·(e^{−h} − 1)
      out = new Float32Array(x.length);
      const firstOrder = this.cfg.solverOrder === 1 || this.lowerOrderNums < 1 || lowerOrderFinal || !this.prevX0;
      if (firstOrder) {
        for (let k = 0; k < x.length; k++) out[k] = fr(fr(ratio * x[k]) - fr(c * x0[k]));
      } else {
        const s1 = this.sigmas[i - 1];
        const h0 = fr(lambdaOf(s0) - lambdaOf(s1));
        const invR0 = fr(1 / fr(h0 / h));
        const halfC = fr(0.5 * c);
        const m1 = this.prevX0!;
        for (let k = 0; k < x.length; k++) {
          const d1 = fr(invR0 * fr(x0[k] - m1[k]));
          out[k] = fr(fr(fr(ratio * x[k]) - fr(c * x0[k])) - fr(halfC * d1));
        }
      }
    }
    this.prevX0 = x0;
    if (this.lowerOrderNums < this.cfg.solverOrder) this.lowerOrderNums++;
    this.stepIndex++;
    return out;
  }
}

class FlowEuler implements Sampler {
  readonly kind = 'flow_euler' as const;
  stepIndex = 0;
  constructor(readonly sigmas: Float32Array, readonly timesteps: readonly number[]) {}

  step(v: Float32Array, x: Float32Array): Float32Array {
    const i = this.stepIndex;
    if (i >= this.timesteps.length) throw new Error(`flow_euler: step ${i + 1} called after the last of ${this.timesteps.length} steps`);
    if (v.length !== x.length) throw new Error(`flow_euler: model output has ${v.length} values but the latents ${x.length}`);
    const dt = fr(this.sigmas[i + 1] - this.sigmas[i]);
    const out = new Float32Array(x.length);
    for (let k = 0; k < x.length; k++) out[k] = fr(x[k] + fr(dt * v[k]));
    this.stepIndex++;
    return out;
  }
}

export interface SamplerOptions {
  kind?: SamplerKind;
  steps: number;
  /** (0, 1]; below 1 the run starts part-way down the schedule (file header). */
  denoise?: number;
  config?: FlowSchedulerConfig;
}

export function createSampler(opts: SamplerOptions): Sampler {
  const cfg = opts.config ?? SANA_SCHEDULER_DEFAULTS;
  const kind = opts.kind ?? 'dpmpp_2m';
  const denoise = opts.denoise ?? 1;
  if (kind === 'dpmpp_2m') {
    const s = partialSchedule((n) => dpmFlowSchedule(n, cfg), opts.steps, denoise);
    return new DpmSolverPP2M(s.sigmas, s.timesteps, cfg);
  }
  if (kind === 'flow_euler') {
    const s = partialSchedule((n) => eulerFlowSchedule(n, cfg), opts.steps, denoise);
    return new FlowEuler(s.sigmas, s.timesteps);
  }
  throw new Error(`createSampler: unknown sampler kind ${String(kind)} (dpmpp_2m or flow_euler)`);
}
