// Every HTTP route, under / and /api, with its success and error shapes, plus the safety rules
// (paths, uploads, origin check, hostile bodies). One real server for the whole file.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import jpeg from 'jpeg-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { decodePng, encodePng, readPngText } from '../../nodes/image/png.ts';
import { connectWs, HOSTILE_UPLOADS, imagePrompt, postJson, startStubServer, startTestServer, type TestServer } from './helpers.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ maxUploadBytes: 64 * 1024, maxJsonBytes: 256 * 1024, maxPromptNodes: 200 });
  fs.mkdirSync(path.join(s.dirs.root, 'static'), { recursive: true });
  fs.writeFileSync(path.join(s.dirs.root, 'static', 'index.html'), '<!doctype html><title>editor</title>');
});
afterAll(async () => {
  await s?.close();
  if (s) fs.rmSync(s.dirs.root, { recursive: true, force: true });
});

/** A GET whose path is sent exactly as written (fetch would normalise "..", "%2e%2e"). */
function rawGet(rawPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: s.port, path: rawPath, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const get = (p: string, headers: Record<string, string> = {}) => fetch(`${s.url}${p}`, { headers });

async function runToHistory(prompt: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const r = await postJson(`${s.url}/prompt`, { prompt, ...extra });
  expect(r.status).toBe(200);
  const { prompt_id } = (await r.json()) as { prompt_id: string };
  for (let i = 0; i < 400; i++) {
    const h = (await (await get(`/history/${prompt_id}`)).json()) as Record<
      string,
      { outputs: Record<string, { images: Array<{ filename: string; subfolder: string; type: string }> }>; status: { status_str: string } }
    >;
    if (h[prompt_id]) return { id: prompt_id, entry: h[prompt_id] };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('job did not finish');
}

function multipart(parts: Array<{ name: string; value: string | Buffer; filename?: string }>) {
  const boundary = '----sanaTestBoundary' + Math.random().toString(16).slice(2);
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disp = `form-data; name="${p.name}"${p.filename !== undefined ? `; filename="${p.filename}"` : ''}`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disp}\r\n${p.filename !== undefined ? 'Content-Type: image/png\r\n' : ''}\r\n`));
    chunks.push(Buffer.isBuffer(p.value) ? p.value : Buffer.from(p.value));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

const upload = (parts: Parameters<typeof multipart>[0], route = '/upload/image') => {
  const { body, contentType } = multipart(parts);
  return fetch(`${s.url}${route}`, { method: 'POST', headers: { 'content-type': contentType }, body });
};

const smallPng = (v: number) => encodePng({ width: 2, height: 2, channels: 4, data: new Uint8Array(16).fill(v) });

describe('POST /prompt and GET /prompt', () => {
  test.each(['', '/api'])('%s/prompt queues a valid prompt and returns prompt_id, number, node_errors', async (prefix) => {
    const r = await postJson(`${s.url}${prefix}/prompt`, { prompt: imagePrompt({ seed: 11 }) });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/application\/json/);
    const body = await r.json();
    expect(body).toEqual({ prompt_id: expect.stringMatching(/^[0-9a-f-]{36}$/), number: expect.any(Number), node_errors: {} });
    const q = await (await get(`${prefix}/prompt`)).json();
    expect(q).toEqual({ exec_info: { queue_remaining: expect.any(Number) } });
  });

  test.each([['text/plain;charset=UTF-8'], ['application/x-www-form-urlencoded'], ['application/octet-stream']])(
    'accepts a JSON body sent as %s',
    async (ct) => {
      const r = await fetch(`${s.url}/prompt`, {
        method: 'POST',
        headers: { 'content-type': ct },
        body: JSON.stringify({ prompt: imagePrompt({ seed: 12 }) }),
      });
      expect(r.status).toBe(200);
      expect((await r.json()).prompt_id).toBeTypeOf('string');
    },
  );

  test('client-chosen prompt_id and number are kept', async () => {
    const r = await postJson(`${s.url}/prompt`, { prompt: imagePrompt({ seed: 13 }), prompt_id: 'my-id-1', number: 1234.5 });
    expect(await r.json()).toEqual({ prompt_id: 'my-id-1', number: 1234.5, node_errors: {} });
  });

  test('no prompt, empty body, non-object prompt -> 400 with ComfyUI error shape', async () => {
    for (const body of [{}, '', { prompt: null }]) {
      const r = await postJson(`${s.url}/prompt`, body);
      expect(r.status).toBe(400);
      expect(await r.json()).toEqual({
        error: { type: 'no_prompt', message: 'No prompt provided', details: 'No prompt provided', extra_info: {} },
        node_errors: {},
      });
    }
    const r = await postJson(`${s.url}/prompt`, { prompt: [1, 2] });
    expect(r.status).toBe(400);
    expect((await r.json()).error.type).toBe('invalid_prompt');
  });

  test('unknown class and missing output -> missing_node_type / prompt_no_outputs', async () => {
    const r1 = await postJson(`${s.url}/prompt`, { prompt: { '3': { class_type: 'NoSuchNode', inputs: {}, _meta: { title: 'Upscale' } } } });
    expect(r1.status).toBe(400);
    expect(await r1.json()).toEqual({
      error: {
        type: 'missing_node_type',
        message: "Node 'Upscale' not found. The custom node may not be installed.",
        details: "Node ID '#3'",
        extra_info: { node_id: '3', class_type: 'NoSuchNode', node_title: 'Upscale' },
      },
      node_errors: {},
    });
    const r2 = await postJson(`${s.url}/prompt`, { prompt: { '1': { class_type: 'TestImage', inputs: { width: 8, height: 8, seed: 0 } } } });
    expect((await r2.json()).error.type).toBe('prompt_no_outputs');
  });

  test('partial_execution_targets: absent or null runs every output, a list only the outputs in it', async () => {
    const twoOutputs = () => ({ ...imagePrompt({ seed: 31 }), '10': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } } });
    for (const extra of [{}, { partial_execution_targets: null }]) {
      const { entry } = await runToHistory(twoOutputs(), extra);
      expect(Object.keys(entry.outputs).sort()).toEqual(['10', '9']);
    }
    // Ids of non-output nodes (and of nodes not in the prompt) are ignored, as in ComfyUI.
    const only = await runToHistory(twoOutputs(), { partial_execution_targets: ['10', '1', '77'] });
    expect(Object.keys(only.entry.outputs)).toEqual(['10']);
    expect((only.entry as unknown as { prompt: unknown[] }).prompt[4]).toEqual(['10']);
    for (const targets of [[], ['1']]) {
      const r = await postJson(`${s.url}/prompt`, { prompt: twoOutputs(), partial_execution_targets: targets });
      expect(r.status).toBe(400);
      expect((await r.json()).error.type).toBe('prompt_no_outputs');
    }
    const bad = await postJson(`${s.url}/prompt`, { prompt: twoOutputs(), partial_execution_targets: '10' });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.type).toBe('invalid_prompt');
  });

  test('bad values -> prompt_outputs_failed_validation with per-node errors, nothing queued', async () => {
    const before = (await (await get('/queue')).json()) as { queue_pending: unknown[] };
    const p = imagePrompt();
    (p['1'] as { inputs: Record<string, unknown> }).inputs.width = 100000;
    const r = await postJson(`${s.url}/prompt`, { prompt: p });
    expect(r.status).toBe(400);
    const b = await r.json();
    expect(b.error.type).toBe('prompt_outputs_failed_validation');
    expect(b.node_errors['1']).toMatchObject({
      class_type: 'TestImage',
      dependent_outputs: ['9'],
      errors: [{ type: 'value_bigger_than_max', extra_info: { input_name: 'width' } }],
    });
    const after = (await (await get('/queue')).json()) as { queue_pending: unknown[] };
    expect(after.queue_pending.length).toBeLessThanOrEqual(before.queue_pending.length);
  });

  test('malformed JSON is a JSON 400, never a 500', async () => {
    for (const [ct, body] of [
      ['application/json', '{"prompt": '],
      ['text/plain', 'not json'],
      ['application/json', '\u0000\u0001'],
    ] as const) {
      const r = await fetch(`${s.url}/api/prompt`, { method: 'POST', headers: { 'content-type': ct }, body });
      expect(r.status).toBe(400);
      expect((await r.json()).error.type).toBe('invalid_json');
    }
  });

  test('hostile prompts: too deep, too many nodes, too big', async () => {
    const deep = '{"prompt":' + '['.repeat(5000) + ']'.repeat(5000) + '}';
    const r1 = await postJson(`${s.url}/prompt`, deep);
    expect(r1.status).toBe(400);
    expect((await r1.json()).error.type).toBe('json_too_deep');
    const many: Record<string, unknown> = {};
    for (let i = 0; i < 1000; i++) many[String(i)] = { class_type: 'TestImage', inputs: {} };
    const r2 = await postJson(`${s.url}/prompt`, { prompt: many });
    expect(r2.status).toBe(400);
    expect((await r2.json()).error.message).toMatch(/too many nodes/);
    const r3 = await postJson(`${s.url}/prompt`, { prompt: { '1': { class_type: 'x', inputs: { s: 'x'.repeat(400 * 1024) } } } });
    expect(r3.status).toBe(413);
    expect((await r3.json()).error).toBeDefined();
    // Still healthy.
    expect((await get('/prompt')).status).toBe(200);
  });
});

describe('history, queue and interrupt routes', () => {
  test('a finished job is in /history, /history/{id}, with prompt, outputs, status, meta', async () => {
    const { id, entry } = await runToHistory(imagePrompt({ seed: 21 }), {
      extra_data: { extra_pnginfo: { workflow: { nodes: [], note: 'ü' } }, api_key_comfy_org: 'secret' },
    });
    expect(entry).toMatchObject({
      prompt: [expect.any(Number), id, expect.any(Object), expect.objectContaining({ extra_pnginfo: expect.any(Object) }), ['9']],
      outputs: { '9': { images: [{ filename: expect.stringMatching(/^test_\d{5}_\.png$/), subfolder: '', type: 'output' }] } },
      status: { status_str: 'success', completed: true },
      meta: { '9': { node_id: '9', display_node: '9', parent_node: null, real_node_id: '9' } },
    });
    expect(JSON.stringify(entry)).not.toContain('secret');
    const msgTypes = (entry as unknown as { status: { messages: [string][] } }).status.messages.map((m) => m[0]);
    expect(msgTypes).toEqual(['execution_start', 'execution_cached', 'execution_success']);
    const all = await (await get('/api/history')).json();
    expect(all[id]).toBeDefined();
    const last = await (await get('/history?max_items=1')).json();
    expect(Object.keys(last)).toHaveLength(1);
    expect(await (await get('/history/does-not-exist')).json()).toEqual({});
    expect((await get('/history?max_items=abc')).status).toBe(400);
    expect((await get('/history?offset=1.5')).status).toBe(400);

    // The saved PNG carries the prompt and the workflow.
    const img = entry.outputs['9'].images[0];
    const png = Buffer.from(await (await get(`/view?filename=${img.filename}&subfolder=&type=output`)).arrayBuffer());
    const text = readPngText(png);
    expect(JSON.parse(text.prompt)['1'].class_type).toBe('TestImage');
    expect(JSON.parse(text.workflow)).toEqual({ nodes: [], note: 'ü' });

    const del = await postJson(`${s.url}/history`, { delete: [id] });
    expect(del.status).toBe(200);
    expect(await del.text()).toBe('');
    expect(await (await get(`/history/${id}`)).json()).toEqual({});
  });

  test('POST /queue and /interrupt answer 200 with an empty body, even with an empty JSON body', async () => {
    for (const route of ['/queue', '/api/queue', '/interrupt', '/api/interrupt', '/free', '/history']) {
      const r = await fetch(`${s.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '' });
      expect(r.status, route).toBe(200);
      expect(await r.text()).toBe('');
    }
    const r = await fetch(`${s.url}/interrupt`, { method: 'POST' });
    expect(r.status).toBe(200);
    const q = await (await get('/queue')).json();
    expect(q).toEqual({ queue_running: expect.any(Array), queue_pending: expect.any(Array) });
  });
});

