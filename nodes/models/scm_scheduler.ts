// Sana-Sprint sampling: diffusers' SCMScheduler (sCM / TrigFlow, few steps) and the input/output
// scaling SanaSprintPipeline wraps around the transformer, plus the whole loop as one function.
//
// Numerics follow torch's float32 CPU ops: every scalar (timesteps, their sin/cos, the SCM time s)
// is a float32 0-d tensor there, and every elementwise op rounds to float32; `f32` below marks
// each such rounding. Fresh noise between steps comes from one seeded CPU generator in
// torch.randn order (noise.ts), so a seed means the same images as diffusers.
//
// TrigFlow: x_t = cos(t)·x0 + sin(t)·noise, t ∈ [0, π/2]; the transformer sees the flow time
// s = sin t / (cos t + sin t) ∈ [0, 1] and the latent rescaled to unit variance.
import { join } from 'node:path';
import { MT19937, randnFrom } from './noise.ts';
import { readJsonConfig } from './weights.ts';

const f32 = Math.fround;

// ------------------------------------------------------------------------------------------------
// Config

export interface ScmSchedulerConfig {
  numTrainTimesteps: number;
  predictionType: 'trigflow';
  /** Standard deviation of the data (and of the noise added between steps): 0.5. */
  sigmaData: number;
}

/** Parses a diffusers SCMScheduler scheduler_config.json. */
export function parseScmSchedulerConfig(raw: Record<string, unknown>, file = 'scheduler/scheduler_config.json'): ScmSchedulerConfig {
  if (raw._class_name !== undefined && raw._class_name !== 'SCMScheduler') {
    throw new Error(`${file}: _class_name is ${JSON.stringify(raw._class_name)}, expected "SCMScheduler"`);
  }
  const pt = raw.prediction_type ?? 'trigflow';
  if (pt !== 'trigflow') throw new Error(`${file}: prediction_type ${JSON.stringify(pt)} is not supported (SCMScheduler only knows "trigflow")`);
  const num = (key: string, d: number): number => {
    const v = raw[key] ?? d;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new Error(`${file}: "${key}" must be a positive number (got ${JSON.stringify(raw[key])})`);
    return v;
  };
  return { numTrainTimesteps: num('num_train_timesteps', 1000), predictionType: 'trigflow', sigmaData: num('sigma_data', 0.5) };
}

export function readScmSchedulerConfig(dir: string): ScmSchedulerConfig {
  return parseScmSchedulerConfig(readJsonConfig(dir, 'scheduler_config.json') as Record<string, unknown>, join(dir, 'scheduler_config.json'));
}

// ------------------------------------------------------------------------------------------------
// Schedule

export interface ScmTimestepOptions {
  /** Start time (default 1.5708 ≈ π/2: pure noise). */
  maxTimesteps?: number;
  /** The middle time of a 2-step schedule (default 1.3, as SanaSprintPipeline); null for the
   *  evenly spaced schedule. Only valid with 2 steps. */
  intermediateTimesteps?: number | null;
  /** Explicit N + 1 times instead (then maxTimesteps must be absent). */
  timesteps?: readonly number[];
}

/** torch.linspace(start, end, n) in float32 on the CPU: a float32 step, the first half counted
 *  from the start and the second half back from the end. */
function linspaceF32(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (n === 1) { out[0] = start; return out; }
  const a = f32(start), b = f32(end);
  const step = f32(f32(b - a) / (n - 1));
  const half = Math.trunc(n / 2);
  for (let i = 0; i < n; i++) out[i] = i < half ? f32(a + f32(step * i)) : f32(b - f32(step * (n - i - 1)));
  return out;
}

