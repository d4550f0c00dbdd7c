// The Sana-family nodes (SanaLoraLoader / LoraLoaderModelOnly, ScmModelSampling + KSampler scm,
// VAEEncode, SetLatentNoiseMask, VAEEncodeForInpaint, KSampler denoise < 1) through the real server
// and real ComfyUI clients, on the tiny models. One server for the file: its models folder holds
// the tiny pipelines, the tiny LoRAs and a model_map.json for the ComfyUI users' model names, so
// the shipped API files and the reference UI workflows both resolve. Sizes and steps are lowered
// through the workflows' own inputs to keep the CPU runs short.
import fs from 'node:fs';
import path from 'node:path';
import { CallWrapper, ComfyApi, PromptBuilder, type NodeData } from '@saintno/comfyui-sdk';
import { Client } from '@stable-canvas/comfyui-client';
import { ComfyUIClient } from 'comfy-ui-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { convertUiToApi } from '../../engine/convert.ts';
import type { ObjectInfo } from '../../engine/index.ts';
import { decodePng, encodePng, readPngText } from '../../nodes/image/png.ts';
import { makeTinyLoras } from '../../scripts/make-tiny-models.ts';
import { REFERENCE_WORKFLOWS, REPO, mappedModelsDir, readJson, repoModelsDir } from '../nodes/helpers.ts';
import { startTestServer, type TestServer } from './helpers.ts';

type Prompt = Record<string, { class_type: string; inputs: Record<string, unknown>; _meta?: unknown }>;
type ImageRef = { filename: string; subfolder: string; type: string };

const SLOW = 600_000;
let s: TestServer;
let models: string;
let host: string;

beforeAll(async () => {
  makeTinyLoras(repoModelsDir());
  models = mappedModelsDir();
  fs.symlinkSync(path.join(REPO, 'models', 'loras'), path.join(models, 'loras'), 'dir');
  s = await startTestServer({ modelsDir: models });
  host = s.url.replace(/^http:\/\//, '');
});
afterAll(async () => {
  await s?.close();
  if (s) fs.rmSync(s.dirs.root, { recursive: true, force: true });
  if (models) fs.rmSync(models, { recursive: true, force: true });
});

/** Queues `prompt` with @saintno/comfyui-sdk and downloads the first image of `outputNode`. */
async function runSaintno(prompt: Prompt, outputNode: string, clientId: string, progress?: Array<[number, number]>): Promise<{ ref: ImageRef; png: Buffer }> {
  const api = new ComfyApi(s.url, clientId, { wsTimeout: 60_000 }).init(3, 500);
  try {
    await api.waitForReady();
    const builder = new PromptBuilder(prompt as unknown as NodeData, [], ['images']).setRawOutputNode('images', outputNode);
    let failure: unknown;
    const result = (await new CallWrapper(api, builder)
      .onProgress((p) => progress?.push([p.value, p.max]))
      .onFailed((err) => (failure = err))
      .run()) as { images: { images: ImageRef[] } } | false | undefined;
    if (!result)
      throw new Error(
        `@saintno/comfyui-sdk run failed: ${String((failure as Error | undefined)?.message ?? failure)} ${JSON.stringify((failure as { cause?: unknown } | undefined)?.cause ?? '')}`,
      );
    const images = result.images.images;
    expect(images).toHaveLength(1);
    return { ref: images[0]!, png: Buffer.from(await (await api.getImage(images[0]!)).arrayBuffer()) };
  } finally {
    api.destroy();
  }
}

/** Queues `prompt` with @stable-canvas/comfyui-client and downloads its one saved ('url') image. */
async function runCanvas(prompt: Prompt, clientId: string): Promise<Buffer> {
  const client = new Client({ api_host: host, clientId, WebSocket });
  await client.connect();
  try {
    const out = await client.enqueue(prompt, { disable_random_seed: true, timeout_ms: SLOW - 20_000 });
    // Step previews come as 'buff' images; the saved PNG is the 'url' one.
    const saved = out.images.filter((i) => i.type === 'url');
    expect(saved).toHaveLength(1);
    return Buffer.from(await (await fetch(saved[0]!.data as string)).arrayBuffer());
  } finally {
    client.close();
  }
}

const pixels = (png: Buffer): Uint8Array => decodePng(png).data;
const maxDiff = (a: Uint8Array, b: Uint8Array): number => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};
const sqDist = (a: Uint8Array, b: Uint8Array): number => {
  let d = 0;
  for (let i = 0; i < a.length; i++) d += (a[i]! - b[i]!) ** 2;
  return d;
};