describe('catalogue routes', () => {
  test('/object_info lists product and test nodes in ComfyUI shape; unknown class -> 200 {}', async () => {
    const all = await (await get('/object_info')).json();
    expect(all.SaveImage).toMatchObject({
      input: {
        required: { images: ['IMAGE', expect.any(Object)], filename_prefix: ['STRING', expect.objectContaining({ default: 'ComfyUI' })] },
        hidden: { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO' },
      },
      output: [],
      output_node: true,
      name: 'SaveImage',
      category: 'image',
      python_module: 'nodes',
    });
    expect(all.PreviewImage.output_node).toBe(true);
    expect(all.LoadImage.output).toEqual(['IMAGE', 'MASK']);
    expect(all.TestImage).toBeDefined();
    const one = await (await get('/api/object_info/SaveImage')).json();
    expect(Object.keys(one)).toEqual(['SaveImage']);
    const unknown = await get('/object_info/Primitive%20boolean%20%5BCrystools%5D');
    expect(unknown.status).toBe(200);
    expect(await unknown.json()).toEqual({});
  });

  test('/system_stats, /embeddings, /extensions, /features', async () => {
    const st = await (await get('/system_stats')).json();
    expect(st.system).toMatchObject({
      os: expect.any(String),
      ram_total: expect.any(Number),
      ram_free: expect.any(Number),
      python_version: expect.any(String),
      embedded_python: false,
      comfyui_version: expect.any(String),
      pytorch_version: expect.any(String),
      argv: expect.any(Array),
    });
    expect(st.devices.length).toBeGreaterThan(0);
    expect(st.devices[0]).toMatchObject({
      name: expect.any(String),
      type: expect.any(String),
      index: 0,
      vram_total: expect.any(Number),
      vram_free: expect.any(Number),
      torch_vram_total: expect.any(Number),
      torch_vram_free: expect.any(Number),
    });
    expect(await (await get('/api/embeddings')).json()).toEqual([]);
    expect(await (await get('/extensions')).json()).toEqual([]);
    expect(await (await get('/features')).json()).toEqual({ supports_preview_metadata: true, max_upload_size: 64 * 1024 });
  });

  test('/models lists folders, /models/{folder} its files, unknown or hostile folder -> 404', async () => {
    fs.mkdirSync(path.join(s.dirs.models, 'vae', 'dc-ae'), { recursive: true });
    fs.writeFileSync(path.join(s.dirs.models, 'vae', 'dc-ae', 'config.json'), '{}');
    expect(await (await get('/models')).json()).toEqual(['vae']);
    expect(await (await get('/api/models/vae')).json()).toEqual(['dc-ae/config.json']);
    expect((await get('/models/nope')).status).toBe(404);
    expect((await rawGet('/models/%2e%2e')).status).toBe(404);
    expect((await rawGet('/api/models/..%2f..')).status).toBe(404);
  });

  test('/ serves the editor bundle with no-store; unknown API routes are JSON 404s', async () => {
    const r = await get('/');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/text\/html/);
    expect(r.headers.get('cache-control')).toMatch(/no-store/);
    expect(await r.text()).toContain('editor');
    const nf = await get('/api/nope');
    expect(nf.status).toBe(404);
    expect(await nf.json()).toMatchObject({ error: { type: 'not_found' } });
    expect((await rawGet('/..%2f..%2fetc%2fpasswd')).status).toBe(404);
    expect((await rawGet('/../../etc/passwd')).status).toBe(404);
  });
});

