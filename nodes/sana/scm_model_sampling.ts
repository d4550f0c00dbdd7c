// ScmModelSampling: the Sana repo's ComfyUI node (ComfyUI_ExtraModels' Sana-Sprint workflows) that
// puts a Sprint model into SCM sampling with a guidance scale, for KSampler's "scm" sampler. Here
// it is a model patch: a clone of the SANA_MODEL reference carrying the scale, read by the KSampler
// alias when its sampler_name is "scm" (nodes/sana/scm_sampler.ts).
import { defineNode } from '../../engine/index.ts';

export const ScmModelSampling = defineNode({
  name: 'ScmModelSampling',
  displayName: 'SCM Model Sampling',
  category: 'ExtraModels/Sana',
  description: 'Sana-Sprint: sets the embedded guidance scale for KSampler with sampler_name "scm" (set KSampler cfg to 1).',
  inputs: {
    required: {
      model: { type: 'SANA_MODEL' },
      cfg_scale: {
        type: 'FLOAT',
        default: 4.5,
        min: 0,
        max: 30,
        step: 0.1,
        tooltip: "Guidance scale embedded in the model (× the checkpoint's guidance_embeds_scale), not a CFG batch.",
      },
      // ComfyUI builds its discrete sigma table with it; the SCM sampler never reads that table.
      zsnr: { type: 'BOOLEAN', default: false, tooltip: 'Accepted for workflow compatibility; SCM sampling does not use it.' },
    },
  },
  outputs: [{ name: 'MODEL', type: 'SANA_MODEL' }],
  run({ model, cfg_scale }) {
    if (model.guidanceEmbeds !== true) {
      throw new Error(
        `ScmModelSampling input model: ${model.name} is not a Sana-Sprint checkpoint (no guidance embedding); SCM sampling only applies to Sprint models`,
      );
    }
    return [{ ...model, scm: { guidanceScale: cfg_scale } }];
  },
});
