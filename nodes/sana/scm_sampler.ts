// SanaSprintSampler: Sana-Sprint's few-step SCM sampling (diffusers' SanaSprintPipeline and, for
// denoise < 1, SanaSprintImg2ImgPipeline), on a guidance-embedding transformer. There is no CFG
// batch: the guidance scale is an input of the model itself (× guidance_embeds_scale), so one
// forward per step on the positive prompt only. The scheduler math and the loop live in
// nodes/models/scm_scheduler.ts and nodes/models/sample.ts; this file fetches the model and
// wires progress and previews to them.
import { defineNode, type NodeContext } from '../../engine/index.ts';
import { nodeServices, type NodeServices } from '../services.ts';
import { checkSprintInputs, refuseNonSprint, runSprint, sprintSchedulerFor, SPRINT_DEFAULTS, type SprintOptions, type StepCallback } from '../models/sample.ts';
import { progressReporter } from './flow_dpm_sampler.ts';
import { withTransformer } from './runtime.ts';
import type { Conditioning, Latent, SanaModelRef } from './types.ts';

/** Runs the whole loop through the model cache; returns the final latent. */
export async function sprintSample(
  svc: NodeServices,
  model: SanaModelRef,
  positive: Conditioning,
  latent: Latent,
  o: SprintOptions,
  onStep: StepCallback,
  who = 'SanaSprintSampler',
): Promise<Latent> {
  refuseNonSprint(model.guidanceEmbeds === true, model.name, who);
  checkSprintInputs(model.latentChannels, model.captionChannels, model.name, positive, latent, who);
  // Checked before the weights are fetched: a bad scheduler config fails without a load.
  sprintSchedulerFor(model);
  return withTransformer(svc, model, (net, backend) => runSprint(net, backend, model, positive, latent, o, onStep, who));
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
    seed: i.seed,
    steps: i.steps,
    guidance: i.model.scm?.guidanceScale ?? SPRINT_DEFAULTS.guidance,
    maxTimesteps: SPRINT_DEFAULTS.maxTimesteps,
    intermediateTimesteps: SPRINT_DEFAULTS.intermediateTimesteps,
    denoise: i.denoise,
  };
  return [await sprintSample(nodeServices(ctx.services, who), i.model, i.positive, i.latent, o, await progressReporter(ctx, i.model, i.latent.shape), who)];
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
      seed: {
        type: 'INT',
        default: 0,
        min: 0,
        max: 0xffffffffffffffffn,
        controlAfterGenerate: true,
        tooltip: 'torch.randn-compatible CPU noise seed (start noise and the noise between steps).',
      },
      steps: { type: 'INT', default: 2, min: 1, max: 50, tooltip: 'Sprint is distilled for 1-4 steps.' },
      guidance: {
        type: 'FLOAT',
        default: SPRINT_DEFAULTS.guidance,
        min: 0,
        max: 30,
        step: 0.1,
        round: 0.01,
        tooltip: "Embedded guidance scale (the pipeline's guidance_scale), multiplied by the checkpoint's guidance_embeds_scale.",
      },
      max_timesteps: {
        type: 'FLOAT',
        default: SPRINT_DEFAULTS.maxTimesteps,
        min: 0.01,
        max: 1.5708,
        step: 0.0001,
        round: 0.0001,
        tooltip: 'TrigFlow start time (π/2 ≈ 1.5708 = pure noise).',
      },
      intermediate_timesteps: {
        type: 'FLOAT',
        default: SPRINT_DEFAULTS.intermediateTimesteps,
        min: 0,
        max: 1.5708,
        step: 0.01,
        round: 0.0001,
        tooltip: 'The middle time of a 2-step schedule (1.3 in SanaSprintPipeline); 0 = evenly spaced. Other step counts are always evenly spaced.',
      },
      denoise: {
        type: 'FLOAT',
        default: 1.0,
        min: 0.01,
        max: 1.0,
        step: 0.01,
        tooltip: '1 = from noise; below 1 = image-to-image strength on the input latent (starts at a later step of the schedule).',
      },
    },
  },
  outputs: [{ name: 'LATENT', type: 'LATENT' }],
  async run({ model, positive, latent, seed, steps, guidance, max_timesteps, intermediate_timesteps, denoise }, ctx) {
    ctx.throwIfInterrupted();
    const o: SprintOptions = {
      seed,
      steps,
      guidance,
      maxTimesteps: max_timesteps,
      intermediateTimesteps: intermediate_timesteps > 0 ? intermediate_timesteps : null,
      denoise,
    };
    return [await sprintSample(nodeServices(ctx.services, 'SanaSprintSampler'), model, positive, latent, o, await progressReporter(ctx, model, latent.shape))];
  },
});