/** SCMScheduler.set_timesteps: the N + 1 float32 times (the last one 0). */
export function scmTimesteps(steps: number, cfg: ScmSchedulerConfig, o: ScmTimestepOptions = {}): Float32Array {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`SCMScheduler: steps must be a positive integer (got ${steps})`);
  if (steps > cfg.numTrainTimesteps) throw new Error(`SCMScheduler: ${steps} steps exceed num_train_timesteps ${cfg.numTrainTimesteps}`);
  if (o.timesteps !== undefined) {
    if (o.maxTimesteps !== undefined) throw new Error('SCMScheduler: give either explicit timesteps or maxTimesteps, not both');
    if (o.timesteps.length !== steps + 1) throw new Error(`SCMScheduler: ${o.timesteps.length} explicit timesteps for ${steps} steps (need steps + 1)`);
    return Float32Array.from(o.timesteps);
  }
  const max = o.maxTimesteps ?? 1.5708;
  const mid = o.intermediateTimesteps === undefined ? (steps === 2 ? 1.3 : null) : o.intermediateTimesteps;
  if (mid !== null) {
    if (steps !== 2) throw new Error(`SCMScheduler: intermediate timesteps need exactly 2 steps (got ${steps})`);
    return Float32Array.from([max, mid, 0]);
  }
  return linspaceF32(max, 0, steps + 1);
}

// ------------------------------------------------------------------------------------------------
// Scheduler

export interface ScmStepResult {
  /** The latent at the next time: cos(t')·x0 + sin(t')·σ_d·noise (x0 itself when t' = 0). */
  prevSample: Float32Array;
  /** The denoised estimate x0 = cos(t)·x − sin(t)·v. */
  denoised: Float32Array;
}

/**
 * SCMScheduler (trigflow). `step` advances one entry of `timesteps` per call, drawing the fresh
 * noise from `generator` at every step — also at the last one, where sin(0) = 0 cancels it — so
 * the generator's stream stays in step with diffusers'.
 */
export class SCMScheduler {
  readonly config: ScmSchedulerConfig;
  timesteps: Float32Array = new Float32Array(0);
  private index = 0;

  constructor(config: ScmSchedulerConfig) {
    this.config = config;
  }

  setTimesteps(steps: number, o: ScmTimestepOptions = {}): void {
    this.timesteps = scmTimesteps(steps, this.config, o);
    this.index = 0;
  }

  get stepIndex(): number { return this.index; }

  /** Starts the next step() at timesteps[i] (diffusers' set_begin_index: image-to-image). */
  setBeginIndex(i: number): void {
    const n = this.timesteps.length - 1;
    if (!Number.isInteger(i) || i < 0 || i >= n) throw new Error(`SCMScheduler: begin index ${i} outside the ${n} steps`);
    this.index = i;
  }

  /** `noise`: the seeded CPU generator to draw from, or the unit-variance noise itself. */
  step(modelOutput: Float32Array, sample: Float32Array, noise: MT19937 | Float32Array): ScmStepResult {
    const n = this.timesteps.length - 1;
    if (n < 1) throw new Error('SCMScheduler: step() before setTimesteps()');
    if (this.index >= n) throw new Error(`SCMScheduler: all ${n} steps already taken`);
    if (modelOutput.length !== sample.length) throw new Error(`SCMScheduler: model output has ${modelOutput.length} values, sample ${sample.length}`);
    const s = this.timesteps[this.index]!, t = this.timesteps[this.index + 1]!;
    const cs = f32(Math.cos(s)), ss = f32(Math.sin(s));
    const denoised = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) denoised[i] = f32(f32(cs * sample[i]!) - f32(ss * modelOutput[i]!));
    // randn_tensor(model_output.shape, generator): one torch.randn over the whole batch.
    const z = noise instanceof Float32Array ? noise : randnFrom(noise, [sample.length]);
    if (z.length !== sample.length) throw new Error(`SCMScheduler: ${z.length} noise values for a sample of ${sample.length}`);
    const sd = f32(this.config.sigmaData), ct = f32(Math.cos(t)), st = f32(Math.sin(t));
    const prev = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) prev[i] = f32(f32(ct * denoised[i]!) + f32(st * f32(z[i]! * sd)));
    this.index++;
    return { prevSample: prev, denoised };
  }
}

