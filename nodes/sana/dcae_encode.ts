// DCAEEncode: IMAGE -> latents with the DC-AE encoder (image-to-image / inpainting input).
// Centre-crops the image to a multiple of the spatial compression (ComfyUI's VAEEncode crop),
// maps [0, 1] to [-1, 1], encodes (whole or tiled) and multiplies by the VAE scaling factor, the
// factor DCAEDecode divides by.
import { defineNode, type NodeContext } from '../../engine/index.ts';
import type { Image } from '../image/types.ts';
import { nodeServices, type NodeServices } from '../services.ts';
import { withDcaeEncoder } from './runtime.ts';
import { latentTiles, tileInputs, type Tiling } from './tiling.ts';
import type { DcaeRef, Latent } from './types.ts';

/** ComfyUI's crop of an (H, W) image to multiples of f: offsets (H % f) / 2, (W % f) / 2. */
export function cropPlan(H: number, W: number, f: number, who: string): { y0: number; x0: number; h: number; w: number } {
  const h = Math.floor(H / f) * f,
    w = Math.floor(W / f) * f;
  if (h === 0 || w === 0) throw new Error(`${who}: the image is ${W}x${H}, smaller than the DC-AE's ${f}x${f} pixels per latent pixel`);
  return { y0: Math.floor((H % f) / 2), x0: Math.floor((W % f) / 2), h, w };
}

/** IMAGE (B, H, W, 3) in [0, 1], cropped to `crop` -> (B, 3, h, w) in [-1, 1]. */
export function toEncoderInput(img: Image, crop: { y0: number; x0: number; h: number; w: number }): Float32Array {
  const { batch: B, height: H, width: W } = img;
  const { y0, x0, h, w } = crop;
  const out = new Float32Array(B * 3 * h * w);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < 3; c++) {
      const dst = (b * 3 + c) * h * w;
      for (let y = 0; y < h; y++) {
        const row = (b * H + y0 + y) * W + x0;
        for (let x = 0; x < w; x++) out[dst + y * w + x] = img.data[(row + x) * 3 + c]! * 2 - 1;
      }
    }
  }
  return out;
}

/**
 * Encodes `pixels` (B, 3, h, w) in [-1, 1] and scales by the VAE's scaling_factor. `ctx` is polled
 * between encoder blocks (an interrupt stops at the next block); tiled runs report per-tile progress.
 */
export async function encodeToLatent(
  svc: NodeServices,
  vae: DcaeRef,
  pixels: Float32Array,
  shape: [number, number, number, number],
  tiled: Tiling,
  ctx?: Pick<NodeContext, 'throwIfInterrupted' | 'progress'>,
): Promise<Latent> {
  const [B, , h, w] = shape;
  const f = vae.downsample;
  return withDcaeEncoder(svc, vae, (enc, backend) =>
    backend.scope(() => {
      if (enc.config.latentChannels !== vae.latentChannels || enc.config.spatialCompression !== f) {
        throw new Error(
          `DC-AE ${vae.name}: the encoder config (latent_channels ${enc.config.latentChannels}, ×${enc.config.spatialCompression}) does not match the decoder's (${vae.latentChannels}, ×${f})`,
        );
      }
      const input = { data: pixels, shape };
      const onBlock = ctx ? () => ctx.throwIfInterrupted() : undefined;
      const onTile = ctx ? (done: number, total: number) => ctx.progress(done, total) : undefined;
      const tiles = typeof tiled === 'object' ? tiled : {};
      const z = tiled ? enc.encodeTiled(input, { ...tiles, onBlock, onTile }) : enc.encode(input, { onBlock }); // (B, c, h/f, w/f) f32
      const samples = z.toFloat32();
      const s = Math.fround(vae.scalingFactor);
      for (let i = 0; i < samples.length; i++) samples[i] = Math.fround(samples[i]! * s);
      return { samples, shape: [B, vae.latentChannels, h / f, w / f] } satisfies Latent;
    }),
  );
}

export async function encodeImage(
  svc: NodeServices,
  vae: DcaeRef,
  img: Image,
  tiled: Tiling,
  who = 'DCAEEncode',
  ctx?: Pick<NodeContext, 'throwIfInterrupted' | 'progress'>,
): Promise<Latent> {
  const crop = cropPlan(img.height, img.width, vae.downsample, who);
  return encodeToLatent(svc, vae, toEncoderInput(img, crop), [img.batch, 3, crop.h, crop.w], tiled, ctx);
}

export const DCAEEncode = defineNode({
  name: 'DCAEEncode',
  displayName: 'DC-AE Encode',
  category: 'sana/latent',
  description:
    'Encodes images to Sana latents with the DC-AE encoder (for image-to-image: feed the latent to the sampler with denoise < 1). The image is centre-cropped to a multiple of 32 pixels.',
  inputs: {
    required: {
      vae: { type: 'DCAE' },
      pixels: { type: 'IMAGE' },
      tiled: { type: 'BOOLEAN', default: false, tooltip: 'Encode in overlapping tiles (less memory for large images; seams blended).' },
    },
    optional: tileInputs,
  },
  outputs: [{ name: 'LATENT', type: 'LATENT' }],
  async run({ vae, pixels, tiled, tile_size, overlap }, ctx) {
    ctx.throwIfInterrupted();
    const tiling = tiled && latentTiles('DCAEEncode', vae, tile_size ?? tileInputs.tile_size.default, overlap ?? tileInputs.overlap.default);
    return [await encodeImage(nodeServices(ctx.services, 'DCAEEncode'), vae, pixels, tiling, 'DCAEEncode', ctx)];
  },
});
