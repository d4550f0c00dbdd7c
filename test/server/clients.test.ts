// Real ComfyUI clients against the real server, each queueing a workflow, following its
// progress and downloading the PNG, whose text chunks must hold the prompt (and the workflow
// when the client sends one): @saintno/comfyui-sdk, @stable-canvas/comfyui-client (with `ws`),
// comfy-ui-client, and a Python websocket-client script like ComfyUI's websockets_api_example.py.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { CallWrapper, ComfyApi, PromptBuilder, type NodeData } from '@saintno/comfyui-sdk';
import { Client } from '@stable-canvas/comfyui-client';
import { ComfyUIClient } from 'comfy-ui-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { decodePng, readPngText } from '../../nodes/image/png.ts';
import { REPO, readJson, repoModelsDir } from '../nodes/helpers.ts';
import { imagePrompt, startTestServer, type TestServer } from './helpers.ts';

let s: TestServer;
beforeAll(async () => {
  // The shipped tiny models, for the default workflow; the other tests use the stub nodes.
  s = await startTestServer({ modelsDir: repoModelsDir() });
});
afterAll(async () => {
  await s?.close();
  if (s) fs.rmSync(s.dirs.root, { recursive: true, force: true });
});

const PYTHON = '/usr/bin/python3';
const hasPythonWebsocket = (() => {
  try {
    return fs.existsSync(PYTHON) && fs.existsSync('/usr/lib/python3/dist-packages/websocket');
  } catch {
    return false;
  }
})();

