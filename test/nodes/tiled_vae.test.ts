// Tiled DC-AE through the executor on the tiny model: DCAEDecode/DCAEEncode's tile_size and overlap
// (image pixels), ComfyUI's VAEDecodeTiled / VAEEncodeTiled aliases with their defaults and overlap
// clamp, and a bad setting reported on the node and input at fault.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Executor, validatePrompt, type ApiPrompt } from '../../engine/index.ts';
import { decodePng } from '../../nodes/image/png.ts';
import { productRegistry, repoModelsDir, testServices, TINY } from './helpers.ts';

const SLOW = 600_000;
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-tiled-vae-'));
afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

describe('tiled DC-AE nodes', () => {
  repoModelsDir();
  const services = testServices({ output: out, temp: out, input: out });
  const registry = productRegistry(services);
  const executor = new Executor(registry);

  it('VAEDecodeTiled / VAEEncodeTiled show ComfyUI inputs and map onto the DC-AE nodes with its overlap clamp', () => {
    const info = registry.objectInfo() as Record<string, { input: { required: Record<string, unknown> } }>;
    expect(Object.keys(info.VAEDecodeTiled!.input.required)).toEqual(['samples', 'vae', 'tile_size', 'overlap', 'temporal_size', 'temporal_overlap']);
    expect(info.VAEDecodeTiled!.input.required.tile_size).toEqual(['INT', expect.objectContaining({ default: 512, min: 64, max: 4096 })]);
    const dec = registry.get('VAEDecodeTiled')!.mapInputs!;
    expect(dec({ samples: 's', vae: 'v', tile_size: 512, overlap: 64, temporal_size: 64, temporal_overlap: 8 }, services)).toEqual({
      vae: 'v',
      latent: 's',
      tiled: true,
      tile_size: 512,
      overlap: 64,
    });
    // ComfyUI: an overlap over a quarter of the tile becomes a quarter.
    expect(dec({ samples: 's', vae: 'v', tile_size: 256, overlap: 128 }, services)).toMatchObject({ tile_size: 256, overlap: 64 });
    const enc = registry.get('VAEEncodeTiled')!.mapInputs!;
    expect(enc({ pixels: 'p', vae: 'v', tile_size: 512, overlap: 64 }, services)).toEqual({ vae: 'v', pixels: 'p', tiled: true, tile_size: 512, overlap: 64 });
  });

  const prompt = (): ApiPrompt => ({
    '1': { class_type: 'DCAELoader', inputs: { vae_name: TINY, dtype: 'f32', device: 'auto' } },
    '2': { class_type: 'EmptySanaLatent', inputs: { width: 512, height: 384, batch_size: 1, resolution_binning: 'disabled' } },
    // The same tiles asked for three ways: the alias (overlap clamped 128 → 64), the node in pixels.
    '3': { class_type: 'VAEDecodeTiled', inputs: { samples: ['2', 0], vae: ['1', 0], tile_size: 256, overlap: 128, temporal_size: 64, temporal_overlap: 8 } },
    '4': { class_type: 'DCAEDecode', inputs: { latent: ['2', 0], vae: ['1', 0], tiled: true, tile_size: 256, overlap: 64 } },
    '5': { class_type: 'DCAEDecode', inputs: { latent: ['2', 0], vae: ['1', 0], tiled: false } },
    '6': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'alias' } },
    '7': { class_type: 'SaveImage', inputs: { images: ['4', 0], filename_prefix: 'node' } },
    '8': { class_type: 'SaveImage', inputs: { images: ['5', 0], filename_prefix: 'whole' } },
    '9': { class_type: 'VAEEncodeTiled', inputs: { pixels: ['5', 0], vae: ['1', 0], tile_size: 256, overlap: 64, temporal_size: 64, temporal_overlap: 8 } },
    '10': { class_type: 'DCAEDecode', inputs: { latent: ['9', 0], vae: ['1', 0], tiled: false } },
    '11': { class_type: 'SaveImage', inputs: { images: ['10', 0], filename_prefix: 'round' } },
  });

  const image = (r: Awaited<ReturnType<Executor['execute']>>, node: string) => {
    if (r.status !== 'success') throw new Error(JSON.stringify(r.error, null, 2));
    const img = (r.outputs[node]!.images as Array<{ filename: string; subfolder: string }>)[0]!;
    return decodePng(fs.readFileSync(path.join(out, img.subfolder, img.filename)));
  };

  it('the alias and the node decode the same tiles; tiled stays near untiled; the tiled encoder round-trips the size', { timeout: SLOW }, async () => {
    const p = prompt();
    expect(validatePrompt(p, registry).ok).toBe(true);
    const r = await executor.execute(p, { promptId: 't1' });
    const alias = image(r, '6'),
      node = image(r, '7'),
      whole = image(r, '8'),
      round = image(r, '11');
    expect([alias.width, alias.height]).toEqual([512, 384]);
    expect(Buffer.from(alias.data).equals(Buffer.from(node.data))).toBe(true);
    let mad = 0;
    for (let i = 0; i < whole.data.length; i++) mad += Math.abs(whole.data[i]! - node.data[i]!);
    // The tiny decoder's attention sees one tile at a time, so tiles differ from the whole (0.063
    // measured on 8-latent-px tiles); a misplaced or unblended tile gives several times that. The
    // blending itself is pinned exactly in test/models (pointwise decoder: tiled == untiled).
    expect(mad / whole.data.length / 255).toBeLessThan(0.1);
    expect([round.width, round.height]).toEqual([512, 384]);
  });

  it('an overlap as large as the tile fails on DCAEDecode naming the input', { timeout: SLOW }, async () => {
    const p = prompt();
    p['4']!.inputs.overlap = 256;
    const r = await executor.execute(p, { promptId: 't2' });
    expect(r.status).toBe('error');
    const err = (r as { error: { node_id: string; exception_message: string } }).error;
    expect(err.node_id).toBe('4');
    expect(err.exception_message).toMatch(/DCAEDecode input overlap: 256 px \(8 latent px\) must be smaller than tile_size 256 px/);
  });
});
