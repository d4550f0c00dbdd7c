// SanaLoraLoader through the engine's executor on the shipped tiny model and tiny LoRA: the
// shipped LoRA workflow (SanaDiT → SanaLoraLoader → PAG) produces a PNG that differs from the
// unpatched run, the base model stays cached unpatched beside the patched entry, stacking and the
// ComfyUI alias run, freeing the base frees its patched models, and a LoRA that does not fit is
// refused on the loader node naming the input and the first bad key.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertUiToApi } from '../../engine/convert.ts';
import { Executor, type ApiPrompt } from '../../engine/index.ts';
import { apiToUi } from '../../workflows/api_to_ui.ts';
import { decodePng } from '../../nodes/image/png.ts';
import { writeSafetensors } from '../../native/safetensors.ts';
import { makeTinyLoras } from '../../scripts/make-tiny-models.ts';
import { REPO, productRegistry, readJson, repoModelsDir, testServices, TINY } from './helpers.ts';

const SLOW = 600_000;
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-lora-node-'));
const badModels = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-lora-models-'));

describe('SanaLoraLoader', () => {
  beforeAll(() => {
    makeTinyLoras(repoModelsDir());
  });
  afterAll(() => {
    fs.rmSync(out, { recursive: true, force: true });
    fs.rmSync(badModels, { recursive: true, force: true });
  });

  const api = readJson<ApiPrompt>(path.join(REPO, 'workflows/sana_lora.api.json'));
  // Fewer steps than shipped: enough to show the LoRA's effect, cheap on the shared CPU.
  api['5']!.inputs.steps = 3;
  const services = testServices({ output: out, temp: out, input: out });
  const executor = new Executor(productRegistry(services));
  const modelCache = () => services.modelCache;
  const pixels = (r: Awaited<ReturnType<Executor['execute']>>): Buffer => {
    if (r.status !== 'success') throw new Error(JSON.stringify(r.error, null, 2));
    const img = (r.outputs['8']!.images as Array<{ filename: string; subfolder: string }>)[0]!;
    return Buffer.from(decodePng(fs.readFileSync(path.join(out, img.subfolder, img.filename))).data);
  };

  it('workflows/sana_lora.ui.json is what api_to_ui.ts makes of the API file and converts back to it', () => {
    const shipped = readJson<ApiPrompt>(path.join(REPO, 'workflows/sana_lora.api.json'));
    const ui = readJson(path.join(REPO, 'workflows/sana_lora.ui.json'));
    const info = productRegistry().objectInfo();
    expect(apiToUi(shipped, info)).toEqual(ui);
    const { prompt, warnings } = convertUiToApi(ui, info);
    expect(warnings).toEqual([]);
    const strip = (p: ApiPrompt) => Object.fromEntries(Object.entries(p).map(([id, n]) => [id, { class_type: n.class_type, inputs: n.inputs }]));
    expect(strip(prompt)).toEqual(strip(shipped));
  });

  let patched: Buffer;
  it('the shipped LoRA workflow makes a PNG; base and patched models are cached side by side', { timeout: SLOW }, async () => {
    patched = pixels(await executor.execute(api, { promptId: 'l1' }));
    expect(patched.length).toBe(256 * 256 * 3);
    const kinds = modelCache()
      .stats()
      .entries.map((e) => e.kind);
    expect(kinds).toContain('sana_transformer');
    expect(kinds).toContain('sana_transformer_lora');
    const base = modelCache()
      .stats()
      .entries.find((e) => e.kind === 'sana_transformer')!;
    const lora = modelCache()
      .stats()
      .entries.find((e) => e.kind === 'sana_transformer_lora')!;
    // Only the merged weights are held by the patched entry.
    expect(lora.bytes).toBeLessThan(base.bytes);
  });

  it('strength 0 gives the unpatched image, and the cached base is not modified', { timeout: SLOW }, async () => {
    const off = structuredClone(api);
    off['9']!.inputs.strength = 0;
    off['8']!.inputs.filename_prefix = 'off';
    const plain = pixels(await executor.execute(off, { promptId: 'l2' }));
    expect(plain.equals(patched)).toBe(false);
    // Same graph without the loader at all: identical to strength 0, so the base was untouched.
    const none = structuredClone(api);
    delete none['9'];
    none['3']!.inputs.model = ['1', 0];
    none['8']!.inputs.filename_prefix = 'none';
    expect(pixels(await executor.execute(none, { promptId: 'l3' })).equals(plain)).toBe(true);
    // And the LoRA again, from the cached patched model: the first image.
    const again = structuredClone(api);
    again['8']!.inputs.filename_prefix = 'again';
    const loads = modelCache().stats().loads;
    expect(pixels(await executor.execute(again, { promptId: 'l4' })).equals(patched)).toBe(true);
    expect(modelCache().stats().loads).toBe(loads);
  });

  it('stacks (ComfyUI LoraLoaderModelOnly after SanaLoraLoader, PAG first) and freeing the base frees its patched models', { timeout: SLOW }, async () => {
    const st = structuredClone(api);
    // SanaDiT → PAG → SanaLoraLoader → LoraLoaderModelOnly → sampler
    st['3']!.inputs.model = ['1', 0];
    st['9']!.inputs.model = ['3', 0];
    st['9']!.inputs.strength = 0.5;
    st['10'] = { class_type: 'LoraLoaderModelOnly', inputs: { model: ['9', 0], lora_name: 'sana_tiny_lora.safetensors', strength_model: 0.5 } };
    st['5']!.inputs.model = ['10', 0];
    st['8']!.inputs.filename_prefix = 'stacked';
    // 0.5 + 0.5 of one LoRA is the LoRA at 1 (up to f32 rounding of the merge, then PNG quantising).
    const img = pixels(await executor.execute(st, { promptId: 'l5' }));
    let maxDiff = 0;
    for (let i = 0; i < img.length; i++) maxDiff = Math.max(maxDiff, Math.abs(img[i]! - patched[i]!));
    expect(maxDiff).toBeLessThanOrEqual(1);
    expect(
      modelCache()
        .stats()
        .entries.filter((e) => e.kind === 'sana_transformer_lora').length,
    ).toBeGreaterThanOrEqual(2);
    modelCache().clear();
    expect(modelCache().stats().entries).toEqual([]);
  });

  it('refuses a LoRA that does not fit, naming the node, input and first bad key', { timeout: SLOW }, async () => {
    fs.mkdirSync(path.join(badModels, 'sana'), { recursive: true });
    fs.symlinkSync(path.join(repoModelsDir(), TINY), path.join(badModels, TINY), 'dir');
    fs.mkdirSync(path.join(badModels, 'loras'));
    const A = new Float32Array(4 * 65);
    writeSafetensors(
      path.join(badModels, 'loras', 'wrong.safetensors'),
      {
        'transformer.transformer_blocks.0.attn1.to_q.lora_A.weight': { shape: [4, 65], dtype: 'F32', data: A },
        'transformer.transformer_blocks.0.attn1.to_q.lora_B.weight': { shape: [64, 4], dtype: 'F32', data: new Float32Array(256) },
      },
      {},
    );
    {
      const bad = structuredClone(api);
      bad['9']!.inputs.lora_name = 'wrong.safetensors';
      const r = await new Executor(productRegistry(testServices({ models: badModels, output: out, temp: out, input: out }))).execute(bad, { promptId: 'l6' });
      expect(r.status).toBe('error');
      const msg = JSON.stringify(r.error);
      expect(msg).toContain('SanaLoraLoader input lora_name');
      expect(msg).toContain('transformer.transformer_blocks.0.attn1.to_q.lora_A.weight');
      expect(msg).toContain('[4, 65]');
      expect(msg).toContain('[64, 64]');
    }
  });
});