// ------------------------------------------------------------------------------------------------
// SanaSprintPipeline's scaling around the transformer

/** The flow time the transformer is conditioned on: s = sin t / (cos t + sin t) (float32). */
export function scmFlowTime(t: number): number {
  const st = f32(Math.sin(f32(t))), ct = f32(Math.cos(f32(t)));
  return f32(st / f32(ct + st));
}

/** sqrt(s² + (1 − s)²), float32. */
function scmNorm(s: number): number {
  const a = f32(s * s), om = f32(1 - s);
  return f32(Math.sqrt(f32(a + f32(om * om))));
}

/**
 * The transformer input for latents at TrigFlow time t: (latents / σ_d) · sqrt(s² + (1 − s)²),
 * and s itself (the timestep the transformer gets).
 */
export function scmModelInput(latents: Float32Array, t: number, sigmaData: number): { input: Float32Array; s: number } {
  const s = scmFlowTime(t), k = scmNorm(s), sd = f32(sigmaData);
  const input = new Float32Array(latents.length);
  for (let i = 0; i < latents.length; i++) input[i] = f32(f32(latents[i]! / sd) * k);
  return { input, s };
}

/**
 * The scheduler's model output from the transformer's flow prediction `out` on `input` at flow
 * time s: σ_d · ((1 − 2s)·input + (1 − 2s + 2s²)·out) / sqrt(s² + (1 − s)²).
 */
export function scmModelOutput(out: Float32Array, input: Float32Array, s: number, sigmaData: number): Float32Array {
  if (out.length !== input.length) throw new Error(`scmModelOutput: ${out.length} outputs for ${input.length} inputs`);
  const a = f32(1 - f32(2 * s));
  const b = f32(a + f32(2 * f32(s * s)));
  const k = scmNorm(s), sd = f32(sigmaData);
  const v = new Float32Array(out.length);
  for (let i = 0; i < out.length; i++) v[i] = f32(f32(f32(f32(a * input[i]!) + f32(b * out[i]!)) / k) * sd);
  return v;
}

/**
 * SanaSprintImg2ImgPipeline.get_timesteps: with strength in (0, 1], the index of the first of the
 * `steps` to run, int(max(steps − min(steps·strength, steps), 0)). At least one step must remain.
 */
export function scmStartStep(steps: number, strength: number): number {
  if (!(strength > 0 && strength <= 1)) throw new Error(`SCM image-to-image: strength must be in (0, 1] (got ${strength})`);
  const init = Math.min(steps * strength, steps);
  const start = Math.trunc(Math.max(steps - init, 0));
  if (steps - start < 1) throw new Error(`SCM image-to-image: strength ${strength} leaves no step of ${steps}; raise the strength or the steps`);
  return start;
}

/** SanaSprintPipeline's guidance argument: float32(guidance_scale) · guidance_embeds_scale. */
export function sprintGuidance(guidanceScale: number, guidanceEmbedsScale: number): number {
  return f32(f32(guidanceScale) * f32(guidanceEmbedsScale));
}

// ------------------------------------------------------------------------------------------------
// The loop

export interface ScmSampleOptions {
  /** Latent shape (B, C, h, w). */
  shape: readonly number[];
  steps: number;
  /** Seed of the CPU generator the pipeline passes (noise between steps; the initial latent too
   *  when `latents` is absent). */
  seed: bigint | number;
  /** Initial latent (unit variance, before the σ_d scaling); drawn from the generator when absent,
   *  as prepare_latents does. */
  latents?: Float32Array;
  /** guidance_scale (Sprint's default 4.5); multiplied by guidanceEmbedsScale for the model. */
  guidanceScale: number;
  guidanceEmbedsScale: number;
  maxTimesteps?: number;
  intermediateTimesteps?: number | null;
  /**
   * Image-to-image (SanaSprintImg2ImgPipeline): the diffusion latent of the image (VAE latent ×
   * scaling factor, before σ_d). The start is then cos t·(image·σ_d) + sin t·(noise·σ_d) at
   * t = timesteps[startStep], with the noise the first draw of the generator.
   */
  imageLatents?: Float32Array;
  /** The first step to run (the img2img pipeline's t_start; see `scmStartStep`). Default 0. */
  startStep?: number;
  /** Replaces the generator's noise at step i when it returns an array (unit variance): for
   *  replaying a recorded run whose noise did not come from `seed`. */
  noiseAt?: (step: number) => Float32Array | undefined;
}

