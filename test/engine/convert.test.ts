import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { convertUiToApi, validatePrompt, type ApiPrompt } from '../../engine/index.ts';
import { comfyRegistry } from './fixtures/comfy-doubles.ts';
import { workflowsDir } from './paths.ts';

const registry = comfyRegistry();
const objectInfo = registry.objectInfo();
const load = (name: string) => JSON.parse(fs.readFileSync(path.join(workflowsDir, name), 'utf8')) as Record<string, unknown>;
const stripMeta = (p: ApiPrompt) => Object.fromEntries(Object.entries(p).map(([id, n]) => [id, { class_type: n.class_type, inputs: n.inputs }]));

describe('UI -> API conversion of the reference workflows', () => {
  it('converts Sana_FlowEuler.json exactly as shared/spec/comfyui-api.md §3.5 shows', () => {
    const wf = load('Sana_FlowEuler.json');
    const text14 = (wf.nodes as { id: number; widgets_values: unknown[] }[]).find((n) => n.id === 14)!.widgets_values[0] as string;
    expect(text14.startsWith('make me a logo that says "So Fast"')).toBe(true);
    const { prompt, warnings } = convertUiToApi(wf, objectInfo);
    expect(warnings).toEqual([]);
    expect(stripMeta(prompt)).toEqual({
      '25': {
        class_type: 'SanaCheckpointLoader',
        inputs: { ckpt_name: 'Efficient-Large-Model/Sana_1600M_1024px_MultiLing', model: 'SanaMS_1600M_P1_D20', dtype: 'auto', enable_cfg_passthrough: true },
      },
      '9': { class_type: 'GemmaLoader', inputs: { model_name: 'Efficient-Large-Model/gemma-2-2b-it', device: 'cuda', dtype: 'BF16' } },
      '14': { class_type: 'SanaTextEncode', inputs: { text: text14, GEMMA: ['9', 0] } },
      '8': { class_type: 'SanaTextEncode', inputs: { text: '""', GEMMA: ['9', 0] } },
      '6': { class_type: 'SanaResolutionSelect', inputs: { model: '1024px', ratio: '1.00' } },
      '3': { class_type: 'EmptyDCAELatentImage', inputs: { width: ['6', 0], height: ['6', 1], batch_size: 1 } },
      '15': { class_type: 'EmptyDCAELatentImage', inputs: { width: 512, height: 512, batch_size: 1 } },
      '10': {
        class_type: 'KSampler',
        inputs: {
          seed: 750392164154046,
          steps: 28,
          cfg: 4.5,
          sampler_name: 'euler',
          scheduler: 'normal',
          denoise: 1,
          model: ['25', 0],
          positive: ['14', 0],
          negative: ['8', 0],
          latent_image: ['3', 0],
        },
      },
      '29': {
        class_type: 'ExtraVAELoader',
        inputs: { vae_name: 'mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers', vae_type: 'dcae-f32c32-sana-1.0-diffusers', dtype: 'BF16' },
      },
      '4': { class_type: 'VAEDecode', inputs: { samples: ['10', 0], vae: ['29', 0] } },
      '13': { class_type: 'PreviewImage', inputs: { images: ['4', 0] } },
    });
    // Untitled nodes take the definition's display name, as the frontend's default title.
    expect(prompt['25']._meta).toEqual({ title: 'Sana Checkpoint Loader' });
    expect(prompt['10']._meta).toEqual({ title: 'KSampler' });
    // The orphan latent (15) is emitted but not validated/executed: only 13 and its ancestors.
    const v = validatePrompt(prompt, registry);
    expect(v.ok && v.outputs).toEqual(['13']);
  });

  it.each(['Sana_FlowEuler_2K.json', 'Sana_FlowEuler_4K.json', 'SANA-Sprint.json', 'SANA-Sprint-0.6B.json'])(
    'converts %s into a prompt that validates',
    (file) => {
      const wf = load(file);
      const { prompt, warnings } = convertUiToApi(wf, objectInfo);
      expect(warnings).toEqual([]);
      const nodes = wf.nodes as { id: number; type: string }[];
      expect(Object.keys(prompt).sort()).toEqual(nodes.map((n) => String(n.id)).sort());
      for (const n of nodes) expect(prompt[String(n.id)].class_type).toBe(n.type);
      const v = validatePrompt(prompt, registry);
      if (!v.ok) throw new Error(JSON.stringify(v, null, 1));
      // Linked converted widgets win over the saved [512, 512, 1]; batch_size keeps its slot.
      const latent = Object.values(prompt).find((n) => n.class_type === 'EmptySanaLatentImage')!;
      expect(latent.inputs.batch_size).toBe(1);
      expect(Array.isArray(latent.inputs.width) && Array.isArray(latent.inputs.height)).toBe(true);
      // The seed's control_after_generate value is skipped: steps follows seed directly.
      const ks = Object.values(prompt).find((n) => n.class_type === 'KSampler')!;
      expect(typeof ks.inputs.seed).toBe('number');
      expect(typeof ks.inputs.steps).toBe('number');
      expect(ks.inputs).not.toHaveProperty('control_after_generate');
    },
  );

  it('converts SANA-Sprint.json with the Sprint sampler settings and 3-value checkpoint loader', () => {
    const { prompt } = convertUiToApi(load('SANA-Sprint.json'), objectInfo);
    expect(prompt['19'].inputs).toEqual({
      seed: 763443243300024,
      steps: 2,
      cfg: 1,
      sampler_name: 'scm',
      scheduler: 'sgm_uniform',
      denoise: 1,
      model: ['17', 0],
      positive: ['7', 0],
      negative: ['6', 0],
      latent_image: ['4', 0],
    });
    expect(prompt['17'].inputs).toEqual({ cfg_scale: 4.5, zsnr: false, model: ['9', 0] });
    expect(prompt['9'].inputs).toEqual({
      ckpt_name: 'Efficient-Large-Model/Sana_Sprint_1.6B_1024px',
      model: 'SanaSprint_1600M_P1_D20',
      dtype: 'FP32',
      enable_cfg_passthrough: true,
    });
  });

  it('converts Sana_CogVideoX.json: dict widgets_values, optional sockets, converted optional widgets', () => {
    const { prompt, warnings } = convertUiToApi(load('Sana_CogVideoX.json'), objectInfo);
    expect(warnings).toEqual([]);
    // Dict-form widgets_values map by name; frontend-only keys (videopreview, pix_fmt) are ignored.
    expect(prompt['25'].inputs).toEqual({
      frame_rate: 8,
      loop_count: 0,
      filename_prefix: 'CogVideoX_Fun',
      format: 'video/h264-mp4',
      pingpong: false,
      save_output: true,
      images: ['33', 0],
    });
    expect(prompt['31'].inputs).toEqual({
      width: 720,
      height: 480,
      upscale_method: 'lanczos',
      keep_proportion: false,
      divisible_by: 2,
      width_input: 0,
      height_input: 0,
      crop: 'disabled',
      image: ['2', 0],
    });
    expect(prompt['26'].inputs).toEqual({
      num_frames: 49,
      steps: 25,
      cfg: 6,
      seed: 1123398248636718,
      scheduler: 'CogVideoXDDIM',
      denoise_strength: 1,
      model: ['34', 0],
      positive: ['27', 0],
      negative: ['28', 0],
      image_cond_latents: ['30', 0],
    });
    expect(prompt['28'].inputs).toEqual({
      prompt: 'The video is not of a high quality, it has a low resolution. Watermark present in each frame. Strange motion trajectory. ',
      strength: 1,
      force_offload: true,
      clip: ['27', 1],
    });
    // Two outputs: PreviewImage 24 and the video combine 25; both validate.
    const v = validatePrompt(prompt, registry);
    if (!v.ok) throw new Error(JSON.stringify(v, null, 1));
    expect(v.outputs.sort()).toEqual(['24', '25']);
  });
});