describe('workflows/sana_lora.api.json and LoraLoaderModelOnly through real clients', () => {
  const shipped = readJson<Prompt>(path.join(REPO, 'workflows/sana_lora.api.json'));
  const small = (): Prompt => {
    const p = structuredClone(shipped);
    Object.assign(p['4']!.inputs, { width: 64, height: 64 });
    p['5']!.inputs.steps = 2;
    return p;
  };
  let withLora: Uint8Array;

  test('@saintno/comfyui-sdk: the LoRA changes the image; strength 0 is the image without the LoRA node', { timeout: SLOW }, async () => {
    const lora = small();
    const on = await runSaintno(lora, '8', 'family-lora-on');
    expect(on.ref.type).toBe('output');
    expect(on.ref.filename.startsWith('sana_lora')).toBe(true);
    expect(JSON.parse(readPngText(on.png).prompt)).toEqual(JSON.parse(JSON.stringify(lora)));
    expect([decodePng(on.png).width, decodePng(on.png).height]).toEqual([64, 64]);
    withLora = pixels(on.png);

    const zero = small();
    zero['9']!.inputs.strength = 0;
    zero['8']!.inputs.filename_prefix = 'lora_zero';
    const off = pixels((await runSaintno(zero, '8', 'family-lora-zero')).png);

    const none = small();
    delete none['9'];
    none['3']!.inputs.model = ['1', 0];
    none['8']!.inputs.filename_prefix = 'lora_none';
    const noLora = await runSaintno(none, '8', 'family-lora-none');
    expect(JSON.parse(readPngText(noLora.png).prompt)['9']).toBeUndefined();

    expect(maxDiff(withLora, pixels(noLora.png))).toBeGreaterThan(0);
    expect(Buffer.from(off).equals(Buffer.from(pixels(noLora.png)))).toBe(true);
  });

  test(
    '@stable-canvas/comfyui-client: LoraLoaderModelOnly (ComfyUI inputs) stacked on SanaLoraLoader, 0.5 + 0.5 = the LoRA at 1',
    { timeout: SLOW },
    async () => {
      const st = small();
      st['9']!.inputs.strength = 0.5;
      st['10'] = { class_type: 'LoraLoaderModelOnly', inputs: { model: ['9', 0], lora_name: 'sana_tiny_lora.safetensors', strength_model: 0.5 } };
      st['3']!.inputs.model = ['10', 0];
      st['8']!.inputs.filename_prefix = 'lora_stacked';
      const png = await runCanvas(st, 'family-lora-stacked');
      const embedded = JSON.parse(readPngText(png).prompt) as Prompt;
      expect(embedded['10']).toEqual({
        class_type: 'LoraLoaderModelOnly',
        inputs: { model: ['9', 0], lora_name: 'sana_tiny_lora.safetensors', strength_model: 0.5 },
      });
      // Up to f32 rounding of the two merges, then PNG quantising.
      expect(maxDiff(pixels(png), withLora)).toBeLessThanOrEqual(1);
    },
  );
});

describe('the shared SANA-Sprint.json (ScmModelSampling + KSampler scm) through a real client', () => {
  test("converted with the server's /object_info, queued by @saintno/comfyui-sdk, its PreviewImage fetched as a temp image", { timeout: SLOW }, async () => {
    const plain = new ComfyUIClient(host, 'family-sprint-info');
    const info = (await plain.getObjectInfo()) as unknown as ObjectInfo;
    const ui = readJson(path.join(REFERENCE_WORKFLOWS, 'SANA-Sprint.json'));
    const { prompt } = convertUiToApi(ui, info) as { prompt: Prompt };
    expect(prompt['17']).toMatchObject({ class_type: 'ScmModelSampling', inputs: { model: ['9', 0], cfg_scale: 4.5, zsnr: false } });
    expect(prompt['19']!.inputs).toMatchObject({ sampler_name: 'scm', scheduler: 'sgm_uniform', steps: 2, cfg: 1, model: ['17', 0] });
    expect(prompt['20']!.class_type).toBe('PreviewImage');
    // Smaller than the 1024² that SanaResolutionSelect feeds it; the Sprint model names come from model_map.json.
    Object.assign(prompt['4']!.inputs, { width: 64, height: 64 });
    const progress: Array<[number, number]> = [];
    const { ref, png } = await runSaintno(prompt, '20', 'family-sprint', progress);
    expect(ref.type).toBe('temp');
    expect(progress).toEqual(
      expect.arrayContaining([
        [1, 2],
        [2, 2],
      ]),
    );
    expect([decodePng(png).width, decodePng(png).height]).toEqual([64, 64]);
    const embedded = JSON.parse(readPngText(png).prompt) as Prompt;
    expect(embedded['17']!.class_type).toBe('ScmModelSampling');
    expect(embedded['19']!.inputs.sampler_name).toBe('scm');
  });
});

/** 128² RGBA: a smooth picture, transparent (alpha 0 = masked) over x, y ∈ [32, 64). */
function examplePng(): Buffer {
  const W = 128,
    H = 128;
  const data = new Uint8Array(W * H * 4);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const o = (y * W + x) * 4;
      data[o] = 120 + 100 * Math.sin(x / 12);
      data[o + 1] = 120 + 100 * Math.cos(y / 9);
      data[o + 2] = (2 * x + y) % 256;
      data[o + 3] = x >= 32 && x < 64 && y >= 32 && y < 64 ? 0 : 255;
    }
  return encodePng({ width: W, height: H, channels: 4, data });
}