export interface ScmStepRecord {
  step: number;
  /** TrigFlow time of this step and the flow time s the transformer saw. */
  t: number;
  s: number;
  transformerInput: Float32Array;
  transformerOutput: Float32Array;
  modelOutput: Float32Array;
  sample: Float32Array;
  latentsOut: Float32Array;
  denoised: Float32Array;
}

/**
 * SanaSprintPipeline's denoising loop around any velocity function (the caller wraps the
 * transformer with its text conditioning): `velocity(input, s, guidance)` gets the scaled latent
 * (B, C, h, w) flattened, the flow time and the model's guidance value, and returns the
 * transformer output. Returns the final latent (denoised / σ_d, before the VAE's scaling factor)
 * and the schedule.
 */
export async function sampleScm(
  velocity: (input: Float32Array, s: number, guidance: number) => Float32Array | Promise<Float32Array>,
  cfg: ScmSchedulerConfig,
  o: ScmSampleOptions,
  onStep?: (r: ScmStepRecord) => void,
): Promise<{ latents: Float32Array; timesteps: Float32Array }> {
  const n = o.shape.reduce((a, b) => a * b, 1);
  const gen = new MT19937(o.seed);
  const init = o.latents ?? randnFrom(gen, o.shape);
  if (init.length !== n) throw new Error(`sampleScm: initial latent has ${init.length} values, shape ${JSON.stringify(o.shape)} needs ${n}`);
  const sched = new SCMScheduler(cfg);
  sched.setTimesteps(o.steps, {
    ...(o.maxTimesteps !== undefined ? { maxTimesteps: o.maxTimesteps } : {}),
    ...(o.intermediateTimesteps !== undefined ? { intermediateTimesteps: o.intermediateTimesteps } : {}),
  });
  const start = o.startStep ?? 0;
  if (start !== 0) sched.setBeginIndex(start);
  const sd = f32(cfg.sigmaData);
  const guidance = sprintGuidance(o.guidanceScale, o.guidanceEmbedsScale);
  let x: Float32Array;
  if (o.imageLatents) {
    if (o.imageLatents.length !== n) throw new Error(`sampleScm: image latent has ${o.imageLatents.length} values, shape ${JSON.stringify(o.shape)} needs ${n}`);
    const t0 = f32(sched.timesteps[start]!), c = f32(Math.cos(t0)), s = f32(Math.sin(t0));
    const img = o.imageLatents;
    x = init.map((z, i) => f32(f32(c * f32(img[i]! * sd)) + f32(s * f32(z * sd))));
  } else {
    x = init.map((v) => f32(v * sd));
  }
  let denoised: Float32Array = x;
  for (let i = start; i < o.steps; i++) {
    const t = sched.timesteps[i]!;
    const { input, s } = scmModelInput(x, t, cfg.sigmaData);
    const out = await velocity(input, s, guidance);
    const v = scmModelOutput(out, input, s, cfg.sigmaData);
    const r = sched.step(v, x, o.noiseAt?.(i) ?? gen);
    onStep?.({ step: i, t, s, transformerInput: input, transformerOutput: out, modelOutput: v, sample: x, latentsOut: r.prevSample, denoised: r.denoised });
    x = r.prevSample;
    denoised = r.denoised;
  }
  return { latents: denoised.map((v) => f32(v / sd)), timesteps: sched.timesteps };
}
