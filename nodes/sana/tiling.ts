// The tile_size / overlap inputs of the DC-AE nodes, in image pixels as ComfyUI's VAEDecodeTiled and
// VAEEncodeTiled take them, turned into the latent-pixel TileOptions the DC-AE tiler works in.
import { TILE_DEFAULTS, type TileOptions } from '../models/dcae_blocks.ts';
import type { DcaeRef } from './types.ts';

/** Pixel defaults: the tiler's own at the DC-AE's ×32 (32 latent px = 1024 px, 2 latent px = 64 px). */
export const TILE_SIZE_DEFAULT = TILE_DEFAULTS.tile * 32;
export const TILE_OVERLAP_DEFAULT = TILE_DEFAULTS.overlap * 32;

/** How a DC-AE node runs: whole (false) or tiled, with the tiler's defaults (true) or given tiles. */
export type Tiling = boolean | Pick<TileOptions, 'tile' | 'overlap'>;

export const tileInputs = {
  tile_size: {
    type: 'INT',
    default: TILE_SIZE_DEFAULT,
    min: 64,
    max: 8192,
    step: 32,
    tooltip: 'Largest tile side in image pixels when tiled (rounded down to whole latent pixels; tiles shrink to a common size that covers the image).',
  },
  overlap: {
    type: 'INT',
    default: TILE_OVERLAP_DEFAULT,
    min: 0,
    max: 4096,
    step: 32,
    tooltip: 'Overlap between neighbouring tiles in image pixels, blended linearly (more overlap: smoother seams, more work).',
  },
} as const;

/** Pixel tile settings → latent pixels of `vae`; settings that leave no tile or no room between
 *  overlaps are refused, naming the input. */
export function latentTiles(who: string, vae: DcaeRef, tileSize: number, overlap: number): Pick<TileOptions, 'tile' | 'overlap'> {
  const f = vae.downsample;
  if (!Number.isInteger(tileSize) || tileSize < f)
    throw new Error(`${who} input tile_size: ${tileSize} px is less than one latent pixel of ${vae.name} (${f} px)`);
  if (!Number.isInteger(overlap) || overlap < 0) throw new Error(`${who} input overlap: ${overlap} must be a whole number of pixels ≥ 0`);
  const tile = Math.floor(tileSize / f);
  const ov = Math.floor(overlap / f);
  if (ov >= tile) {
    throw new Error(`${who} input overlap: ${overlap} px (${ov} latent px) must be smaller than tile_size ${tileSize} px (${tile} latent px at ×${f})`);
  }
  return { tile, overlap: ov };
}

/** ComfyUI's VAEDecodeTiled / VAEEncodeTiled inputs (its defaults; the temporal pair is for video
 *  VAEs and unused by an image DC-AE). */
export const comfyTileInputs = {
  tile_size: { type: 'INT', default: 512, min: 64, max: 4096, step: 32 },
  overlap: { type: 'INT', default: 64, min: 0, max: 4096, step: 32 },
  temporal_size: { type: 'INT', default: 64, min: 8, max: 4096, step: 4 },
  temporal_overlap: { type: 'INT', default: 8, min: 4, max: 4096, step: 4 },
} as const;

/** ComfyUI's rule for those inputs: an overlap above a quarter of the tile is cut to a quarter. */
export function comfyTiles(i: Record<string, unknown>): { tile_size: number; overlap: number } {
  const tile = Number(i.tile_size ?? comfyTileInputs.tile_size.default);
  let overlap = Number(i.overlap ?? comfyTileInputs.overlap.default);
  if (tile < overlap * 4) overlap = Math.floor(tile / 4);
  return { tile_size: tile, overlap };
}
