// The shipped image-to-image and inpainting workflows, end to end through the server on the tiny
// models: the test uploads the input picture (an RGBA PNG whose transparent square is the inpaint
// mask) as `example.png`, the name both workflows' LoadImage uses, queues each API file unchanged
// and waits for its saved PNG.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { convertUiToApi } from '../../engine/convert.ts';
import type { ApiPrompt } from '../../engine/index.ts';
import { decodePng, encodePng } from '../../nodes/image/png.ts';
import { apiToUi } from '../../workflows/api_to_ui.ts';
import { REPO, productRegistry, readJson, repoModelsDir } from '../nodes/helpers.ts';
import { postJson, startTestServer, until, type TestServer } from './helpers.ts';

/** 256×192 RGBA: a smooth picture, fully transparent (alpha 0 = masked) over x, y ∈ [64, 128). */
function examplePng(): Buffer {
  const W = 256,
    H = 192;
  const data = new Uint8Array(W * H * 4);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const o = (y * W + x) * 4;
      data[o] = 120 + 100 * Math.sin(x / 20);
      data[o + 1] = 120 + 100 * Math.cos(y / 15);
      data[o + 2] = (x + y) % 256;
      data[o + 3] = x >= 64 && x < 128 && y >= 64 && y < 128 ? 0 : 255;
    }
  return encodePng({ width: W, height: H, channels: 4, data });
}

const strip = (p: ApiPrompt) => Object.fromEntries(Object.entries(p).map(([id, n]) => [id, { class_type: n.class_type, inputs: n.inputs }]));

describe('workflows/sana_img2img and sana_inpaint: UI and API files agree', () => {
  for (const name of ['sana_img2img', 'sana_inpaint']) {
    test(`${name}: the UI file converts to the API file and is what api_to_ui.ts makes of it`, () => {
      const api = readJson<ApiPrompt>(path.join(REPO, `workflows/${name}.api.json`));
      const ui = readJson(path.join(REPO, `workflows/${name}.ui.json`));
      const info = productRegistry().objectInfo();
      const { prompt, warnings } = convertUiToApi(ui, info);
      expect(warnings).toEqual([]);
      expect(strip(prompt)).toEqual(strip(api));
      expect(apiToUi(api, info)).toEqual(ui);
    });
  }
});

describe('workflows/sana_img2img and sana_inpaint through the server', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ modelsDir: repoModelsDir() });
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(examplePng())], { type: 'image/png' }), 'example.png');
    const r = await fetch(`${s.url}/upload/image`, { method: 'POST', body: form });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { name: string }).name).toBe('example.png');
  });
  afterAll(async () => s?.close());

  for (const [name, prefix] of [
    ['sana_img2img', 'sana_img2img'],
    ['sana_inpaint', 'sana_inpaint'],
  ] as const) {
    test(`${name}.api.json runs unchanged and saves a PNG of the input's size`, { timeout: 600_000 }, async () => {
      const prompt = readJson(path.join(REPO, `workflows/${name}.api.json`));
      const r = await postJson(`${s.url}/prompt`, { prompt });
      const body = (await r.json()) as { prompt_id: string; node_errors?: unknown };
      expect(r.status, JSON.stringify(body)).toBe(200);
      const entry = await until(
        async () => {
          const h = (await (await fetch(`${s.url}/history/${body.prompt_id}`)).json()) as Record<
            string,
            {
              status: { completed: boolean; status_str: string; messages: unknown[] };
              outputs: Record<string, { images?: Array<{ filename: string; subfolder: string; type: string }> }>;
            }
          >;
          const e = h[body.prompt_id];
          return e && (e.status.completed || e.status.status_str === 'error') ? e : undefined;
        },
        580_000,
        `${name} to finish`,
      );
      expect(entry.status.status_str, JSON.stringify(entry.status.messages)).toBe('success');
      const img = entry.outputs['8']!.images![0]!;
      expect(img.filename.startsWith(prefix)).toBe(true);
      const png = fs.readFileSync(path.join(s.dirs.output, img.subfolder, img.filename));
      const d = decodePng(png);
      expect([d.width, d.height]).toEqual([256, 192]);
    });
  }
});