describe('/view', () => {
  beforeAll(() => {
    fs.mkdirSync(path.join(s.dirs.output, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(s.dirs.output, 'sub', 'a.png'), smallPng(200));
    fs.writeFileSync(path.join(s.dirs.output, 'page.html'), '<script>alert(1)</script>');
    fs.mkdirSync(s.dirs.temp, { recursive: true });
    fs.writeFileSync(path.join(s.dirs.temp, 't.png'), smallPng(5));
    fs.writeFileSync(path.join(s.dirs.root, 'secret.png'), smallPng(9));
    fs.symlinkSync(path.join(s.dirs.root, 'secret.png'), path.join(s.dirs.output, 'link.png'));
    fs.symlinkSync(s.dirs.root, path.join(s.dirs.output, 'linkdir'));
  });

  test('serves files by type and subfolder with content type and disposition', async () => {
    const r = await get('/view?filename=a.png&subfolder=sub&type=output');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/png');
    expect(r.headers.get('content-disposition')).toBe('filename="a.png"');
    expect(Buffer.from(await r.arrayBuffer()).equals(smallPng(200))).toBe(true);
    expect((await get('/api/view?filename=t.png&type=temp')).status).toBe(200);
    expect((await get('/view?filename=t.png%20%5Btemp%5D')).status).toBe(200);
    // Active content is never served as HTML.
    expect((await get('/view?filename=page.html')).headers.get('content-type')).toBe('application/octet-stream');
  });

  test('channel=rgb drops alpha; channel=a is black RGBA carrying the source alpha (opaque without one); rgba as is', async () => {
    const px = [10, 20, 30, 128, 40, 50, 60, 0];
    fs.writeFileSync(path.join(s.dirs.output, 'sub', 'alpha.png'), encodePng({ width: 2, height: 1, channels: 4, data: Uint8Array.from(px) }));
    fs.writeFileSync(path.join(s.dirs.output, 'sub', 'opaque.png'), encodePng({ width: 2, height: 1, channels: 3, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) }));
    const view = async (q: string) => {
      const r = await get(`/view?subfolder=sub&${q}`);
      expect([r.status, r.headers.get('content-type')]).toEqual([200, 'image/png']);
      return decodePng(Buffer.from(await r.arrayBuffer()));
    };
    const rgb = await view('filename=alpha.png&channel=rgb');
    expect([rgb.channels, [...rgb.data]]).toEqual([3, [10, 20, 30, 40, 50, 60]]);
    const a = await view('filename=alpha.png&channel=a');
    expect([a.channels, [...a.data]]).toEqual([4, [0, 0, 0, 128, 0, 0, 0, 0]]);
    const aOpaque = await view('filename=opaque.png&channel=a');
    expect([aOpaque.channels, [...aOpaque.data]]).toEqual([4, [0, 0, 0, 255, 0, 0, 0, 255]]);
    for (const q of ['filename=alpha.png&channel=rgba', 'filename=alpha.png']) expect([...(await view(q)).data]).toEqual(px);
  });

  test('preview=jpeg;Q re-encodes as JPEG', async () => {
    const r = await get('/view?filename=a.png&subfolder=sub&preview=jpeg;80');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/jpeg');
    const img = jpeg.decode(Buffer.from(await r.arrayBuffer()), { useTArray: true });
    expect([img.width, img.height]).toEqual([2, 2]);
    expect(Math.abs(img.data[0] - 200)).toBeLessThan(4);
  });

  test.each([
    ['/view', 404],
    ['/view?filename=', 400],
    ['/view?filename=../secret.png', 400],
    ['/view?filename=%2Fetc%2Fpasswd', 400],
    ['/view?filename=a.png&type=evil', 400],
    ['/view?filename=a%00.png', 400],
    ['/view?filename=a%5C..%5Cb.png', 400],
    ['/view?filename=secret.png&subfolder=..', 403],
    ['/view?filename=secret.png&subfolder=%2Ftmp', 403],
    ['/view?filename=link.png', 403],
    ['/view?filename=secret.png&subfolder=linkdir', 403],
    ['/view?filename=missing.png', 404],
    ['/view?filename=sub', 404],
  ])('%s -> %i', async (url, status) => {
    const r = await get(url);
    expect(r.status).toBe(status);
  });
});

