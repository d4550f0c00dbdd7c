// VAEEncodeForInpaint (ComfyUI's class and inputs): the mask is resized (bilinear) to the image,
// both are centre-cropped to a multiple of 32, the masked pixels (round(mask) = 1) are set to 0.5
// grey before encoding so the encoder does not see what is to be replaced, and the mask grown by
// `grow_mask_by` pixels becomes the latent's noise mask. ComfyUI keeps that mask at pixel
// resolution and resizes it bilinearly to the latent when sampling; it is resized here once
// instead, with the same interpolation.
import { defineNode } from '../../engine/index.ts';
import { growMask, resizeMaskBilinear, roundHalfEven } from '../image/mask_ops.ts';
import type { Image, Mask } from '../image/types.ts';
import { nodeServices } from '../services.ts';
import { cropPlan, encodeToLatent, toEncoderInput } from './dcae_encode.ts';
import type { Latent } from './types.ts';

/** Mask batch Bm against image batch B: 1 (shared) or B, as torch broadcasting allows. */
function maskBatch(Bm: number, B: number, who: string): void {
  if (Bm !== 1 && Bm !== B) throw new Error(`${who}: the mask has a batch of ${Bm} but the image ${B}; use 1 mask or ${B}`);
}

/**
 * The pixel side of VAEEncodeForInpaint: the grey-filled encoder input (B, 3, h, w) in [-1, 1] and
 * the grown noise mask (Bm, h, w) at pixel resolution.
 */
export function inpaintInputs(
  img: Image,
  mask: Mask,
  growBy: number,
  f: number,
  who = 'VAEEncodeForInpaint',
): {
  pixels: Float32Array;
  shape: [number, number, number, number];
  grown: Float32Array;
  maskBatch: number;
} {
  const { batch: B, height: H, width: W } = img;
  maskBatch(mask.batch, B, who);
  const Bm = mask.batch;
  const full = resizeMaskBilinear(mask.data, Bm, mask.height, mask.width, H, W); // (Bm, H, W)
  const crop = cropPlan(H, W, f, who);
  const { y0, x0, h, w } = crop;
  const m = new Float32Array(Bm * h * w); // (Bm, h, w) cropped
  for (let b = 0; b < Bm; b++) {
    for (let y = 0; y < h; y++) m.set(full.subarray((b * H + y0 + y) * W + x0, (b * H + y0 + y) * W + x0 + w), (b * h + y) * w);
  }
  const grown = growMask(m, Bm, h, w, growBy);
  const pixels = toEncoderInput(img, crop); // (B, 3, h, w) in [-1, 1]
  // ComfyUI: p = (p − 0.5)·(1 − round(mask)) + 0.5 on [0, 1] pixels, i.e. 0 on the [-1, 1] scale.
  for (let b = 0; b < B; b++) {
    const mb = (Bm === 1 ? 0 : b) * h * w;
    for (let c = 0; c < 3; c++) {
      const o = (b * 3 + c) * h * w;
      for (let p = 0; p < h * w; p++) if (roundHalfEven(m[mb + p]!) !== 0) pixels[o + p] = 0;
    }
  }
  return { pixels, shape: [B, 3, h, w], grown, maskBatch: Bm };
}

/** A (Bm, H, W) mask -> the latent's noise mask at its (h, w) resolution. */
export function latentNoiseMask(data: Float32Array, Bm: number, H: number, W: number, h: number, w: number): NonNullable<Latent['noiseMask']> {
  return { data: resizeMaskBilinear(data, Bm, H, W, h, w), shape: [Bm, h, w] };
}

export const VAEEncodeForInpaint = defineNode({
  name: 'VAEEncodeForInpaint',
  displayName: 'VAE Encode (for Inpainting)',
  category: 'latent/inpaint',
  description:
    'Encodes an image for inpainting: masked pixels are filled with grey before encoding, and the mask (grown by grow_mask_by pixels) becomes the noise mask, so the sampler regenerates only that region.',
  inputs: {
    required: {
      pixels: { type: 'IMAGE' },
      vae: { type: 'DCAE' },
      mask: { type: 'MASK' },
      grow_mask_by: { type: 'INT', default: 6, min: 0, max: 64, step: 1 },
    },
  },
  outputs: [{ name: 'LATENT', type: 'LATENT' }],
  async run({ pixels, vae, mask, grow_mask_by }, ctx) {
    ctx.throwIfInterrupted();
    const { pixels: x, shape, grown, maskBatch: Bm } = inpaintInputs(pixels, mask, grow_mask_by, vae.downsample);
    const latent = await encodeToLatent(nodeServices(ctx.services, 'VAEEncodeForInpaint'), vae, x, shape, false, ctx);
    const [, , h, w] = latent.shape;
    return [{ ...latent, noiseMask: latentNoiseMask(grown, Bm, shape[2], shape[3], h, w) }];
  },
});
