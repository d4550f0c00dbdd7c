// The sampling loops on a built transformer, beside the schedulers they drive: the flow loop
// (DPM-Solver++ 2M or flow Euler, scheduler.ts; CFG/PAG batch and combination,
// sana_dit/guidance.ts; noise-mask inpainting, inpaint.ts) and Sana-Sprint's SCM loop
// (scm_scheduler.ts). A step callback gets the denoised estimate for previews; an interrupt is a
// throw from it (or from the event-loop turn taken before every step). The nodes
// (nodes/sana/flow_dpm_sampler.ts, scm_sampler.ts) fetch the model and wire progress to these.
import { dirname } from 'node:path';
import type { Backend, DType } from '../../native/api.ts';
import { blendMasked, expandNoiseMask, maskedVelocity } from './inpaint.ts';
import { randn } from './noise.ts';
import { combineGuidance, guidanceLayout, pagScaleAt, type GuidanceMode } from './sana_dit/guidance.ts';
import type { SanaTransformer } from './sana_dit/model.ts';
import { createSampler, noiseLatent, readSchedulerConfig, SANA_SCHEDULER_DEFAULTS, type Sampler } from './scheduler.ts';
import { parseScmSchedulerConfig, readScmSchedulerConfig, sampleScm, scmStartStep, scmTimesteps } from './scm_scheduler.ts';

/** Encoded text rows (a CONDITIONING): (B, L, D) embeddings and their (B, L) mask. */
export interface TextRows {
  embeds: Float32Array;
  mask: Float32Array;
  shape: [batch: number, tokens: number, width: number];
}

/** A latent batch (a LATENT): (B, C, h, w) samples and an optional (Bm, h, w) noise mask. */
export interface LatentBatch {
  samples: Float32Array;
  shape: [batch: number, channels: number, height: number, width: number];
  noiseMask?: { data: Float32Array; shape: [batch: number, height: number, width: number] };
}

export type StepCallback = (step: number, total: number, x0: Float32Array, x: Float32Array) => void;

/** Lets the event loop deliver an interrupt (or a WebSocket frame) between steps. */
const yieldTurn = (): Promise<void> => new Promise<void>((r) => setImmediate(r));

/** (Bc, L, D) conditioning -> rows for a latent batch of B (one prompt is shared by all rows). */
export function rowsFor(c: TextRows, B: number, who: string, what: string): { embeds: Float32Array; mask: Float32Array } {
  const [Bc, L, D] = c.shape;
  if (Bc === B) return { embeds: c.embeds, mask: c.mask };
  if (Bc !== 1) throw new Error(`${who}: ${what} has a batch of ${Bc} prompts but the latent a batch of ${B}; use 1 prompt or ${B}`);
  const embeds = new Float32Array(B * L * D);
  const mask = new Float32Array(B * L);
  for (let b = 0; b < B; b++) {
    embeds.set(c.embeds, b * L * D);
    mask.set(c.mask, b * L);
  }
  return { embeds, mask };
}

