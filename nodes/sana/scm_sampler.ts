// SanaSprintSampler: Sana-Sprint's few-step SCM sampling (diffusers' SanaSprintPipeline and, for
// denoise < 1, SanaSprintImg2ImgPipeline), on a guidance-embedding transformer. There is no CFG
// batch: the guidance scale is an input of the model itself (× guidance_embeds_scale), so one
// forward per step on the positive prompt only. The scheduler math and the loop live in
// nodes/models/scm_scheduler.ts; this file wires text, latents, progress and previews to it.
import { dirname } from 'node:path';
import { defineNode, type NodeContext } from '../../engine/index.ts';
import type { Backend } from '../../native/api.ts';
import { progressReporter, rowsFor, type StepCallback } from './flow_dpm_sampler.ts';
import { withTransformer } from './runtime.ts';
import type { Conditioning, Latent, SanaModelRef } from './types.ts';

type Transformer = import('../models/sana_dit.ts').SanaTransformer;

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
export type SprintModel = Pick<SanaModelRef, 'dtype' | 'schedulerConfig'>;

function refuseNonSprint(guidanceEmbeds: boolean, name: string, who: string): void {
  if (!guidanceEmbeds) {
    throw new Error(`${who} input model: ${name} is not a Sana-Sprint checkpoint (its transformer has no guidance_embeds); use FlowDPMSampler (or KSampler with euler / dpmpp_2m) for Sana and SANA 1.5`);
  }
}

function checkInputs(latentChannels: number, captionChannels: number, name: string, positive: Conditioning, latent: Latent, who: string): void {
  // Neither Sprint pipeline inpaints; ignoring the mask would silently repaint the kept region.
  if (latent.noiseMask) throw new Error(`${who} input latent: it carries a noise mask (inpainting), which Sana-Sprint sampling does not support; use FlowDPMSampler with a Sana checkpoint`);
  if (latent.shape[1] !== latentChannels) throw new Error(`${who}: the latent has ${latent.shape[1]} channels but ${name} expects ${latentChannels}`);
  if (positive.shape[2] !== captionChannels) {
    throw new Error(`${who}: positive conditioning is ${positive.shape[2]} wide but ${name} takes text embeddings of width ${captionChannels}; encode with the text encoder that belongs to this checkpoint`);
  }
}

async function schedulerFor(model: SprintModel) {
  const { parseScmSchedulerConfig, readScmSchedulerConfig } = await import('../models/scm_scheduler.ts');
  // Without a scheduler folder: SCMScheduler's own defaults, which are what Sprint ships.
  return model.schedulerConfig ? readScmSchedulerConfig(dirname(model.schedulerConfig)) : parseScmSchedulerConfig({});
}

