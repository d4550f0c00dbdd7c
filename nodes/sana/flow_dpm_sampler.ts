// FlowDPMSampler: the denoising loop. Sampler (DPM-Solver++ 2M or flow Euler, nodes/models/
// scheduler.ts), guidance (CFG and the PAG patch the model reference carries, combined by
// nodes/models/sana_dit.ts) and the network are separate pieces wired together here.
import { defineNode, type NodeContext } from '../../engine/index.ts';
import type { Backend } from '../../native/api.ts';
import type { Conditioning, Latent, SanaModelRef } from './types.ts';
import { previewerFor } from './preview.ts';
import { withTransformer } from './runtime.ts';

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

/** (Bc, L, D) conditioning -> rows for a latent batch of B (one prompt is shared by all rows). */
export function rowsFor(c: Conditioning, B: number, who: string, what: string): { embeds: Float32Array; mask: Float32Array } {
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

export type StepCallback = (step: number, total: number, x0: Float32Array, x: Float32Array) => void;

/** What the loop needs to know about the transformer besides its weights (a SanaModelRef has it). */
export type SamplingModel = Pick<SanaModelRef, 'dtype' | 'flowShift' | 'schedulerConfig' | 'pag'>;

type Transformer = import('../models/sana_dit.ts').SanaTransformer;

/** Everything fixed before the first step: schedule, guidance batch layout, text rows, start latent. */
interface SamplingPlan {
  sampler: import('../models/scheduler.ts').Sampler;
  mode: import('../models/sana_dit.ts').GuidanceMode;
  layout: ReturnType<typeof import('../models/sana_dit.ts').guidanceLayout>;
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

function checkInputs(name: string, latentChannels: number, captionChannels: number, positive: Conditioning, negative: Conditioning, latent: Latent, who: string): void {
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

async function planSampling(model: SamplingModel, positive: Conditioning, negative: Conditioning, latent: Latent, o: SampleOptions, who: string): Promise<SamplingPlan> {
  const B = latent.shape[0];
  const { createSampler, noiseLatent, readSchedulerConfig, SANA_SCHEDULER_DEFAULTS } = await import('../models/scheduler.ts');
  const { guidanceLayout } = await import('../models/sana_dit.ts');
  const { randn } = await import('../models/noise.ts');

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

async function runPlan(net: Transformer, backend: Backend, model: SamplingModel, plan: SamplingPlan, latent: Latent, o: SampleOptions, onStep: StepCallback): Promise<Latent> {
  const [B, C, h, w] = latent.shape;
  const { combineGuidance, pagScaleAt } = await import('../models/sana_dit.ts');
  const { sampler, mode, layout, rows, L, D } = plan;
  const pag = model.pag;
  let x = plan.x;
  const total = sampler.timesteps.length;
  // Inpainting (a LATENT with a noise mask): nodes/models/inpaint.ts.
  const inpaint = latent.noiseMask ? await import('../models/inpaint.ts') : undefined;
  const keepMask = inpaint && latent.noiseMask ? inpaint.expandNoiseMask(latent.noiseMask, latent.shape, 'FlowDPMSampler') : undefined; // (B, C, h, w)
  const { noiseLatent } = await import('../models/scheduler.ts');
  // The text side is the same at every step: upload it once, in the model's dtype (the
  // rounding diffusers' `.to(dtype)` applies).
  const text = backend.fromArray(plan.embeds, [rows, L, D], model.dtype); // (rows, L, D)
  try {
    for (let i = 0; i < total; i++) {
      // Let the event loop deliver an interrupt (or a WebSocket frame) between steps.
      await new Promise<void>((r) => setImmediate(r));
      const t = sampler.timesteps[i];
      const sigma = sampler.sigmas[i];
      if (inpaint && keepMask) x = inpaint.blendMasked(x, noiseLatent(latent.samples, plan.noise, sigma), keepMask);
      const xIn = concat(Array.from({ length: layout.copies }, () => x)); // (rows, C, h, w)
      const out = net.forward({ data: xIn, shape: [rows, C, h, w] }, [t], text, plan.mask, {
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
      if (inpaint && keepMask) v = inpaint.maskedVelocity(v, x, latent.samples, sigma, keepMask);
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
  if (inpaint && keepMask) x = inpaint.blendMasked(x, latent.samples, keepMask);
  return passOn(latent, x);
}

/** The sampler's output LATENT: new samples, the input's other fields (as ComfyUI's KSampler copies them). */
function passOn(latent: Latent, samples: Float32Array): Latent {
  return { ...latent, samples, shape: [...latent.shape] };
}

/** A guidance-embedding (Sprint) transformer was distilled for SCM sampling: the flow schedules
 *  and a CFG batch would run without error and give noise. */
function refuseSprint(guidanceEmbeds: boolean, name: string, who: string): void {
  if (guidanceEmbeds) {
    throw new Error(`${who} input model: ${name} is a Sana-Sprint checkpoint (guidance-embedding transformer), which needs SCM sampling; use the SanaSprintSampler node (or KSampler with sampler_name "scm")`);
  }
}

/**
 * The whole loop on a transformer already built (what `sample` runs inside the model cache):
 * for callers that hold a model themselves, e.g. bench/pipeline.bench.ts with random weights.
 */
export async function sampleWithTransformer(
  net: Transformer,
  backend: Backend,
  model: SamplingModel,
  positive: Conditioning,
  negative: Conditioning,
  latent: Latent,
  o: SampleOptions,
  onStep: StepCallback,
  who = 'FlowDPMSampler',
): Promise<Latent> {
  refuseSprint(net.config.guidanceEmbeds, 'the transformer', who);
  checkInputs(`the transformer (${net.config.numLayers} blocks)`, net.config.inChannels, net.config.captionChannels, positive, negative, latent, who);
  if (o.denoise <= 0) return passOn(latent, latent.samples.slice());
  const plan = await planSampling(model, positive, negative, latent, o, who);
  return runPlan(net, backend, model, plan, latent, o, onStep);
}

/** Runs the whole loop; returns the final latents with the input latent's shape. */
export async function sample(
  model: SanaModelRef,
  positive: Conditioning,
  negative: Conditioning,
  latent: Latent,
  o: SampleOptions,
  onStep: StepCallback,
  who = 'FlowDPMSampler',
): Promise<Latent> {
  refuseSprint(model.guidanceEmbeds === true, model.name, who);
  checkInputs(model.name, model.latentChannels, model.captionChannels, positive, negative, latent, who);
  // denoise 0 (ComfyUI: an empty schedule) returns the input latent untouched, without a load.
  if (o.denoise <= 0) return passOn(latent, latent.samples.slice());
  // Planned before the weights are fetched: a bad scheduler config or option fails without a load.
  const plan = await planSampling(model, positive, negative, latent, o, who);
  return withTransformer(model, (net, backend) => runPlan(net, backend, model, plan, latent, o, onStep));
}

/** ctx.progress per step, with a preview of the denoised estimate when one can be made. */
export async function progressReporter(ctx: NodeContext, model: SanaModelRef, shape: readonly number[]): Promise<StepCallback> {
  const preview = await previewerFor(model);
  return (step, total, x0) => {
    // progress() throws when the job was interrupted, which stops the loop between steps.
    ctx.progress(step, total, preview?.(x0, shape));
  };
}

export const FlowDPMSampler = defineNode({
  name: 'FlowDPMSampler',
  displayName: 'Flow DPM Sampler (Sana)',
  category: 'sana/sampling',
  description:
    'Denoises a latent with the Sana transformer: DPM-Solver++ 2M (diffusers SanaPipeline) or flow Euler, classifier-free guidance, and PAG when the model carries the patch.',
  inputs: {
    required: {
      model: { type: 'SANA_MODEL' },
      positive: { type: 'CONDITIONING' },
      negative: { type: 'CONDITIONING' },
      latent: { type: 'LATENT' },
      seed: { type: 'INT', default: 0, min: 0, max: 0xffffffffffffffffn, controlAfterGenerate: true, tooltip: 'torch.randn-compatible CPU noise seed.' },
      steps: { type: 'INT', default: 20, min: 1, max: 1000 },
      cfg: { type: 'FLOAT', default: 4.5, min: 0, max: 100, step: 0.1, round: 0.01, tooltip: 'Classifier-free guidance scale; <= 1 turns CFG off.' },
      flow_shift: {
        type: 'FLOAT',
        default: 0,
        min: 0,
        max: 100,
        step: 0.1,
        round: 0.01,
        tooltip: "Flow-matching schedule shift; 0 = the checkpoint's scheduler_config.json (3.0 for 512/1024/2K, 6.0 for 4K).",
      },
      sampler: { type: 'COMBO', values: SAMPLERS, default: 'dpmpp_2m' },
      denoise: {
        type: 'FLOAT',
        default: 1.0,
        min: 0,
        max: 1.0,
        step: 0.01,
        tooltip: 'Image-to-image: < 1 starts from the input latent noised part-way (0.6 keeps its layout); 0 returns it unchanged. A noise mask on the latent limits sampling to the masked region (inpainting).',
      },
    },
  },
  outputs: [{ name: 'LATENT', type: 'LATENT' }],
  async run({ model, positive, negative, latent, seed, steps, cfg, flow_shift, sampler, denoise }, ctx) {
    ctx.throwIfInterrupted();
    // Only the KSampler alias passes 'scm' (its sampler_name; not in this node's combo).
    if ((sampler as string) === 'scm') return (await import('./scm_sampler.ts')).runKSamplerScm({ model, positive, latent, seed, steps, denoise }, ctx);
    const out = await sample(model, positive, negative, latent, { seed, steps, cfg, flowShift: flow_shift, sampler, denoise }, await progressReporter(ctx, model, latent.shape));
    return [out];
  },
});
