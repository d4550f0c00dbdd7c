// The Sana nodes' logic that needs no weights: latents and binning, the PAG patch, resolution
// buckets, the models-folder listing and the foreign model-name mapping.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSanaCheckpoints, listTextEncoders, listVaes, resolveSanaCheckpoint, resolveVae } from '../../nodes/models_dir.ts';
import { emptyLatent } from '../../nodes/sana/empty_latent.ts';
import { SANA_ALIASES } from '../../nodes/sana/comfy_aliases.ts';
import { candidatesFor, mapModelName } from '../../nodes/sana/model_names.ts';
import { applyPag, parsePagLayers } from '../../nodes/sana/pag.ts';
import { selectResolution } from '../../nodes/sana/resolution_select.ts';
import type { SanaModelRef } from '../../nodes/sana/types.ts';
import { TINY, TINY_SPRINT, mappedModelsDir, repoModelsDir, testServices } from './helpers.ts';

const services = testServices();

describe('EmptySanaLatent', () => {
  it('makes a zero (B, 32, H/32, W/32) latent', () => {
    const l = emptyLatent(512, 256, 2);
    expect(l.shape).toEqual([2, 32, 8, 16]);
    expect(l.samples.length).toBe(2 * 32 * 8 * 16);
    expect(l.samples.every((v) => v === 0)).toBe(true);
    expect(l.targetSize).toBeUndefined();
  });
  it('bins to the nearest bucket and remembers the requested size', () => {
    // h/w = 0.797 -> bucket "0.78" = 896x1152 in the 1024 table, 448x576 in the 512 table.
    const l = emptyLatent(1024, 816, 1, '1024px');
    expect(l.shape).toEqual([1, 32, 896 / 32, 1152 / 32]);
    expect(l.targetSize).toEqual({ height: 816, width: 1024 });
    expect(emptyLatent(512, 408, 1, '512px').shape).toEqual([1, 32, 448 / 32, 576 / 32]);
    // h/w = 0.75 is as close to "0.72" as to "0.78": the first key in table order wins.
    expect(emptyLatent(512, 384, 1, '512px').shape).toEqual([1, 32, 416 / 32, 576 / 32]);
    // An exact bucket needs no resize afterwards.
    expect(emptyLatent(1024, 1024, 1, '1024px').targetSize).toBeUndefined();
  });
  it('refuses sizes below one latent pixel, naming the input', () => {
    expect(() => emptyLatent(16, 512, 1)).toThrow(/width must be an integer >= 32/);
  });
});

const model: SanaModelRef = {
  kind: 'sana_transformer',
  name: TINY,
  path: '/x',
  dtype: 'f32',
  device: 'cpu',
  latentChannels: 32,
  sampleSize: 16,
  numLayers: 20,
  captionChannels: 64,
  flowShift: 3,
};

describe('PAG', () => {
  it('parses layer lists', () => {
    expect(parsePagLayers('8', 20)).toEqual([8]);
    expect(parsePagLayers(' 9, 8,8 ', 20)).toEqual([8, 9]);
    expect(parsePagLayers('transformer_blocks.14', 28)).toEqual([14]);
    expect(() => parsePagLayers('20', 20)).toThrow(/blocks 0..19/);
    expect(() => parsePagLayers('a', 20)).toThrow(/"a" is not a block index/);
    expect(() => parsePagLayers(' , ', 20)).toThrow(/empty/);
  });
  it('returns a patched clone and never mutates its input', () => {
    const frozen = Object.freeze({ ...model });
    const patched = applyPag(frozen, 2.5, '8,9');
    expect(patched).not.toBe(frozen);
    expect(patched.pag).toEqual({ scale: 2.5, layers: [8, 9] });
    expect(frozen.pag).toBeUndefined();
    // Re-patching replaces the patch; scale 0 removes it.
    expect(applyPag(patched, 1, '3').pag).toEqual({ scale: 1, layers: [3] });
    expect(applyPag(patched, 0, '3').pag).toBeUndefined();
    expect(patched.pag).toEqual({ scale: 2.5, layers: [8, 9] });
  });
});

describe('SanaResolutionSelect', () => {
  it('follows ComfyUI_ExtraModels (first table value is the width)', () => {
    expect(selectResolution('1024px', '1.00')).toEqual({ width: 1024, height: 1024 });
    expect(selectResolution('1024px', '0.25')).toEqual({ width: 512, height: 2048 });
    expect(selectResolution('512px', '4.00')).toEqual({ width: 1024, height: 256 });
    expect(selectResolution('2K', '1.00')).toEqual({ width: 2048, height: 2048 });
    expect(selectResolution('4K', '1.00')).toEqual({ width: 4096, height: 4096 });
    expect(() => selectResolution('1024px', '0.26')).toThrow(/0.26 is not in the 1024px table/);
  });
});

