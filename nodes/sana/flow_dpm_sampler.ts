// FlowDPMSampler: the node around the flow sampling loop of nodes/models/sample.ts (DPM-Solver++
// 2M or flow Euler, CFG and the PAG patch the model reference carries): it fetches the
// transformer through the model cache and reports progress with previews.
import { defineNode, type NodeContext } from '../../engine/index.ts';
import { checkFlowInputs, passOn, planSampling, refuseSprint, runPlan, SAMPLERS, type SampleOptions, type StepCallback } from '../models/sample.ts';
import { nodeServices, type NodeServices } from '../services.ts';
import type { Conditioning, Latent, SanaModelRef } from './types.ts';
import { previewerFor } from './preview.ts';
import { withTransformer } from './runtime.ts';

/** Runs the whole loop; returns the final latents with the input latent's shape. */
export async function sample(
  svc: NodeServices,
  model: SanaModelRef,
  positive: Conditioning,
  negative: Conditioning,
  latent: Latent,
  o: SampleOptions,
  onStep: StepCallback,
  who = 'FlowDPMSampler',
): Promise<Latent> {
  refuseSprint(model.guidanceEmbeds === true, model.name, who);
  checkFlowInputs(model.name, model.latentChannels, model.captionChannels, positive, negative, latent, who);
  // denoise 0 (ComfyUI: an empty schedule) returns the input latent untouched, without a load.
  if (o.denoise <= 0) return passOn(latent, latent.samples.slice());
  // Planned before the weights are fetched: a bad scheduler config or option fails without a load.
  const plan = planSampling(model, positive, negative, latent, o, who);
  return withTransformer(svc, model, (net, backend) => runPlan(net, backend, model, plan, latent, o, onStep));
}

/** ctx.progress per step, with a preview of the denoised estimate when one can be made. */
export async function progressReporter(ctx: NodeContext, model: SanaModelRef, shape: readonly number[]): Promise<StepCallback> {
  const preview = await previewerFor(nodeServices(ctx.services, 'sampler previews'), model);
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
        tooltip:
          'Image-to-image: < 1 starts from the input latent noised part-way (0.6 keeps its layout); 0 returns it unchanged. A noise mask on the latent limits sampling to the masked region (inpainting).',
      },
    },
  },
  outputs: [{ name: 'LATENT', type: 'LATENT' }],
  async run({ model, positive, negative, latent, seed, steps, cfg, flow_shift, sampler, denoise }, ctx) {
    ctx.throwIfInterrupted();
    // Only the KSampler alias passes 'scm' (its sampler_name; not in this node's combo).
    if ((sampler as string) === 'scm') return (await import('./scm_sampler.ts')).runKSamplerScm({ model, positive, latent, seed, steps, denoise }, ctx);
    const out = await sample(
      nodeServices(ctx.services, 'FlowDPMSampler'),
      model,
      positive,
      negative,
      latent,
      { seed, steps, cfg, flowShift: flow_shift, sampler, denoise },
      await progressReporter(ctx, model, latent.shape),
    );
    return [out];
  },
});
