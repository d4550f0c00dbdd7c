// EmptySanaLatent: a zero latent batch (B, 32, H/32, W/32), optionally on Sana's aspect-ratio bins.
// With binning, generation happens at the bin closest to height/width and the latent remembers the
// requested size, so DCAEDecode resizes and centre-crops back to it (diffusers' pipeline, shared/spec/sana.md §1.7).
import { defineNode } from '../../engine/index.ts';
import { BIN_TABLES, binFor } from '../models/bins.ts';
import type { Latent } from './types.ts';

export const LATENT_CHANNELS = 32;
export const DOWNSAMPLE = 32;
export const BINNING_CHOICES = ['disabled', '512px', '1024px', '2048px', '4096px'] as const;
type Binning = (typeof BINNING_CHOICES)[number];

export function emptyLatent(width: number, height: number, batch: number, binning: Binning | string = 'disabled', who = 'EmptySanaLatent'): Latent {
  for (const [name, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(v) || v < DOWNSAMPLE) throw new Error(`${who}: ${name} must be an integer >= ${DOWNSAMPLE}, got ${v}`);
  }
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`${who}: batch_size must be a positive integer, got ${batch}`);
  let genH = height;
  let genW = width;
  let targetSize: Latent['targetSize'];
  if (binning !== 'disabled') {
    const px = Number.parseInt(binning, 10) as 512 | 1024 | 2048 | 4096;
    const table = BIN_TABLES[px];
    if (!table) throw new Error(`${who}: resolution_binning "${binning}" is not one of ${BINNING_CHOICES.join(', ')}`);
    const bin = binFor(height, width, table);
    genH = bin.height;
    genW = bin.width;
    if (genH !== height || genW !== width) targetSize = { height, width };
  }
  // Like ComfyUI's EmptyLatentImage: sizes that are not multiples of 32 are floored.
  const h = Math.floor(genH / DOWNSAMPLE);
  const w = Math.floor(genW / DOWNSAMPLE);
  const shape: Latent['shape'] = [batch, LATENT_CHANNELS, h, w];
  return { samples: new Float32Array(batch * LATENT_CHANNELS * h * w), shape, ...(targetSize ? { targetSize } : {}) };
}

export const EmptySanaLatent = defineNode({
  name: 'EmptySanaLatent',
  displayName: 'Empty Sana Latent',
  category: 'sana/latent',
  description:
    'An empty 32-channel latent at 1/32 of the image size. With resolution binning the image is generated at the nearest trained aspect-ratio bucket and resized/cropped back to width x height after decoding.',
  inputs: {
    required: {
      width: { type: 'INT', default: 1024, min: 32, max: 16384, step: 32 },
      height: { type: 'INT', default: 1024, min: 32, max: 16384, step: 32 },
      batch_size: { type: 'INT', default: 1, min: 1, max: 64 },
      resolution_binning: {
        type: 'COMBO',
        values: BINNING_CHOICES,
        default: '1024px',
        tooltip: "The checkpoint family's bucket table (512px, 1024px, 2048px = 2K, 4096px = 4K), or disabled.",
      },
    },
  },
  outputs: [{ name: 'LATENT', type: 'LATENT' }],
  run({ width, height, batch_size, resolution_binning }) {
    return [emptyLatent(width, height, batch_size, resolution_binning)];
  },
});