describe('models folder', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'models-dir-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('lists the tiny pipeline as checkpoint, VAE and text encoder', () => {
    const base = repoModelsDir();
    expect(listSanaCheckpoints(base).map((c) => c.name)).toContain(TINY);
    expect(listVaes(base).map((c) => c.name)).toContain(TINY);
    expect(listTextEncoders(base).map((c) => c.name)).toContain(TINY);
    const ck = resolveSanaCheckpoint(TINY, base);
    expect(ck.transformer).toBe(path.join(base, TINY, 'transformer'));
    expect(ck.schedulerConfig).toBe(path.join(base, TINY, 'scheduler', 'scheduler_config.json'));
  });

  it('finds standalone VAE and Gemma downloads, one org level deep, and skips incomplete folders', () => {
    const base = repoModelsDir();
    const vae = path.join(tmp, 'vae', 'mit-han-lab', 'dc-ae-f32c32-sana-1.0-diffusers');
    fs.mkdirSync(vae, { recursive: true });
    for (const f of ['config.json', 'diffusion_pytorch_model.safetensors']) fs.copyFileSync(path.join(base, TINY, 'vae', f), path.join(vae, f));
    const te = path.join(tmp, 'text_encoders', 'gemma-2-2b-it');
    fs.mkdirSync(te, { recursive: true });
    fs.copyFileSync(path.join(base, TINY, 'text_encoder', 'config.json'), path.join(te, 'config.json'));
    fs.symlinkSync(path.join(base, TINY, 'text_encoder', 'model.safetensors'), path.join(te, 'model.safetensors'));
    fs.mkdirSync(path.join(tmp, 'vae', 'empty'));
    expect(listVaes(tmp).map((v) => v.name)).toEqual(['vae/mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers']);
    // No tokenizer yet: not a usable text encoder.
    expect(listTextEncoders(tmp)).toEqual([]);
    fs.symlinkSync(path.join(base, TINY, 'tokenizer', 'tokenizer.json'), path.join(te, 'tokenizer.json'));
    expect(listTextEncoders(tmp).map((t) => [t.name, t.textEncoder, t.tokenizer])).toEqual([['text_encoders/gemma-2-2b-it', te, te]]);
    expect(resolveVae('vae/mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers', tmp).vae).toBe(vae);
  });

  it('rejects names outside the folder and explains missing ones', () => {
    expect(() => resolveSanaCheckpoint('../etc', tmp)).toThrow(/must be a path inside the models folder/);
    expect(() => resolveSanaCheckpoint('sana/Nope', tmp)).toThrow(/"sana\/Nope" was not found in the models folder/);
  });
});

describe('foreign model names', () => {
  it('lists the standard download locations', () => {
    expect(candidatesFor('sana', 'Efficient-Large-Model/Sana_1600M_1024px_MultiLing')).toEqual([
      'sana/Sana_1600M_1024px_MultiLing_diffusers',
      'sana/Efficient-Large-Model/Sana_1600M_1024px_MultiLing_diffusers',
      'sana/Sana_1600M_1024px_MultiLing',
      'sana/Efficient-Large-Model/Sana_1600M_1024px_MultiLing',
    ]);
    expect(candidatesFor('sana', 'Sana_1600M_1024px_MultiLing.pth')[0]).toBe('sana/Sana_1600M_1024px_MultiLing_diffusers');
    expect(candidatesFor('vae', 'mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers')).toEqual([
      'vae/dc-ae-f32c32-sana-1.0-diffusers',
      'vae/mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers',
    ]);
  });

  it('maps through models/model_map.json, names what cannot run, and says what to do otherwise', () => {
    const base = mappedModelsDir();
    try {
      expect(mapModelName('sana', 'Efficient-Large-Model/Sana_1600M_1024px_MultiLing', 'N input x', base)).toBe(TINY);
      expect(mapModelName('sana', TINY, 'N input x', base)).toBe(TINY);
      // Sprint and SANA 1.5 ids run now: model_map.json, else their diffusers folder.
      expect(mapModelName('sana', 'Efficient-Large-Model/Sana_Sprint_1.6B_1024px', 'N input x', base)).toBe(TINY_SPRINT);
      fs.symlinkSync(path.join(base, TINY_SPRINT), path.join(base, 'sana', 'Sana_Sprint_0.6B_1024px_diffusers'), 'dir');
      fs.writeFileSync(path.join(base, 'model_map.json'), '{}');
      expect(mapModelName('sana', 'Efficient-Large-Model/Sana_Sprint_0.6B_1024px', 'N input x', base)).toBe('sana/Sana_Sprint_0.6B_1024px_diffusers');
      expect(() => mapModelName('sana', 'Efficient-Large-Model/SANA1.5_4.8B_1024px', 'SanaCheckpointLoader input ckpt_name', base)).toThrow(
        /SanaCheckpointLoader input ckpt_name: "Efficient-Large-Model\/SANA1\.5_4\.8B_1024px" is not in the models folder.*sana\/SANA1\.5_4\.8B_1024px_diffusers/,
      );
      expect(() => mapModelName('text_encoders', 'unsloth/gemma-2-2b-it-bnb-4bit', 'GemmaLoader input model_name', base)).toThrow(/4-bit/);
      expect(() => mapModelName('sana', 'Efficient-Large-Model/Sana_600M_512px', 'SanaCheckpointLoader input ckpt_name', base)).toThrow(
        /SanaCheckpointLoader input ckpt_name: "Efficient-Large-Model\/Sana_600M_512px" is not in the models folder.*sana\/Sana_600M_512px_diffusers.*model_map\.json/,
      );
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('ExtraModels aliases: devices', () => {
  const alias = (name: string) => SANA_ALIASES.find((a) => a.alias.name === name)!.alias;
  beforeAll(() => void repoModelsDir());
  it('GemmaLoader keeps auto and cpu, asks for the GPU on cuda / cuda:N; loaders without a device input use auto', () => {
    const dev = (device: string) => alias('GemmaLoader').mapInputs!({ model_name: TINY, device, dtype: 'default' }, services).device;
    expect(['auto', 'cpu', 'cuda', 'cuda:1'].map(dev)).toEqual(['auto', 'cpu', 'cuda', 'cuda']);
    expect(
      alias('SanaCheckpointLoader').mapInputs!({ ckpt_name: TINY, model: 'SanaMS_600M_P1_D28', dtype: 'auto', enable_cfg_passthrough: true }, services).device,
    ).toBe('auto');
    expect(alias('ExtraVAELoader').mapInputs!({ vae_name: TINY, vae_type: 'dcae-f32c32-sana-1.0-diffusers', dtype: 'BF16' }, services).device).toBe('auto');
  });
});