/** Concatenates equal-shaped rows along the batch axis. */
function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The sampler's output LATENT: new samples, the input's other fields (as ComfyUI's KSampler copies them). */
export function passOn<L extends LatentBatch>(latent: L, samples: Float32Array): L {
  return { ...latent, samples, shape: [...latent.shape] };
}

// ------------------------------------------------------------------------------------------------
// Flow sampling (Sana, SANA 1.5)

export const SAMPLERS = ['dpmpp_2m', 'flow_euler'] as const;
export type SamplerName = (typeof SAMPLERS)[number];

export interface SampleOptions {
  /** Up to 2^64 - 1; beyond 2^53 validation hands it over as an exact bigint (torch's manual_seed takes a uint64). */
  seed: number | bigint;
  steps: number;
  cfg: number;
  /** <= 0: the checkpoint's flow_shift. */
  flowShift: number;
  sampler: SamplerName;
  denoise: number;
}

/** What the loop needs to know about the transformer besides its weights (a SanaModelRef has it). */
export interface SamplingModel {
  dtype: DType;
  /** The checkpoint's flow_shift (used when the options' is ≤ 0). */
  flowShift: number;
  /** The checkpoint's scheduler_config.json, when it has one. */
  schedulerConfig?: string;
  /** PAG: block indices taking identity attention, and the guidance scale. */
  pag?: { scale: number; layers: number[] };
}

/** Everything fixed before the first step: schedule, guidance batch layout, text rows, start latent. */
export interface SamplingPlan {
  sampler: Sampler;
  mode: GuidanceMode;
  layout: ReturnType<typeof guidanceLayout>;
  /** (rows, L, D) text rows in the layout's order, and their (rows, L) mask. */
  embeds: Float32Array;
  mask: Float32Array;
  rows: number;
  L: number;
  D: number;
  /** (B, C, h, w) start of the loop. */
  x: Float32Array;
  /** (B, C, h, w) the seed's noise (inpainting re-noises the kept region with it). */
  noise: Float32Array;
}

/** Refuses inputs the transformer (`name`) cannot take, before anything is loaded or planned. */
export function checkFlowInputs(name: string, latentChannels: number, captionChannels: number, positive: TextRows, negative: TextRows, latent: LatentBatch, who: string): void {
  const C = latent.shape[1];
  if (C !== latentChannels) throw new Error(`${who}: the latent has ${C} channels but ${name} expects ${latentChannels}`);
  for (const [what, c] of [['positive', positive], ['negative', negative]] as const) {
    if (c.shape[2] !== captionChannels) {
      throw new Error(
        `${who}: ${what} conditioning is ${c.shape[2]} wide but ${name} takes text embeddings of width ${captionChannels}; encode with the text encoder that belongs to this checkpoint`,
      );
    }
  }
  if (positive.shape[1] !== negative.shape[1]) {
    throw new Error(`${who}: positive has ${positive.shape[1]} tokens but negative ${negative.shape[1]}; encode both with the same max_sequence_length`);
  }
}

/** A guidance-embedding (Sprint) transformer was distilled for SCM sampling: the flow schedules
 *  and a CFG batch would run without error and give noise. */
export function refuseSprint(guidanceEmbeds: boolean, name: string, who: string): void {
  if (guidanceEmbeds) {
    throw new Error(`${who} input model: ${name} is a Sana-Sprint checkpoint (guidance-embedding transformer), which needs SCM sampling; use the SanaSprintSampler node (or KSampler with sampler_name "scm")`);
  }
}

export function planSampling(model: SamplingModel, positive: TextRows, negative: TextRows, latent: LatentBatch, o: SampleOptions, who: string): SamplingPlan {
  const B = latent.shape[0];
  const base = model.schedulerConfig ? readSchedulerConfig(model.schedulerConfig) : SANA_SCHEDULER_DEFAULTS;
  const config = { ...base, flowShift: o.flowShift > 0 ? o.flowShift : model.flowShift };
  const sampler = createSampler({ kind: o.sampler, steps: o.steps, denoise: o.denoise, config });

  const useCfg = o.cfg > 1;
  const pag = model.pag;
  const mode = useCfg ? (pag ? 'cfg+pag' : 'cfg') : pag ? 'pag' : 'none';
  const layout = guidanceLayout(mode, B);
  const pos = rowsFor(positive, B, who, 'positive');
  const neg = rowsFor(negative, B, who, 'negative');
  // Batch layout per guidance mode, e.g. cfg+pag: [uncond | cond | cond(perturbed)] rows.
  const embeds = concat(layout.text.map((t) => (t === 'cond' ? pos.embeds : neg.embeds))); // (rows, L, D)
  const mask = concat(layout.text.map((t) => (t === 'cond' ? pos.mask : neg.mask))); // (rows, L)

  // diffusers starts text-to-image from pure noise (x = ε, not σ0·ε); a partial denoise starts
  // from the input latent pushed to the first sigma of the shortened schedule.
  const noise = randn(BigInt(o.seed), latent.shape); // (B, C, h, w)
  const x = o.denoise >= 1 ? noise : noiseLatent(latent.samples, noise, sampler.sigmas[0]);
  return { sampler, mode, layout, embeds, mask, rows: layout.copies * B, L: positive.shape[1], D: positive.shape[2], x, noise };
}

/** Runs a plan's steps on `net`; returns the final latent (the input's other fields kept). */
export async function runPlan<L extends LatentBatch>(net: SanaTransformer, backend: Backend, model: SamplingModel, plan: SamplingPlan, latent: L, o: SampleOptions, onStep: StepCallback): Promise<L> {
  const [, C, h, w] = latent.shape;
  const { sampler, mode, layout, rows, L, D } = plan;
  const pag = model.pag;
  let x = plan.x;
  const total = sampler.timesteps.length;
  const keepMask = latent.noiseMask ? expandNoiseMask(latent.noiseMask, latent.shape, 'FlowDPMSampler') : undefined; // (B, C, h, w)
  // The text side is the same at every step: uploaded once in the model's dtype (the rounding
  // diffusers' `.to(dtype)` applies), then projected once into every block's cross-attention k|v.
  const text = backend.scope(() => net.prepareText(backend.fromArray(plan.embeds, [rows, L, D], model.dtype), plan.mask));
  try {
    for (let i = 0; i < total; i++) {
      await yieldTurn();
      const t = sampler.timesteps[i];
      const sigma = sampler.sigmas[i];
      if (keepMask) x = blendMasked(x, noiseLatent(latent.samples, plan.noise, sigma), keepMask);
      const xIn = concat(Array.from({ length: layout.copies }, () => x)); // (rows, C, h, w)
      const out = net.step({ data: xIn, shape: [rows, C, h, w] }, [t], text, {
        pagLayers: pag ? new Set(pag.layers) : undefined,
        pagSlice: pag ? layout.pagSlice : undefined,
      }); // (rows, C, h, w) f32
      let raw: Float32Array;
      try {
        raw = out.toFloat32();
      } finally {
        out.dispose();
      }
      let v = combineGuidance(raw, mode, { cfg: o.cfg, pag: pag ? pagScaleAt(pag.scale, 0, t) : 0 }); // (B, C, h, w)
      if (keepMask) v = maskedVelocity(v, x, latent.samples, sigma, keepMask);
      const xBefore = x;
      x = sampler.step(v, x);
      // The denoised estimate x0 = x_σ − σ·v drives the preview (it looks like the final image early).
      const x0 = new Float32Array(v.length);
      for (let k = 0; k < v.length; k++) x0[k] = xBefore[k] - sigma * v[k];
      onStep(i + 1, total, x0, x);
    }
  } finally {
    text.dispose();
  }
  // The last step lands on σ = 0, where the kept part is the input latent itself; restoring it
  // makes that exact rather than up to the solver's float32 rounding.
  if (keepMask) x = blendMasked(x, latent.samples, keepMask);
  return passOn(latent, x);
}

/**
 * The whole flow loop on a transformer already built (what the FlowDPMSampler node runs inside
 * the model cache; benches and tests hold a model themselves).
 */
export async function sampleWithTransformer<L extends LatentBatch>(
  net: SanaTransformer,
  backend: Backend,
  model: SamplingModel,
  positive: TextRows,
  negative: TextRows,
  latent: L,
  o: SampleOptions,
  onStep: StepCallback,
  who = 'FlowDPMSampler',
): Promise<L> {
  refuseSprint(net.config.guidanceEmbeds, 'the transformer', who);
  checkFlowInputs(`the transformer (${net.config.numLayers} blocks)`, net.config.inChannels, net.config.captionChannels, positive, negative, latent, who);
  if (o.denoise <= 0) return passOn(latent, latent.samples.slice());
  const plan = planSampling(model, positive, negative, latent, o, who);
  return runPlan(net, backend, model, plan, latent, o, onStep);
}

// ------------------------------------------------------------------------------------------------
// SCM sampling (Sana-Sprint)

/** SanaSprintPipeline.__call__'s defaults. */
export const SPRINT_DEFAULTS = { guidance: 4.5, maxTimesteps: 1.5708, intermediateTimesteps: 1.3 } as const;

export interface SprintOptions {
  seed: number | bigint;
  steps: number;
  /** guidance_scale; the model gets it × guidance_embeds_scale. */
  guidance: number;
  maxTimesteps: number;
  /** The middle time of a 2-step schedule; null (or any other step count) = evenly spaced. */
  intermediateTimesteps: number | null;
  /** 1 = text-to-image from noise; below 1 = the img2img pipeline's strength on the input latent. */
  denoise: number;
}

/** What the loop needs besides the weights (a SanaModelRef has it; benches build it by hand). */
export type SprintModel = Pick<SamplingModel, 'dtype' | 'schedulerConfig'>;

export function refuseNonSprint(guidanceEmbeds: boolean, name: string, who: string): void {
  if (!guidanceEmbeds) {
    throw new Error(`${who} input model: ${name} is not a Sana-Sprint checkpoint (its transformer has no guidance_embeds); use FlowDPMSampler (or KSampler with euler / dpmpp_2m) for Sana and SANA 1.5`);
  }
}

export function checkSprintInputs(latentChannels: number, captionChannels: number, name: string, positive: TextRows, latent: LatentBatch, who: string): void {
  // Neither Sprint pipeline inpaints; ignoring the mask would silently repaint the kept region.
  if (latent.noiseMask) throw new Error(`${who} input latent: it carries a noise mask (inpainting), which Sana-Sprint sampling does not support; use FlowDPMSampler with a Sana checkpoint`);
  if (latent.shape[1] !== latentChannels) throw new Error(`${who}: the latent has ${latent.shape[1]} channels but ${name} expects ${latentChannels}`);
  if (positive.shape[2] !== captionChannels) {
    throw new Error(`${who}: positive conditioning is ${positive.shape[2]} wide but ${name} takes text embeddings of width ${captionChannels}; encode with the text encoder that belongs to this checkpoint`);
  }
}

/** The SCM scheduler config of the checkpoint (SCMScheduler's own defaults, which are what
 *  Sprint ships, without a scheduler folder). */
export function sprintSchedulerFor(model: SprintModel): ReturnType<typeof parseScmSchedulerConfig> {
  return model.schedulerConfig ? readScmSchedulerConfig(dirname(model.schedulerConfig)) : parseScmSchedulerConfig({});
}

/** Runs the SCM steps on `net` (inputs checked by the caller). */
export async function runSprint<L extends LatentBatch>(net: SanaTransformer, backend: Backend, model: SprintModel, positive: TextRows, latent: L, o: SprintOptions, onStep: StepCallback, who: string): Promise<L> {
  const cfg = sprintSchedulerFor(model);
  const [B, C, h, w] = latent.shape;
  const mid = o.steps === 2 ? o.intermediateTimesteps : null;
  // Validates the schedule (steps, times) before any forward.
  scmTimesteps(o.steps, cfg, { maxTimesteps: o.maxTimesteps, intermediateTimesteps: mid });
  const img2img = o.denoise < 1;
  const start = img2img ? scmStartStep(o.steps, o.denoise) : 0;
  const total = o.steps - start;
  const { embeds, mask } = rowsFor(positive, B, who, 'positive');
  const [, L, D] = positive.shape;
  // The text side is the same at every step: uploaded and projected into k|v once.
  const text = backend.scope(() => net.prepareText(backend.fromArray(embeds, [B, L, D], model.dtype), mask));
  const sd = Math.fround(cfg.sigmaData);
  try {
    const res = await sampleScm(
      async (input, s, g) => {
        await yieldTurn();
        const out = net.step({ data: input, shape: [B, C, h, w] }, [s], text, { guidance: [g] });
        try {
          return out.toFloat32();
        } finally {
          out.dispose();
        }
      },
      cfg,
      {
        shape: [B, C, h, w], steps: o.steps, seed: o.seed, guidanceScale: o.guidance, guidanceEmbedsScale: net.config.guidanceEmbedsScale,
        maxTimesteps: o.maxTimesteps, intermediateTimesteps: mid,
        ...(img2img ? { imageLatents: latent.samples, startStep: start } : {}),
      },
      (r) => {
        // The scheduler works on latents × σ_d; previews and the result are in the latent's scale.
        const x0 = r.denoised.map((v) => v / sd);
        onStep(r.step - start + 1, total, x0, r.latentsOut);
      },
    );
    // The input's other fields (target size) travel on, as ComfyUI's KSampler copies them.
    return { ...latent, samples: res.latents, shape: [B, C, h, w] };
  } finally {
    text.dispose();
  }
}

/** The SCM loop on a transformer already built (benches with random weights). */
export async function sprintSampleWithTransformer<L extends LatentBatch>(
  net: SanaTransformer, backend: Backend, model: SprintModel, positive: TextRows, latent: L, o: SprintOptions, onStep: StepCallback, who = 'SanaSprintSampler',
): Promise<L> {
  refuseNonSprint(net.config.guidanceEmbeds, 'the transformer', who);
  checkSprintInputs(net.config.inChannels, net.config.captionChannels, 'the transformer', positive, latent, who);
  return runSprint(net, backend, model, positive, latent, o, onStep, who);
}
