// The shipped workflows and ComfyUI users' Sana workflows: conversion (UI -> API) and
// validation against the product registry. Running them is in test/e2e.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertUiToApi } from '../../engine/convert.ts';
import { validatePrompt, type ApiPrompt } from '../../engine/index.ts';
import { encodePng } from '../../nodes/image/png.ts';
import { apiToUi } from '../../workflows/api_to_ui.ts';
import {
  REFERENCE_WORKFLOWS,
  REPO,
  mappedModelsDir,
  productRegistry,
  productRegistry as productRegistryIn,
  readJson,
  repoModelsDir,
  testServices,
} from './helpers.ts';

const registryAlias = (name: string) => (i: Record<string, unknown>) => productRegistry().get(name)!.mapInputs!(i, testServices());
const strip = (p: ApiPrompt) => Object.fromEntries(Object.entries(p).map(([id, n]) => [id, { class_type: n.class_type, inputs: n.inputs }]));

// The img2img / inpaint workflows' LoadImage validates against the input folder: give it their
// example.png (any picture will do for validation).
const inputDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-wf-input-'));
fs.writeFileSync(path.join(inputDir, 'example.png'), encodePng({ width: 32, height: 32, channels: 4, data: new Uint8Array(32 * 32 * 4).fill(200) }));
afterAll(() => fs.rmSync(inputDir, { recursive: true, force: true }));

for (const [name, output] of [
  ['sana_default', '8'],
  ['sana_sprint', '7'],
  ['sana_lora', '8'],
  ['sana_img2img', '8'],
  ['sana_inpaint', '8'],
] as const)
  describe(`workflows/${name}`, () => {
    // Generates the tiny models when missing.
    beforeAll(() => void repoModelsDir());
    const productRegistry = () => productRegistryIn(testServices({ input: inputDir }));
    const api = readJson<ApiPrompt>(path.join(REPO, `workflows/${name}.api.json`));
    const ui = readJson(path.join(REPO, `workflows/${name}.ui.json`));

    it('the UI file converts to exactly the API file', () => {
      const registry = productRegistry();
      const { prompt, warnings } = convertUiToApi(ui, registry.objectInfo());
      expect(warnings).toEqual([]);
      expect(strip(prompt)).toEqual(strip(api));
    });

    it('the UI file is what api_to_ui.ts makes of the API file (kept in sync)', () => {
      expect(apiToUi(api, productRegistry().objectInfo())).toEqual(ui);
    });

    it('validates against the registry with the tiny models', () => {
      const v = validatePrompt(api, productRegistry());
      if (!v.ok) throw new Error(JSON.stringify(v, null, 2));
      expect(v.outputs).toEqual([output]);
    });
  });

describe("ComfyUI users' Sana workflows", () => {
  let models: string;
  beforeAll(() => {
    models = mappedModelsDir();
  });
  const productRegistry = () => productRegistryIn(testServices({ input: inputDir, models }));
  afterAll(() => fs.rmSync(models, { recursive: true, force: true }));

  for (const file of ['Sana_FlowEuler.json', 'Sana_FlowEuler_2K.json', 'Sana_FlowEuler_4K.json']) {
    it(`${file} converts and validates (aliases + model-name mapping)`, () => {
      const registry = productRegistry();
      const { prompt } = convertUiToApi(readJson(path.join(REFERENCE_WORKFLOWS, file)), registry.objectInfo());
      const v = validatePrompt(prompt, registry);
      if (!v.ok) throw new Error(JSON.stringify(v, null, 2));
      const classes = new Set(Object.values(v.prompt).map((n) => n.class_type));
      expect(classes).toContain('SanaCheckpointLoader');
      expect(classes).toContain('KSampler');
      expect(v.outputs.length).toBe(1);
    });
  }

  it('Sana_FlowEuler.json converts to the API prompt of shared/spec/comfyui-api.md §3.5', () => {
    const registry = productRegistry();
    const { prompt } = convertUiToApi(readJson(path.join(REFERENCE_WORKFLOWS, 'Sana_FlowEuler.json')), registry.objectInfo());
    expect(prompt['25'].inputs).toEqual({
      ckpt_name: 'Efficient-Large-Model/Sana_1600M_1024px_MultiLing',
      model: 'SanaMS_1600M_P1_D20',
      dtype: 'auto',
      enable_cfg_passthrough: true,
    });
    expect(prompt['10'].inputs).toMatchObject({
      seed: 750392164154046,
      steps: 28,
      cfg: 4.5,
      sampler_name: 'euler',
      scheduler: 'normal',
      denoise: 1,
      model: ['25', 0],
      latent_image: ['3', 0],
    });
    expect(prompt['3'].inputs).toMatchObject({ width: ['6', 0], height: ['6', 1], batch_size: 1 });
    expect(prompt['29'].inputs).toEqual({ vae_name: 'mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers', vae_type: 'dcae-f32c32-sana-1.0-diffusers', dtype: 'BF16' });
  });

  for (const file of ['SANA-Sprint.json', 'SANA-Sprint-0.6B.json']) {
    it(`${file} converts and validates (ScmModelSampling, KSampler scm / sgm_uniform, Sprint model names)`, () => {
      const registry = productRegistry();
      const { prompt } = convertUiToApi(readJson(path.join(REFERENCE_WORKFLOWS, file)), registry.objectInfo());
      const v = validatePrompt(prompt, registry);
      if (!v.ok) throw new Error(JSON.stringify(v, null, 2));
      expect(prompt['17'].inputs).toEqual({ model: ['9', 0], cfg_scale: 4.5, zsnr: false });
      expect(prompt['19'].inputs).toMatchObject({ steps: 2, cfg: 1, sampler_name: 'scm', scheduler: 'sgm_uniform', denoise: 1, model: ['17', 0] });
      expect(v.outputs.length).toBe(1);
    });
  }

  it('KSampler: scm needs cfg 1, sgm_uniform only goes with scm', () => {
    const ks = registryAlias('KSampler');
    const base = { seed: 1, steps: 2, cfg: 1, sampler_name: 'scm', scheduler: 'sgm_uniform', denoise: 1 };
    expect(ks(base)).toMatchObject({ sampler: 'scm', steps: 2, denoise: 1 });
    expect(() => ks({ ...base, cfg: 4.5 })).toThrow(/^KSampler input cfg: .*ScmModelSampling/);
    expect(() => ks({ ...base, sampler_name: 'euler' })).toThrow(/^KSampler input scheduler: sgm_uniform/);
    expect(ks({ ...base, sampler_name: 'euler', scheduler: 'normal', cfg: 4.5 })).toMatchObject({ sampler: 'flow_euler' });
  });

  it('Sana_CogVideoX.json is refused, naming the node classes that do not exist here', () => {
    const registry = productRegistry();
    const { prompt } = convertUiToApi(readJson(path.join(REFERENCE_WORKFLOWS, 'Sana_CogVideoX.json')), registry.objectInfo());
    const v = validatePrompt(prompt, registry);
    expect(v.ok).toBe(false);
    expect(JSON.stringify(v)).toMatch(/CogVideo|VHS_VideoCombine|ImageResizeKJ|CLIPLoader/);
  });
});