async function runSprint(net: Transformer, backend: Backend, model: SprintModel, positive: Conditioning, latent: Latent, o: SprintOptions, onStep: StepCallback, who: string): Promise<Latent> {
  const { sampleScm, scmStartStep, scmTimesteps } = await import('../models/scm_scheduler.ts');
  const cfg = await schedulerFor(model);
  const [B, C, h, w] = latent.shape;
  const mid = o.steps === 2 ? o.intermediateTimesteps : null;
  // Validates the schedule (steps, times) before any forward.
  scmTimesteps(o.steps, cfg, { maxTimesteps: o.maxTimesteps, intermediateTimesteps: mid });
  const img2img = o.denoise < 1;
  const start = img2img ? scmStartStep(o.steps, o.denoise) : 0;
  const total = o.steps - start;
  const { embeds, mask } = rowsFor(positive, B, who, 'positive');
  const [, L, D] = positive.shape;
  // The text side is the same at every step: upload it once, in the model's dtype.
  const text = backend.fromArray(embeds, [B, L, D], model.dtype);
  const sd = Math.fround(cfg.sigmaData);
  try {
    const res = await sampleScm(
      async (input, s, g) => {
        // Let the event loop deliver an interrupt (or a WebSocket frame) between steps.
        await new Promise<void>((r) => setImmediate(r));
        const out = net.forward({ data: input, shape: [B, C, h, w] }, [s], text, mask, { guidance: [g] });
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

/** The loop on a transformer already built (benches with random weights). */
export async function sprintSampleWithTransformer(
  net: Transformer, backend: Backend, model: SprintModel, positive: Conditioning, latent: Latent, o: SprintOptions, onStep: StepCallback, who = 'SanaSprintSampler',
): Promise<Latent> {
  refuseNonSprint(net.config.guidanceEmbeds, 'the transformer', who);
  checkInputs(net.config.inChannels, net.config.captionChannels, 'the transformer', positive, latent, who);
  return runSprint(net, backend, model, positive, latent, o, onStep, who);
}

/** Runs the whole loop through the model cache; returns the final latent. */
export async function sprintSample(model: SanaModelRef, positive: Conditioning, latent: Latent, o: SprintOptions, onStep: StepCallback, who = 'SanaSprintSampler'): Promise<Latent> {
  refuseNonSprint(model.guidanceEmbeds === true, model.name, who);
  checkInputs(model.latentChannels, model.captionChannels, model.name, positive, latent, who);
  // Checked before the weights are fetched: a bad scheduler config fails without a load.
  await schedulerFor(model);
  return withTransformer(model, (net, backend) => runSprint(net, backend, model, positive, latent, o, onStep, who));
}

/**
 * KSampler with sampler_name "scm" (the KSampler alias hands it to FlowDPMSampler, which passes
 * it here): ComfyUI's SCM sampler, whose guidance comes from ScmModelSampling (4.5 without it)
 * and whose schedule is SanaSprintPipeline's default for the step count.
 */
export async function runKSamplerScm(
  i: { model: SanaModelRef; positive: Conditioning; latent: Latent; seed: number | bigint; steps: number; denoise: number },
  ctx: NodeContext,
): Promise<[Latent]> {
  const who = 'KSampler';
  if (i.model.guidanceEmbeds !== true) {
    throw new Error(`KSampler input sampler_name: "scm" needs a Sana-Sprint checkpoint, but ${i.model.name} has no guidance embedding; use euler or dpmpp_2m`);
  }
  const o: SprintOptions = {
    seed: i.seed, steps: i.steps, guidance: i.model.scm?.guidanceScale ?? SPRINT_DEFAULTS.guidance,
    maxTimesteps: SPRINT_DEFAULTS.maxTimesteps, intermediateTimesteps: SPRINT_DEFAULTS.intermediateTimesteps, denoise: i.denoise,
  };
  return [await sprintSample(i.model, i.positive, i.latent, o, await progressReporter(ctx, i.model, i.latent.shape), who)];
}

export const SanaSprintSampler = defineNode({
  name: 'SanaSprintSampler',
  displayName: 'Sana-Sprint Sampler (SCM)',
  category: 'sana/sampling',
  description:
    'Few-step sampling for Sana-Sprint checkpoints (diffusers SanaSprintPipeline): SCM / TrigFlow scheduler, guidance embedded in the model (no negative prompt, no CFG batch). denoise < 1 is image-to-image as SanaSprintImg2ImgPipeline (strength).',
  inputs: {
    required: {
      model: { type: 'SANA_MODEL', tooltip: 'A Sana-Sprint checkpoint (transformer with guidance_embeds).' },
      positive: { type: 'CONDITIONING' },
      latent: { type: 'LATENT' },
      seed: { type: 'INT', default: 0, min: 0, max: 0xffffffffffffffffn, controlAfterGenerate: true, tooltip: 'torch.randn-compatible CPU noise seed (start noise and the noise between steps).' },
      steps: { type: 'INT', default: 2, min: 1, max: 50, tooltip: 'Sprint is distilled for 1-4 steps.' },
      guidance: { type: 'FLOAT', default: SPRINT_DEFAULTS.guidance, min: 0, max: 30, step: 0.1, round: 0.01, tooltip: "Embedded guidance scale (the pipeline's guidance_scale), multiplied by the checkpoint's guidance_embeds_scale." },
      max_timesteps: { type: 'FLOAT', default: SPRINT_DEFAULTS.maxTimesteps, min: 0.01, max: 1.5708, step: 0.0001, round: 0.0001, tooltip: 'TrigFlow start time (π/2 ≈ 1.5708 = pure noise).' },
      intermediate_timesteps: {
        type: 'FLOAT', default: SPRINT_DEFAULTS.intermediateTimesteps, min: 0, max: 1.5708, step: 0.01, round: 0.0001,
        tooltip: 'The middle time of a 2-step schedule (1.3 in SanaSprintPipeline); 0 = evenly spaced. Other step counts are always evenly spaced.',
      },
      denoise: { type: 'FLOAT', default: 1.0, min: 0.01, max: 1.0, step: 0.01, tooltip: '1 = from noise; below 1 = image-to-image strength on the input latent (starts at a later step of the schedule).' },
    },
  },
  outputs: [{ name: 'LATENT', type: 'LATENT' }],
  async run({ model, positive, latent, seed, steps, guidance, max_timesteps, intermediate_timesteps, denoise }, ctx) {
    ctx.throwIfInterrupted();
    const o: SprintOptions = {
      seed, steps, guidance, maxTimesteps: max_timesteps,
      intermediateTimesteps: intermediate_timesteps > 0 ? intermediate_timesteps : null, denoise,
    };
    return [await sprintSample(model, positive, latent, o, await progressReporter(ctx, model, latent.shape))];
  },
});
