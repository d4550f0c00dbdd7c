// SetLatentNoiseMask (ComfyUI's class and inputs): attaches a MASK to a LATENT as its noise mask,
// so the sampler regenerates only the masked region (1 = regenerate). Stored at latent resolution,
// resized bilinearly as ComfyUI's sampler does when it applies the mask.
import { defineNode } from '../../engine/index.ts';
import { latentNoiseMask } from './vae_encode_inpaint.ts';

export const SetLatentNoiseMask = defineNode({
  name: 'SetLatentNoiseMask',
  displayName: 'Set Latent Noise Mask',
  category: 'latent/inpaint',
  description: 'Limits sampling to the masked region of a latent (white / 1 = regenerate, black / 0 = keep).',
  inputs: { required: { samples: { type: 'LATENT' }, mask: { type: 'MASK' } } },
  outputs: [{ name: 'LATENT', type: 'LATENT' }],
  run({ samples, mask }) {
    const [B, , h, w] = samples.shape;
    if (mask.batch !== 1 && mask.batch !== B)
      throw new Error(`SetLatentNoiseMask: the mask has a batch of ${mask.batch} but the latent ${B}; use 1 mask or ${B}`);
    return [{ ...samples, noiseMask: latentNoiseMask(mask.data, mask.batch, mask.height, mask.width, h, w) }];
  },
});