describe('/upload/image', () => {
  test('writes into input, dedupes identical content, renames different content, overwrites on request', async () => {
    const r1 = await upload([{ name: 'image', value: smallPng(1), filename: 'up.png' }]);
    expect(r1.status).toBe(200);
    expect(await r1.json()).toEqual({ name: 'up.png', subfolder: '', type: 'input' });
    const r2 = await upload([{ name: 'image', value: smallPng(1), filename: 'up.png' }]);
    expect((await r2.json()).name).toBe('up.png');
    const r3 = await upload([{ name: 'image', value: smallPng(2), filename: 'up.png' }]);
    expect((await r3.json()).name).toBe('up (1).png');
    const r4 = await upload(
      [
        { name: 'image', value: smallPng(3), filename: 'up.png' },
        { name: 'overwrite', value: 'true' },
      ],
      '/api/upload/image',
    );
    expect((await r4.json()).name).toBe('up.png');
    expect(fs.readFileSync(path.join(s.dirs.input, 'up.png')).equals(smallPng(3))).toBe(true);
    const r5 = await upload([
      { name: 'image', value: smallPng(4), filename: 'x.png' },
      { name: 'type', value: 'temp' },
      { name: 'subfolder', value: 'a/b' },
    ]);
    expect(await r5.json()).toEqual({ name: 'x.png', subfolder: 'a/b', type: 'temp' });
    expect(fs.existsSync(path.join(s.dirs.temp, 'a', 'b', 'x.png'))).toBe(true);
  });

  test.each(HOSTILE_UPLOADS)('hostile or incomplete upload %j -> 400', async (parts) => {
    const r = await upload(parts as Parameters<typeof upload>[0]);
    expect(r.status).toBe(400);
    expect(fs.existsSync(path.join(s.dirs.root, 'evil.png'))).toBe(false);
  });

  test('uploads over the size limit -> 413, non-multipart -> 400', async () => {
    const r = await upload([{ name: 'image', value: Buffer.alloc(100 * 1024), filename: 'big.png' }]);
    expect(r.status).toBe(413);
    expect(fs.existsSync(path.join(s.dirs.input, 'big.png'))).toBe(false);
    expect((await postJson(`${s.url}/upload/image`, { image: 'x' })).status).toBe(400);
  });

  test('/upload/mask puts the mask alpha on the original (text chunks kept); bad refs are 400', async () => {
    const original = encodePng({ width: 2, height: 1, channels: 3, data: new Uint8Array([10, 20, 30, 40, 50, 60]) }, { text: { prompt: '{"k":1}' } });
    expect((await upload([{ name: 'image', value: original, filename: 'orig.png' }])).status).toBe(200);
    const maskPng = encodePng({ width: 2, height: 1, channels: 4, data: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 255]) });
    const ref = JSON.stringify({ filename: 'orig.png', subfolder: '', type: 'input' });
    const r = await upload(
      [
        { name: 'image', value: maskPng, filename: 'clipspace-mask.png' },
        { name: 'original_ref', value: ref },
      ],
      '/api/upload/mask',
    );
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ name: 'clipspace-mask.png', subfolder: '', type: 'input' });
    const out = fs.readFileSync(path.join(s.dirs.input, 'clipspace-mask.png'));
    expect(Array.from(decodePng(out).data)).toEqual([10, 20, 30, 0, 40, 50, 60, 255]);
    expect(readPngText(out)).toEqual({ prompt: '{"k":1}' });
    for (const bad of [JSON.stringify({ filename: '../secret.png' }), '{nope', JSON.stringify({ filename: 'missing.png' })]) {
      const rb = await upload(
        [
          { name: 'image', value: maskPng, filename: 'm2.png' },
          { name: 'original_ref', value: bad },
        ],
        '/upload/mask',
      );
      expect(rb.status).toBe(400);
    }
    const wrongSize = encodePng({ width: 1, height: 1, channels: 4, data: new Uint8Array(4) });
    expect(
      (
        await upload(
          [
            { name: 'image', value: wrongSize, filename: 'm3.png' },
            { name: 'original_ref', value: ref },
          ],
          '/upload/mask',
        )
      ).status,
    ).toBe(400);
  });

  test('an uploaded PNG feeds LoadImage (listed in object_info) into SaveImage', async () => {
    const px = new Uint8Array([255, 0, 0, 128, 0, 255, 0, 255]);
    const png = encodePng({ width: 2, height: 1, channels: 4, data: px });
    expect((await upload([{ name: 'image', value: png, filename: 'rg.png' }])).status).toBe(200);
    const info = await (await get('/object_info/LoadImage')).json();
    expect(info.LoadImage.input.required.image[0]).toContain('rg.png');
    expect(info.LoadImage.input.required.image[1]).toMatchObject({ image_upload: true });
    const { entry } = await runToHistory({
      '1': { class_type: 'LoadImage', inputs: { image: 'rg.png' } },
      '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'loaded/rg' } },
    });
    expect(entry.status.status_str).toBe('success');
    const out = entry.outputs['2'].images[0];
    expect(out.subfolder).toBe('loaded');
    const dec = decodePng(fs.readFileSync(path.join(s.dirs.output, 'loaded', out.filename)));
    expect(Array.from(dec.data)).toEqual([255, 0, 0, 0, 255, 0]);
    // JPEG uploads load too.
    const rgba = new Uint8Array(4 * 4 * 4).fill(255);
    for (let i = 0; i < rgba.length; i += 4) rgba[i + 1] = rgba[i + 2] = 0;
    expect((await upload([{ name: 'image', value: jpeg.encode({ width: 4, height: 4, data: rgba }, 95).data, filename: 'red.jpg' }])).status).toBe(200);
    const { entry: fromJpeg } = await runToHistory({
      '1': { class_type: 'LoadImage', inputs: { image: 'red.jpg' } },
      '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'loaded/red' } },
    });
    const redPng = decodePng(fs.readFileSync(path.join(s.dirs.output, 'loaded', fromJpeg.outputs['2'].images[0].filename)));
    expect(redPng.width).toBe(4);
    expect(redPng.data[0]).toBeGreaterThan(240);
    expect(redPng.data[1]).toBeLessThan(16);
    const bad = await postJson(`${s.url}/prompt`, {
      prompt: { '1': { class_type: 'LoadImage', inputs: { image: '../secret.png' } }, '2': { class_type: 'SaveImage', inputs: { images: ['1', 0] } } },
    });
    expect(bad.status).toBe(400);
    expect((await bad.json()).node_errors['1'].errors[0].type).toBe('value_not_in_list');
  });
});