describe('ComfyUI-named image-to-image and inpainting nodes in one prompt through comfy-ui-client', () => {
  test(
    'VAEEncode → KSampler denoise 0.6, → SetLatentNoiseMask → KSampler, VAEEncodeForInpaint → KSampler, → ScmModelSampling → KSampler scm denoise 0.5',
    { timeout: SLOW },
    async () => {
      const client = new ComfyUIClient(host, 'family-img2img');
      await client.connect();
      try {
        const up = await client.uploadImage(examplePng(), 'family_example.png', true);
        expect(up.name).toBe('family_example.png');
        const sana = 'Efficient-Large-Model/Sana_1600M_1024px_MultiLing';
        const sprint = 'Efficient-Large-Model/Sana_Sprint_1.6B_1024px';
        const vaeName = 'mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers';
        const ks = (model: string, latent: string, extra: Record<string, unknown>) => ({
          class_type: 'KSampler',
          inputs: {
            seed: 3,
            steps: 2,
            cfg: 4.5,
            sampler_name: 'euler',
            scheduler: 'normal',
            denoise: 1,
            model: [model, 0],
            positive: ['3', 0],
            negative: ['4', 0],
            latent_image: [latent, 0],
            ...extra,
          },
        });
        const save = (images: string, prefix: string) => ({ class_type: 'SaveImage', inputs: { images: [images, 0], filename_prefix: prefix } });
        const decode = (samples: string) => ({ class_type: 'VAEDecode', inputs: { samples: [samples, 0], vae: ['5', 0] } });
        const prompt: Prompt = {
          '1': { class_type: 'SanaCheckpointLoader', inputs: { ckpt_name: sana, model: 'SanaMS_1600M_P1_D20', dtype: 'FP32', enable_cfg_passthrough: true } },
          '2': { class_type: 'GemmaLoader', inputs: { model_name: 'Efficient-Large-Model/gemma-2-2b-it', device: 'cpu', dtype: 'FP32' } },
          '3': { class_type: 'SanaTextEncode', inputs: { text: 'a red barn in a green field', GEMMA: ['2', 0] } },
          '4': { class_type: 'GemmaTextEncode', inputs: { text: '', GEMMA: ['2', 0] } },
          '5': { class_type: 'ExtraVAELoader', inputs: { vae_name: vaeName, vae_type: 'dcae-f32c32-sana-1.1-diffusers', dtype: 'FP32' } },
          '6': { class_type: 'LoadImage', inputs: { image: 'family_example.png' } },
          '7': { class_type: 'VAEEncode', inputs: { pixels: ['6', 0], vae: ['5', 0] } },
          // The VAE round trip: what the unmasked part of the latent stays.
          '10': decode('7'),
          '11': save('10', 'roundtrip'),
          '20': ks('1', '7', { denoise: 0.6 }),
          '21': decode('20'),
          '22': save('21', 'img2img'),
          '30': { class_type: 'SetLatentNoiseMask', inputs: { samples: ['7', 0], mask: ['6', 1] } },
          '31': ks('1', '30', { denoise: 0.6 }),
          '32': decode('31'),
          '33': save('32', 'masked'),
          '40': { class_type: 'VAEEncodeForInpaint', inputs: { pixels: ['6', 0], vae: ['5', 0], mask: ['6', 1], grow_mask_by: 6 } },
          '41': ks('1', '40', {}),
          '42': decode('41'),
          '43': save('42', 'inpaint'),
          '50': {
            class_type: 'SanaCheckpointLoader',
            inputs: { ckpt_name: sprint, model: 'SanaSprint_1600M_P1_D20', dtype: 'FP32', enable_cfg_passthrough: true },
          },
          '51': { class_type: 'ScmModelSampling', inputs: { model: ['50', 0], cfg_scale: 4.5, zsnr: false } },
          '52': ks('51', '7', { cfg: 1, sampler_name: 'scm', scheduler: 'sgm_uniform', denoise: 0.5 }),
          '53': decode('52'),
          '54': save('53', 'sprint_img2img'),
        };
        const images = await client.getImages(prompt as unknown as Parameters<ComfyUIClient['getImages']>[0]);
        expect(Object.keys(images).sort()).toEqual(['11', '22', '33', '43', '54']);
        const px: Record<string, Uint8Array> = {};
        for (const [node, list] of Object.entries(images)) {
          expect(list, node).toHaveLength(1);
          expect(list[0]!.image.type).toBe('output');
          const png = Buffer.from(await list[0]!.blob.arrayBuffer());
          const d = decodePng(png);
          expect([d.width, d.height], node).toEqual([128, 128]);
          expect(JSON.parse(readPngText(png).prompt)['30'].class_type).toBe('SetLatentNoiseMask');
          px[node] = d.data;
        }
        const trip = px['11']!;
        for (const node of ['22', '33', '43', '54']) expect(maxDiff(px[node]!, trip), node).toBeGreaterThan(0);
        // The noise mask keeps most of the latent: closer to the round trip than the unmasked run.
        expect(sqDist(px['33']!, trip)).toBeLessThan(sqDist(px['22']!, trip));
      } finally {
        await client.disconnect();
      }
    },
  );
});
