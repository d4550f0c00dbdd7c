// DCAEDecode: latents -> IMAGE. Divides by the VAE scaling factor, decodes (whole or tiled), undoes
// resolution binning (bilinear cover resize + centre crop to the requested size, shared/spec/sana.md §1.7) and
// maps [-1, 1] to ComfyUI's IMAGE layout (B, H, W, 3) in [0, 1].
import { defineNode, type NodeContext } from '../../engine/index.ts';
import type { Image } from '../image/types.ts';
import { nodeServices, type NodeServices } from '../services.ts';
import { withDcae } from './runtime.ts';
import { latentTiles, tileInputs, type Tiling } from './tiling.ts';
import type { DcaeRef, Latent } from './types.ts';

/** (B, 3, H, W) decoder output in [-1, 1] -> IMAGE (B, H, W, 3) in [0, 1]. */
export function toImage(chw: Float32Array, B: number, H: number, W: number): Image {
  const data = new Float32Array(B * H * W * 3);
  const plane = H * W;
  for (let b = 0; b < B; b++) {
    const src = b * 3 * plane;
    const dst = b * plane * 3;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) {
        const v = chw[src + c * plane + p] * 0.5 + 0.5;
        data[dst + p * 3 + c] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
    }
  }
  return { data, batch: B, height: H, width: W, channels: 3 };
}

/**
 * `ctx` (the node's) is polled between decoder blocks, so an interrupt stops a long decode at the
 * next block; a tiled decode also reports per-tile progress, as ComfyUI's tiled VAE decode does.
 */
export async function decodeLatent(
  svc: NodeServices,
  vae: DcaeRef,
  latent: Latent,
  tiled: Tiling,
  who = 'DCAEDecode',
  ctx?: Pick<NodeContext, 'throwIfInterrupted' | 'progress'>,
): Promise<Image> {
  const [B, C, h, w] = latent.shape;
  if (C !== vae.latentChannels) throw new Error(`${who}: the latent has ${C} channels but the DC-AE ${vae.name} decodes ${vae.latentChannels}`);
  const z = new Float32Array(latent.samples.length);
  const inv = 1 / vae.scalingFactor;
  for (let i = 0; i < z.length; i++) z[i] = latent.samples[i] * inv;
  const { resizeAndCrop } = await import('../models/bins.ts');
  return withDcae(svc, vae, (dec, backend) =>
    backend.scope(() => {
      const input = { data: z, shape: [B, C, h, w] };
      const onBlock = ctx ? () => ctx.throwIfInterrupted() : undefined;
      const onTile = ctx ? (done: number, total: number) => ctx.progress(done, total) : undefined;
      const tiles = typeof tiled === 'object' ? tiled : {};
      let img = tiled ? dec.decodeTiled(input, { ...tiles, onBlock, onTile }) : dec.decode(input, { onBlock }); // (B, 3, 32h, 32w) f32
      if (latent.targetSize) img = resizeAndCrop(backend, img, latent.targetSize.height, latent.targetSize.width); // (B, 3, H, W)
      const [, , H, W] = img.shape as [number, number, number, number];
      return toImage(img.toFloat32(), B, H, W);
    }),
  );
}

export const DCAEDecode = defineNode({
  name: 'DCAEDecode',
  displayName: 'DC-AE Decode',
  category: 'sana/latent',
  description: 'Decodes Sana latents to images with the DC-AE; tiled decoding bounds memory for 2K/4K images.',
  inputs: {
    required: {
      vae: { type: 'DCAE' },
      latent: { type: 'LATENT' },
      tiled: { type: 'BOOLEAN', default: false, tooltip: 'Decode in overlapping tiles (less memory, tiny seams blended away).' },
    },
    optional: tileInputs,
  },
  outputs: [{ name: 'IMAGE', type: 'IMAGE' }],
  async run({ vae, latent, tiled, tile_size, overlap }, ctx) {
    ctx.throwIfInterrupted();
    const tiling = tiled && latentTiles('DCAEDecode', vae, tile_size ?? tileInputs.tile_size.default, overlap ?? tileInputs.overlap.default);
    return [await decodeLatent(nodeServices(ctx.services, 'DCAEDecode'), vae, latent, tiling, 'DCAEDecode', ctx)];
  },
});