describe('origin check', () => {
  test('cross-origin browser requests on a loopback host are refused with 403', async () => {
    const port = s.port;
    expect((await get('/queue', { origin: 'http://evil.example' })).status).toBe(403);
    expect((await get('/queue', { 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    expect((await get('/queue', { origin: `http://127.0.0.1:${port}` })).status).toBe(200);
    expect((await postJson(`${s.url}/prompt`, { prompt: imagePrompt() }, { origin: 'http://evil.example' })).status).toBe(403);
    await expect(connectWs(s.url, 'x', { origin: 'http://evil.example' })).rejects.toThrow(/403/);
    const ok = await connectWs(s.url, 'same-origin', { origin: `http://127.0.0.1:${port}` });
    ok.close();
  });

  test('a full queue answers 429 with Retry-After instead of growing without bound', async () => {
    const c = await startTestServer({ maxQueue: 2 });
    try {
      const slow = (seed: number) => postJson(`${c.url}/prompt`, { prompt: imagePrompt({ seed, slowMs: 3000, steps: 30 }) });
      expect((await slow(1)).status).toBe(200);
      expect((await slow(2)).status).toBe(200);
      const full = await slow(3);
      expect(full.status).toBe(429);
      expect(Number(full.headers.get('retry-after'))).toBeGreaterThan(0);
      expect((await full.json()).error.type).toBe('queue_full');
      await postJson(`${c.url}/queue`, { clear: true });
      await postJson(`${c.url}/interrupt`, {});
    } finally {
      await c.close();
      fs.rmSync(c.dirs.root, { recursive: true, force: true });
    }
  });

  test('--enable-cors-header replaces the check with CORS headers', async () => {
    const c = await startStubServer({ enableCorsHeader: 'http://app.example' });
    try {
      const r = await fetch(`${c.url}/queue`, { headers: { origin: 'http://evil.example' } });
      expect(r.status).toBe(200);
      expect(r.headers.get('access-control-allow-origin')).toBe('http://app.example');
      const pre = await fetch(`${c.url}/prompt`, { method: 'OPTIONS', headers: { origin: 'http://app.example' } });
      expect(pre.status).toBe(200);
      expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
    } finally {
      await c.close();
      fs.rmSync(c.dirs.root, { recursive: true, force: true });
    }
  });
});
