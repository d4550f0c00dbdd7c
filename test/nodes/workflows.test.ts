// The shipped default workflow and ComfyUI users' Sana workflows: conversion (UI -> API) and
// validation against the product registry. Running them is in test/e2e.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertUiToApi } from '../../engine/convert.ts';
import { validatePrompt, type ApiPrompt } from '../../engine/index.ts';
import { setModelsDir } from '../../nodes/models_dir.ts';
import { apiToUi } from '../../workflows/api_to_ui.ts';
import { REFERENCE_WORKFLOWS, REPO, mappedModelsDir, productRegistry, readJson, repoModelsDir } from './helpers.ts';

const strip = (p: ApiPrompt) => Object.fromEntries(Object.entries(p).map(([id, n]) => [id, { class_type: n.class_type, inputs: n.inputs }]));

describe('workflows/sana_default', () => {
  beforeAll(() => setModelsDir(repoModelsDir()));
  const api = readJson<ApiPrompt>(path.join(REPO, 'workflows/sana_default.api.json'));
  const ui = readJson(path.join(REPO, 'workflows/sana_default.ui.json'));

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
    expect(v.outputs).toEqual(['8']);
  });
});

describe("ComfyUI users' Sana workflows", () => {
  let models: string;
  beforeAll(() => {
    models = mappedModelsDir();
    setModelsDir(models);
  });
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

  it('Sana_FlowEuler.json converts to the API prompt of the spec (§3.5)', () => {
    const registry = productRegistry();
    const { prompt } = convertUiToApi(readJson(path.join(REFERENCE_WORKFLOWS, 'Sana_FlowEuler.json')), registry.objectInfo());
    expect(prompt['25'].inputs).toEqual({ ckpt_name: 'Efficient-Large-Model/Sana_1600M_1024px_MultiLing', model: 'SanaMS_1600M_P1_D20', dtype: 'auto', enable_cfg_passthrough: true });
    expect(prompt['10'].inputs).toMatchObject({ seed: 750392164154046, steps: 28, cfg: 4.5, sampler_name: 'euler', scheduler: 'normal', denoise: 1, model: ['25', 0], latent_image: ['3', 0] });
    expect(prompt['3'].inputs).toMatchObject({ width: ['6', 0], height: ['6', 1], batch_size: 1 });
    expect(prompt['29'].inputs).toEqual({ vae_name: 'mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers', vae_type: 'dcae-f32c32-sana-1.0-diffusers', dtype: 'BF16' });
  });

  for (const file of ['SANA-Sprint.json', 'SANA-Sprint-0.6B.json']) {
    it(`${file} is refused, naming what cannot map`, () => {
      const registry = productRegistry();
      const { prompt } = convertUiToApi(readJson(path.join(REFERENCE_WORKFLOWS, file)), registry.objectInfo());
      const v = validatePrompt(prompt, registry);
      expect(v.ok).toBe(false);
      expect(JSON.stringify(v)).toContain('ScmModelSampling');
      // Without the unknown class, the sampler input is what does not map.
      const { '17': _scm, ...rest } = prompt;
      rest['19'] = { ...rest['19'], inputs: { ...rest['19'].inputs, model: ['9', 0] } };
      const v2 = validatePrompt(rest, registry);
      expect(v2.ok).toBe(false);
      const errs = JSON.stringify(v2);
      expect(errs).toContain('sampler_name');
      expect(errs).toContain('scm');
    });
  }

  it('Sana_CogVideoX.json is refused, naming the node classes that do not exist here', () => {
    const registry = productRegistry();
    const { prompt } = convertUiToApi(readJson(path.join(REFERENCE_WORKFLOWS, 'Sana_CogVideoX.json')), registry.objectInfo());
    const v = validatePrompt(prompt, registry);
    expect(v.ok).toBe(false);
    expect(JSON.stringify(v)).toMatch(/CogVideo|VHS_VideoCombine|ImageResizeKJ|CLIPLoader/);
  });
});
