// ComfyUI users' Sana workflows (NVlabs' Sana_FlowEuler*, ComfyUI_ExtraModels nodes) run unchanged
// through the aliases, with their model names mapped onto the tiny models by model_map.json.
// Only the image size and step count are lowered, so the CPU run stays short.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertUiToApi } from '../../engine/convert.ts';
import { Executor, type NodeRegistry } from '../../engine/index.ts';
import { decodePng } from '../../nodes/image/png.ts';
import { REFERENCE_WORKFLOWS, mappedModelsDir, productRegistry, readJson, testServices } from '../nodes/helpers.ts';

const out = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-comfy-'));
let models: string;

describe("ComfyUI users' Sana workflows run on the tiny models", () => {
  let registry: NodeRegistry;
  let executor: Executor;
  beforeAll(() => {
    models = mappedModelsDir();
    registry = productRegistry(testServices({ models, output: out, temp: out, input: out }));
    executor = new Executor(registry);
  });
  afterAll(() => {
    fs.rmSync(out, { recursive: true, force: true });
    fs.rmSync(models, { recursive: true, force: true });
  });

  // The Sprint ones (ScmModelSampling + KSampler scm, 2 steps) run the tiny Sprint pipeline.
  for (const file of ['Sana_FlowEuler.json', 'Sana_FlowEuler_2K.json', 'Sana_FlowEuler_4K.json', 'SANA-Sprint.json', 'SANA-Sprint-0.6B.json']) {
    it(`${file}`, { timeout: 600_000 }, async () => {
      const { prompt } = convertUiToApi(readJson(path.join(REFERENCE_WORKFLOWS, file)), registry.objectInfo());
      for (const node of Object.values(prompt)) {
        if (node.class_type === 'EmptyDCAELatentImage' || node.class_type === 'EmptySanaLatentImage') Object.assign(node.inputs, { width: 256, height: 192 });
        if (node.class_type === 'KSampler' && node.inputs.sampler_name !== 'scm') node.inputs.steps = 3;
      }
      const r = await executor.execute(prompt, { promptId: file });
      if (r.status !== 'success') throw new Error(JSON.stringify(r.error, null, 2));
      const [img] = Object.values(r.outputs).flatMap((o) => (o.images ?? []) as Array<{ filename: string; subfolder: string; type: string }>);
      expect(img.type).toBe('temp');
      const png = decodePng(fs.readFileSync(path.join(out, img.subfolder, img.filename)));
      expect([png.width, png.height]).toEqual([256, 192]);
      expect(r.ran).toContain(Object.keys(prompt).find((id) => prompt[id].class_type === 'KSampler'));
    });
  }
});