describe('real clients', () => {
  test('@saintno/comfyui-sdk: ComfyApi + PromptBuilder + CallWrapper, then getImage', async () => {
    const api = new ComfyApi(s.url, 'saintno-client', { wsTimeout: 10_000 }).init(3, 500);
    try {
      await api.waitForReady();
      const builder = new PromptBuilder(imagePrompt({ seed: 1, slowMs: 300, steps: 3 }) as NodeData, ['seed'], ['images'])
        .setRawInputNode('seed', '1.inputs.seed')
        .setRawOutputNode('images', '9')
        .input('seed', 77);
      const progress: number[] = [];
      const result = await new CallWrapper(api, builder).onProgress((p) => progress.push(p.value)).run();
      expect(result).toBeTruthy();
      const images = (result as { images: { images: Array<{ filename: string; subfolder: string; type: string }> } }).images.images;
      expect(images).toHaveLength(1);
      expect(progress).toContain(3);
      const blob = await api.getImage(images[0]);
      const png = Buffer.from(await blob.arrayBuffer());
      const prompt = JSON.parse(readPngText(png).prompt);
      expect(prompt['1'].inputs.seed).toBe(77);
    } finally {
      api.destroy();
    }
  });

  test('@stable-canvas/comfyui-client: enqueue over WS and enqueue_polling, with a workflow chunk', async () => {
    const host = s.url.replace(/^http:\/\//, '');
    const client = new Client({ api_host: host, clientId: 'stable-canvas-client', WebSocket });
    await client.connect();
    try {
      const workflow = { last_node_id: 9, nodes: [{ id: 1, type: 'TestImage' }], links: [], version: 0.4 };
      const progress: number[] = [];
      const out = await client.enqueue(imagePrompt({ seed: 2, slowMs: 300, steps: 3 }), {
        workflow,
        disable_random_seed: true,
        progress: (p) => progress.push(p.value),
      });
      expect(out.prompt_id).toBeTypeOf('string');
      expect(progress.length).toBeGreaterThan(0);
      expect(out.images).toHaveLength(1);
      const img = out.images[0];
      expect(img.type).toBe('url');
      const png = Buffer.from(await (await fetch(img.data as string)).arrayBuffer());
      const text = readPngText(png);
      expect(JSON.parse(text.prompt)['1'].inputs.seed).toBe(2);
      expect(JSON.parse(text.workflow)).toEqual(workflow);

      const polled = await client.enqueue_polling(imagePrompt({ seed: 3, slowMs: 200, steps: 2 }), { disable_random_seed: true });
      expect(polled.images).toHaveLength(1);
    } finally {
      client.close();
    }
  });

  test('@stable-canvas/comfyui-client: enqueue gets the images of the default workflow (loaders send no executed)', { timeout: 300_000 }, async () => {
    // The shipped workflow, smaller and shorter, with the loaders on 'cuda' as older saved
    // workflows have them: on a machine without a GPU they fall back to the CPU, and that note
    // must not reach the client as an `executed` message, which enqueue takes for the result.
    const prompt = readJson<Record<string, { class_type: string; inputs: Record<string, unknown> }>>(path.join(REPO, 'workflows/sana_default.api.json'));
    for (const n of Object.values(prompt)) if ('device' in n.inputs) n.inputs.device = 'cuda';
    Object.assign(prompt['4'].inputs, { width: 64, height: 64 });
    Object.assign(prompt['5'].inputs, { steps: 2, seed: 5 });
    const host = s.url.replace(/^http:\/\//, '');
    const client = new Client({ api_host: host, clientId: 'stable-canvas-default', WebSocket });
    await client.connect();
    const executed: string[] = [];
    client.on('executed', (d) => executed.push(d.node));
    try {
      const out = await client.enqueue(prompt, { disable_random_seed: true, timeout_ms: 280_000 });
      // The sampler's step previews come along as 'buff' images; the saved PNG is the 'url' one.
      const saved = out.images.filter((i) => i.type === 'url');
      expect(saved).toHaveLength(1);
      const png = Buffer.from(await (await fetch(saved[0].data as string)).arrayBuffer());
      expect([decodePng(png).width, decodePng(png).height]).toEqual([64, 64]);
      expect(JSON.parse(readPngText(png).prompt)['5'].inputs.seed).toBe(5);
      expect(executed).toEqual(['8']);
    } finally {
      client.close();
    }
  });

  test('every client runs the shipped default workflow unchanged and gets its 256² PNG', { timeout: 600_000 }, async () => {
    // workflows/sana_default.api.json as shipped (tiny models, auto device): the first client pays
    // for the models and the 10 steps; the same prompt from the next clients is served from the
    // cache, which must still hand each of them the saved image (ComfyUI re-sends a cached output
    // node's `executed`, and history lists it).
    const workflow = readJson<Record<string, { class_type: string; inputs: Record<string, unknown> }>>(path.join(REPO, 'workflows/sana_default.api.json'));
    const checkPng = (png: Buffer, who: string): void => {
      const img = decodePng(png);
      expect([img.width, img.height], who).toEqual([256, 256]);
      expect(JSON.parse(readPngText(png).prompt), who).toEqual(JSON.parse(JSON.stringify(workflow)));
    };
    const host = s.url.replace(/^http:\/\//, '');

    if (hasPythonWebsocket) {
      const promptFile = path.join(s.dirs.root, 'py_default.json');
      const outDir = path.join(s.dirs.root, 'py_default_out');
      fs.mkdirSync(outDir, { recursive: true });
      fs.writeFileSync(promptFile, JSON.stringify(workflow));
      const script = new URL('./clients/ws_api_client.py', import.meta.url).pathname;
      const { stdout } = await promisify(execFile)(PYTHON, [script, `127.0.0.1:${s.port}`, promptFile, outDir], { timeout: 400_000 });
      const res = JSON.parse(stdout.trim().split('\n').at(-1)!) as { images: string[]; status: string };
      expect(res.status).toBe('success');
      expect(res.images).toHaveLength(1);
      checkPng(fs.readFileSync(res.images[0]), 'python websocket-client');
    }

    const canvas = new Client({ api_host: host, clientId: 'stable-canvas-default-unchanged', WebSocket });
    await canvas.connect();
    try {
      const out = await canvas.enqueue(workflow, { disable_random_seed: true, timeout_ms: 400_000 });
      const saved = out.images.filter((i) => i.type === 'url');
      expect(saved).toHaveLength(1);
      checkPng(Buffer.from(await (await fetch(saved[0].data as string)).arrayBuffer()), '@stable-canvas/comfyui-client');
    } finally {
      canvas.close();
    }

    const api = new ComfyApi(s.url, 'saintno-default', { wsTimeout: 60_000 }).init(3, 500);
    try {
      await api.waitForReady();
      const builder = new PromptBuilder(workflow as unknown as NodeData, [], ['images']).setRawOutputNode('images', '8');
      const result = (await new CallWrapper(api, builder).run()) as
        { images: { images: Array<{ filename: string; subfolder: string; type: string }> } } | false;
      expect(result).toBeTruthy();
      const images = (result as { images: { images: Array<{ filename: string; subfolder: string; type: string }> } }).images.images;
      expect(images).toHaveLength(1);
      checkPng(Buffer.from(await (await api.getImage(images[0])).arrayBuffer()), '@saintno/comfyui-sdk');
    } finally {
      api.destroy();
    }

    const plain = new ComfyUIClient(host, 'comfy-ui-client-default');
    await plain.connect();
    try {
      const images = await plain.getImages(workflow as unknown as Parameters<ComfyUIClient['getImages']>[0]);
      expect(images['8']).toHaveLength(1);
      checkPng(Buffer.from(await images['8'][0].blob.arrayBuffer()), 'comfy-ui-client');
    } finally {
      await plain.disconnect();
    }
  });

  test(
    'the shipped Sana-Sprint workflow, listed by GET /workflows, runs unchanged with progress per SCM step and gives its 256² PNG',
    { timeout: 600_000 },
    async () => {
      const listed = (await (await fetch(`${s.url}/workflows`)).json()) as string[];
      expect(listed).toEqual(expect.arrayContaining(['sana_sprint.api.json', 'sana_sprint.ui.json']));
      const workflow = (await (await fetch(`${s.url}/workflows/sana_sprint.api.json`)).json()) as Record<
        string,
        { class_type: string; inputs: Record<string, unknown> }
      >;
      expect(workflow).toEqual(readJson(path.join(REPO, 'workflows/sana_sprint.api.json')));
      const client = new Client({ api_host: s.url.replace(/^http:\/\//, ''), clientId: 'stable-canvas-sprint', WebSocket });
      await client.connect();
      try {
        const progress: Array<[number, number]> = [];
        const out = await client.enqueue(workflow, { disable_random_seed: true, timeout_ms: 400_000, progress: (p) => progress.push([p.value, p.max]) });
        // The sampler's two SCM steps (other nodes may report progress of their own).
        expect(progress).toEqual(
          expect.arrayContaining([
            [1, 2],
            [2, 2],
          ]),
        );
        const saved = out.images.filter((i) => i.type === 'url');
        expect(saved).toHaveLength(1);
        const png = Buffer.from(await (await fetch(saved[0].data as string)).arrayBuffer());
        const img = decodePng(png);
        expect([img.width, img.height]).toEqual([256, 256]);
        expect(JSON.parse(readPngText(png).prompt)['4'].class_type).toBe('SanaSprintSampler');
      } finally {
        client.close();
      }
    },
  );

  test('comfy-ui-client: getImages runs a workflow unchanged and returns its PNG', async () => {
    const client = new ComfyUIClient(s.url.replace(/^http:\/\//, ''), 'comfy-ui-client-test');
    await client.connect();
    try {
      const images = await client.getImages(imagePrompt({ seed: 6, slowMs: 200, steps: 2 }) as Parameters<ComfyUIClient['getImages']>[0]);
      expect(Object.keys(images)).toEqual(['9']);
      expect(images['9']).toHaveLength(1);
      expect(images['9'][0].image).toMatchObject({ type: 'output', subfolder: '' });
      const png = Buffer.from(await images['9'][0].blob.arrayBuffer());
      expect(JSON.parse(readPngText(png).prompt)['1'].inputs.seed).toBe(6);
    } finally {
      await client.disconnect();
    }
  });

  test.skipIf(!hasPythonWebsocket)('Python websocket-client script (websockets_api_example flow)', async () => {
    const promptFile = path.join(s.dirs.root, 'py_prompt.json');
    const outDir = path.join(s.dirs.root, 'py_out');
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(promptFile, JSON.stringify(imagePrompt({ seed: 4, slowMs: 200, steps: 2, preview: true })));
    const script = new URL('./clients/ws_api_client.py', import.meta.url).pathname;
    const { stdout } = await promisify(execFile)(PYTHON, [script, `127.0.0.1:${s.port}`, promptFile, outDir], { timeout: 60_000 });
    const res = JSON.parse(stdout.trim().split('\n').at(-1)!) as { prompt_id: string; images: string[]; types: string[]; status: string };
    expect(res.status).toBe('success');
    expect(res.types).toEqual(expect.arrayContaining(['status', 'execution_start', 'executing', 'progress', 'executed', 'execution_success']));
    expect(res.images).toHaveLength(1);
    const text = readPngText(fs.readFileSync(res.images[0]));
    expect(JSON.parse(text.prompt)['1'].inputs.seed).toBe(4);
  });
});
