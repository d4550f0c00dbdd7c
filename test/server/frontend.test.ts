// ComfyUI's own web frontend (Comfy-Org/ComfyUI_frontend) against our server: its start-up
// calls in the order src/scripts/api.ts and the app make them, then its save / load / move /
// delete, settings, queue / history (jobs API) and template flows, asserting the fields the
// frontend reads. Also --front-end-root (serving another frontend's files) and --multi-user.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connectWs, imagePrompt, postJson, startStubServer, startTestServer, until, type TestServer } from './helpers.ts';
import { startServer } from '../../web/server/index.ts';

let s: TestServer;
const get = (p: string, headers: Record<string, string> = {}) => fetch(`${s.url}${p}`, { headers: { 'Comfy-User': '', ...headers } });
/** As api.fetchApi sends it: a JSON string body with no content type of its own (text/plain). */
const post = (p: string, body?: string, headers: Record<string, string> = {}) =>
  fetch(`${s.url}${p}`, { method: 'POST', headers: { 'Comfy-User': '', ...headers }, body });

/** A request whose path goes out exactly as written (fetch would normalise "..", "%2e%2e"). */
function raw(method: string, rawPath: string, port = s.port): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: rawPath, method }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s?.close();
  if (s) fs.rmSync(s.dirs.root, { recursive: true, force: true });
});

describe('start-up sequence of ComfyUI_frontend', () => {
  test('users, settings, i18n, system_stats, workflows list, extensions, ws, object_info, models, templates, queue, history', async () => {
    // userStore.initialize: single-user server, nothing migrated yet (no <user-dir>/default).
    expect(await (await get('/api/users')).json()).toEqual({ storage: 'server', migrated: false });
    // settingStore.loadSettingValues: {} for a new user; a 401 would mean "log in".
    const settings = await get('/api/settings');
    expect(settings.status).toBe(200);
    expect(await settings.json()).toEqual({});
    expect(await (await get('/api/i18n')).json()).toEqual({});
    const stats = (await (await get('/api/system_stats')).json()) as { system: Record<string, unknown>; devices: unknown[] };
    expect(stats.system).toEqual(expect.objectContaining({ os: expect.any(String), comfyui_version: expect.any(String), python_version: expect.any(String) }));
    expect(stats.devices.length).toBeGreaterThan(0);
    // workflowService: listUserDataFullInfo('workflows/') answers [] on a 404.
    expect((await get('/api/userdata?dir=workflows&recurse=true&split=false&full_info=true')).status).toBe(404);
    // Legacy node templates: anything but 200 means "none".
    expect((await get('/api/userdata/comfy.templates.json')).status).toBe(404);
    expect(await (await get('/api/extensions')).json()).toEqual([]);
    expect(await (await get('/api/embeddings')).json()).toEqual([]);

    // api.init(): the socket, then the feature_flags handshake as its first frame.
    const ws = await connectWs(s.url, 'frontend-client');
    ws.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
    const status = await ws.waitFor((m) => m.type === 'status');
    expect(status.data).toEqual({ status: { exec_info: { queue_remaining: expect.any(Number) } }, sid: 'frontend-client' });
    expect((await ws.waitFor((m) => m.type === 'feature_flags')).data).toEqual(expect.objectContaining({ supports_preview_metadata: true }));
    ws.close();

    const defs = (await (await get('/api/object_info')).json()) as Record<string, { input: unknown; output: unknown; name: string }>;
    expect(defs.TestImage).toEqual(expect.objectContaining({ name: 'TestImage', output: ['IMAGE'] }));
    expect(defs.SanaDiT ?? defs.SaveImage).toBeDefined();
    // getModelFolders / getModels: a list of {name, folders}; an unknown folder is a 404.
    expect(await (await get('/api/experiment/models')).json()).toEqual([]);
    expect((await get('/api/experiment/models/checkpoints')).status).toBe(404);
    // getGlobalSubgraphs: {} (a non-200 would do too).
    expect(await (await get('/api/global_subgraphs')).json()).toEqual({});

    // Templates: custom packs, then the core index as a file next to the frontend's own.
    // Every shipped UI workflow is a template (other files in workflows/ may join these).
    const pack = (await (await get('/api/workflow_templates')).json()) as Record<string, string[]>;
    expect(Object.keys(pack)).toEqual(['sana-graph']);
    expect(pack['sana-graph']).toEqual(expect.arrayContaining(['sana_default', 'sana_sprint']));
    const index = await get('/templates/index.json');
    expect(index.headers.get('content-type')).toMatch(/application\/json/);
    const cats = (await index.json()) as Array<{
      moduleName: string;
      title: string;
      templates: Array<{ name: string; mediaType: string; mediaSubtype: string; description: string }>;
    }>;
    expect(cats[0].moduleName).toBe('default');
    expect(cats[0].templates.map((t) => t.name)).toEqual(pack['sana-graph']);
    expect(cats[0].templates[0]).toEqual(expect.objectContaining({ mediaType: 'image', mediaSubtype: 'png', description: expect.any(String) }));
    // A localized index or the fuse options are optional: the frontend falls back on an error.
    expect((await get('/templates/index.fr.json')).status).toBe(404);
    expect((await get('/templates/fuse_options.json')).status).toBe(404);

    // Queue and history panels (jobs API), empty.
    const queue = (await (await get('/api/jobs?status=in_progress,pending&limit=200&offset=0')).json()) as Record<string, unknown>;
    expect(queue).toEqual({ jobs: [], pagination: { offset: 0, limit: 200, total: 0, has_more: false } });
    const history = (await (await get('/api/jobs?status=completed&limit=200&offset=0')).json()) as Record<string, unknown>;
    expect(history).toEqual({ jobs: [], pagination: { offset: 0, limit: 200, total: 0, has_more: false } });
    expect(await (await get('/api/queue')).json()).toEqual({ queue_running: [], queue_pending: [] });
    expect(await (await get('/api/history?max_items=64')).json()).toEqual({});

    // Terminal and settings panels.
    const rawLogs = (await (await get('/internal/logs/raw')).json()) as { entries: unknown[]; size: { cols: number; rows: number } };
    expect(rawLogs).toEqual({ entries: expect.any(Array), size: { cols: expect.any(Number), rows: expect.any(Number) } });
    expect(typeof (await (await get('/internal/logs')).json())).toBe('string');
    expect(await (await get('/internal/folder_paths')).json()).toEqual({});

    // First run: the frontend marks the tutorial done, which creates the user's folder.
    expect((await post('/api/settings/Comfy.TutorialCompleted', 'true')).status).toBe(200);
    expect(await (await get('/api/settings/Comfy.TutorialCompleted')).json()).toBe(true);
    expect(await (await get('/api/users')).json()).toEqual({ storage: 'server', migrated: true });
    expect(fs.existsSync(path.join(s.dirs.user, 'default', 'comfy.settings.json'))).toBe(true);
  });

  test('a template loads as the UI workflow the frontend then opens (core and pack URLs)', async () => {
    const shipped = JSON.parse(fs.readFileSync(new URL('../../workflows/sana_default.ui.json', import.meta.url), 'utf8')) as { nodes: Array<{ type: string }> };
    for (const url of ['/templates/sana_default.json', '/api/workflow_templates/sana-graph/sana_default.json']) {
      const r = await get(url);
      expect(r.status, url).toBe(200);
      const wf = (await r.json()) as { nodes: Array<{ type: string }>; links: unknown[] };
      expect(wf.nodes.map((n) => n.type)).toEqual(shipped.nodes.map((n) => n.type));
      expect(wf.nodes.some((n) => n.type === 'SanaDiT')).toBe(true);
    }
    expect((await get('/templates/nope.json')).status).toBe(404);
    expect((await get('/api/workflow_templates/other/sana_default.json')).status).toBe(404);
    expect((await get('/api/workflow_templates/sana-graph/sana_default.api.json')).status).toBe(404);
  });

  test("view_metadata: a safetensors header's __metadata__, else an empty 404 (the frontend parses any body)", async () => {
    const dir = path.join(s.dirs.models, 'sana', 'tiny');
    fs.mkdirSync(dir, { recursive: true });
    const file = (name: string, header: unknown) => {
      const h = Buffer.from(JSON.stringify(header));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(h.length));
      fs.writeFileSync(path.join(dir, name), Buffer.concat([len, h, Buffer.alloc(4)]));
    };
    file('with.safetensors', { __metadata__: { format: 'pt', 'modelspec.title': 'tiny' }, w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } });
    file('without.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } });
    expect(await (await get('/api/view_metadata/sana?filename=tiny/with.safetensors')).json()).toEqual({ format: 'pt', 'modelspec.title': 'tiny' });
    for (const q of [
      'sana?filename=tiny/without.safetensors',
      'sana?filename=tiny/missing.safetensors',
      'sana?filename=tiny/with.bin',
      'nope?filename=tiny/with.safetensors',
      'sana?filename=../sana/tiny/with.safetensors',
      'sana',
    ]) {
      const r = await get(`/api/view_metadata/${q}`);
      expect(r.status, q).toBe(404);
      expect(await r.text(), q).toBe('');
    }
    // The model library lists the folder and its model files.
    expect(await (await get('/api/experiment/models')).json()).toEqual([{ name: 'sana', folders: [path.join(s.dirs.models, 'sana')] }]);
    const files = (await (await get('/api/experiment/models/sana')).json()) as Array<Record<string, unknown>>;
    expect(files.map((f) => f.name)).toEqual(['tiny/with.safetensors', 'tiny/without.safetensors']);
    expect(files[0]).toEqual({
      name: 'tiny/with.safetensors',
      pathIndex: 0,
      modified: expect.any(Number),
      created: expect.any(Number),
      size: expect.any(Number),
    });
    expect(await (await get('/internal/folder_paths')).json()).toEqual({ sana: [path.join(s.dirs.models, 'sana')] });
    fs.rmSync(path.join(s.dirs.models, 'sana'), { recursive: true });
  });
});

describe('workflows in userdata: save, list, load, move, delete', () => {
  const enc = encodeURIComponent;
  const workflow = JSON.stringify({ last_node_id: 1, nodes: [{ id: 1, type: 'TestImage' }], links: [], version: 0.4 }, null, 2);

  test('the workflow sidebar round trip, byte for byte', async () => {
    // workflowService.saveWorkflow -> api.storeUserData(path, json, {overwrite: false, stringify: false, full_info: true}).
    const saved = await post(`/api/userdata/${enc('workflows/my flow.json')}?overwrite=false&full_info=true`, workflow);
    expect(saved.status).toBe(200);
    const info = (await saved.json()) as Record<string, unknown>;
    expect(info).toEqual({ path: 'workflows/my flow.json', size: Buffer.byteLength(workflow), modified: expect.any(Number), created: expect.any(Number) });
    expect(fs.readFileSync(path.join(s.dirs.user, 'default', 'workflows', 'my flow.json'), 'utf8')).toBe(workflow);
    // Saving again without overwrite: 409, which the frontend turns into "overwrite?".
    expect((await post(`/api/userdata/${enc('workflows/my flow.json')}?overwrite=false&full_info=true`, '{}')).status).toBe(409);
    // Overwrite (the default) and the plain path answer.
    const over = await post(`/api/userdata/${enc('workflows/my flow.json')}?overwrite=true&full_info=false`, workflow);
    expect(await over.json()).toBe('workflows/my flow.json');

    const list = (await (await get('/api/userdata?dir=workflows&recurse=true&split=false&full_info=true')).json()) as Array<Record<string, unknown>>;
    expect(list).toEqual([{ path: 'my flow.json', size: Buffer.byteLength(workflow), modified: expect.any(Number), created: expect.any(Number) }]);
    expect(await (await get('/api/userdata?dir=workflows&recurse=true&split=true')).json()).toEqual([['my flow.json', 'my flow.json']]);
    expect(await (await get('/api/userdata?dir=workflows')).json()).toEqual(['my flow.json']);
    expect((await get('/api/userdata')).status).toBe(400);

    const loaded = await get(`/api/userdata/${enc('workflows/my flow.json')}`);
    expect(loaded.status).toBe(200);
    expect(loaded.headers.get('content-disposition')).toBe('attachment');
    expect(loaded.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await loaded.text()).toBe(workflow);

    // Rename: move without overwrite, answered with the new path.
    const moved = await post(`/api/userdata/${enc('workflows/my flow.json')}/move/${enc('workflows/sub/renamed.json')}?overwrite=false`);
    expect(moved.status).toBe(200);
    expect(await moved.json()).toBe('workflows/sub/renamed.json');
    expect((await get(`/api/userdata/${enc('workflows/my flow.json')}`)).status).toBe(404);
    await post(`/api/userdata/${enc('workflows/other.json')}`, '{}');
    expect((await post(`/api/userdata/${enc('workflows/other.json')}/move/${enc('workflows/sub/renamed.json')}?overwrite=false`)).status).toBe(409);
    expect((await post(`/api/userdata/${enc('workflows/missing.json')}/move/${enc('workflows/x.json')}`)).status).toBe(404);
    expect(await (await get('/api/userdata?dir=workflows&recurse=true')).json()).toEqual(['other.json', 'sub/renamed.json']);
    expect(await (await get('/api/userdata?dir=workflows')).json()).toEqual(['other.json']);

    // v2 listing: folders first, paths from the user's root.
    const v2 = (await (await get('/api/v2/userdata?path=workflows')).json()) as Array<Record<string, unknown>>;
    expect(v2).toEqual([
      { name: 'sub', path: 'workflows/sub', type: 'directory' },
      { name: 'other.json', path: 'workflows/other.json', type: 'file', size: 2, modified: expect.any(Number) },
      { name: 'renamed.json', path: 'workflows/sub/renamed.json', type: 'file', size: Buffer.byteLength(workflow), modified: expect.any(Number) },
    ]);
    expect((await get('/api/v2/userdata?path=nope')).status).toBe(404);
    expect((await get(`/api/v2/userdata?path=${enc('workflows/other.json')}`)).status).toBe(400);

    const del = await fetch(`${s.url}/api/userdata/${enc('workflows/sub/renamed.json')}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect((await get(`/api/userdata/${enc('workflows/sub/renamed.json')}`)).status).toBe(404);
    expect((await fetch(`${s.url}/api/userdata/${enc('workflows/sub/renamed.json')}`, { method: 'DELETE' })).status).toBe(404);
  });

  test('non-JSON files (user.css) are stored as sent; user.css is served as a stylesheet', async () => {
    const css = 'body { color: red } /* not JSON */';
    expect((await post('/api/userdata/user.css', css, { 'content-type': 'text/css' })).status).toBe(200);
    const r = await get('/api/userdata/user.css');
    expect(r.headers.get('content-type')).toMatch(/^text\/css/);
    expect(r.headers.get('content-disposition')).toBe('inline');
    expect(await r.text()).toBe(css);
    expect((await post(`/api/userdata/${enc('x.html')}`, '<script>1</script>')).status).toBe(200);
    const html = await get('/api/userdata/x.html');
    expect(html.headers.get('content-type')).toBe('application/octet-stream');
    expect(html.headers.get('content-disposition')).toBe('attachment');
  });

  test('paths stay inside <user-dir>/default: the history folder and everything else is out of reach', async () => {
    fs.writeFileSync(path.join(s.dirs.user, 'history', 'secret.json'), '{}');
    fs.mkdirSync(path.join(s.dirs.root, 'outside'), { recursive: true });
    fs.writeFileSync(path.join(s.dirs.root, 'outside', 'x.json'), '{}');
    fs.symlinkSync(path.join(s.dirs.root, 'outside'), path.join(s.dirs.user, 'default', 'link'));
    for (const bad of [
      '..%2Fhistory%2Fsecret.json',
      '%2E%2E%2Fhistory%2Fsecret.json',
      '%2Fetc%2Fpasswd',
      'a%5C..%5Cb.json',
      'a%00b.json',
      'link%2Fx.json',
      '%252E%252E%252Fhistory%252Fsecret.json',
    ]) {
      for (const method of ['GET', 'POST', 'DELETE']) {
        const r = await raw(method, `/api/userdata/${bad}`);
        expect([400, 403], `${method} ${bad}`).toContain(r.status);
      }
      expect([400, 403], `move from ${bad}`).toContain((await raw('POST', `/api/userdata/${bad}/move/ok.json`)).status);
      expect([400, 403], `move to ${bad}`).toContain((await raw('POST', `/api/userdata/user.css/move/${bad}`)).status);
    }
    for (const dir of ['..', '..%2Fhistory', '%2Ftmp', 'link']) {
      expect((await raw('GET', `/api/userdata?dir=${dir}`)).status, dir).toBe(403);
      expect((await raw('GET', `/api/v2/userdata?path=${dir}`)).status, dir).toBe(400);
    }
    // The symlink out is not listed either.
    const v2 = (await (await get('/api/v2/userdata')).json()) as Array<{ name: string }>;
    expect(v2.map((e) => e.name)).not.toContain('link');
    expect(fs.readFileSync(path.join(s.dirs.user, 'history', 'secret.json'), 'utf8')).toBe('{}');
    expect(fs.existsSync(path.join(s.dirs.root, 'outside', 'x.json'))).toBe(true);
    fs.rmSync(path.join(s.dirs.user, 'default', 'link'));
  });
});

describe('settings', () => {
  test('POST /settings merges, /settings/{id} reads and writes one value, and both survive a restart', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-frontend-settings-'));
    let a = await startStubServer({}, root);
    try {
      expect(
        (await fetch(`${a.url}/api/settings`, { method: 'POST', body: JSON.stringify({ 'Comfy.ColorPalette': 'light', 'Comfy.Locale': 'en' }) })).status,
      ).toBe(200);
      expect((await fetch(`${a.url}/api/settings`, { method: 'POST', body: JSON.stringify({ 'Comfy.Locale': 'fr' }) })).status).toBe(200);
      expect((await fetch(`${a.url}/api/settings/${encodeURIComponent('Comfy.Workflow.Persist')}`, { method: 'POST', body: 'false' })).status).toBe(200);
      expect(await (await fetch(`${a.url}/api/settings/Comfy.Missing`)).json()).toBeNull();
      expect((await fetch(`${a.url}/api/settings`, { method: 'POST', body: '[1]' })).status).toBe(400);
    } finally {
      await a.close();
    }
    a = await startStubServer({}, root);
    try {
      expect(await (await fetch(`${a.url}/api/settings`)).json()).toEqual({
        'Comfy.ColorPalette': 'light',
        'Comfy.Locale': 'fr',
        'Comfy.Workflow.Persist': false,
      });
      expect(await (await fetch(`${a.url}/settings/Comfy.Locale`)).json()).toBe('fr');
      // ComfyUI's file, in ComfyUI's place, so a user dir moves between the two servers.
      expect(JSON.parse(fs.readFileSync(path.join(root, 'user', 'default', 'comfy.settings.json'), 'utf8'))).toEqual({
        'Comfy.ColorPalette': 'light',
        'Comfy.Locale': 'fr',
        'Comfy.Workflow.Persist': false,
      });
    } finally {
      await a.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('jobs API (queue and history panels)', () => {
  type Job = Record<string, unknown> & { id: string; status: string };
  const jobs = async (q: string) => (await (await get(`/api/jobs?${q}`)).json()) as { jobs: Job[]; pagination: Record<string, unknown> };

  test('a queued prompt is in_progress, the next pending, then both completed with their outputs', async () => {
    const extra = (id: string) => ({ extra_pnginfo: { workflow: { id, nodes: [] } } });
    const first = (await (
      await postJson(`${s.url}/api/prompt`, {
        prompt: imagePrompt({ seed: 3, slowMs: 1500, steps: 3, prefix: 'jobs' }),
        client_id: 'jobs',
        extra_data: extra('wf-a'),
      })
    ).json()) as { prompt_id: string };
    const second = (await (
      await postJson(`${s.url}/api/prompt`, { prompt: imagePrompt({ seed: 4, prefix: 'jobs' }), client_id: 'jobs', extra_data: extra('wf-b') })
    ).json()) as { prompt_id: string };

    const queue = await until(
      async () => {
        const q = await jobs('status=in_progress,pending&limit=200&offset=0');
        return q.jobs.some((j) => j.status === 'in_progress') ? q : undefined;
      },
      20_000,
      'the first job to run',
    );
    expect(queue.jobs.map((j) => [j.id, j.status])).toEqual(
      expect.arrayContaining([
        [first.prompt_id, 'in_progress'],
        [second.prompt_id, 'pending'],
      ]),
    );
    const running = queue.jobs.find((j) => j.id === first.prompt_id)!;
    expect(running).toEqual({
      id: first.prompt_id,
      status: 'in_progress',
      priority: expect.any(Number),
      create_time: expect.any(Number),
      outputs_count: 0,
      workflow_id: 'wf-a',
    });
    const detailRunning = (await (await get(`/api/jobs/${first.prompt_id}`)).json()) as Job;
    expect(detailRunning.status).toBe('in_progress');

    const done = await until(
      async () => {
        const h = await jobs('status=completed&limit=200&offset=0');
        return h.jobs.filter((j) => j.id === first.prompt_id || j.id === second.prompt_id).length === 2 ? h : undefined;
      },
      30_000,
      'both jobs to complete',
    );
    const a = done.jobs.find((j) => j.id === first.prompt_id)!;
    expect(a).toEqual({
      id: first.prompt_id,
      status: 'completed',
      priority: expect.any(Number),
      create_time: expect.any(Number),
      execution_start_time: expect.any(Number),
      execution_end_time: expect.any(Number),
      outputs_count: 1,
      preview_output: { filename: expect.stringMatching(/^jobs_\d{5}_\.png$/), subfolder: '', type: 'output', nodeId: '9', mediaType: 'images' },
      workflow_id: 'wf-a',
    });
    expect(a.execution_end_time as number).toBeGreaterThanOrEqual(a.execution_start_time as number);
    // Newest first by default.
    const order = done.jobs.map((j) => j.id);
    expect(order.indexOf(second.prompt_id)).toBeLessThan(order.indexOf(first.prompt_id));
    expect((await jobs('status=completed&sort_order=asc')).jobs.map((j) => j.id).indexOf(first.prompt_id)).toBeLessThan(
      (await jobs('status=completed&sort_order=asc')).jobs.map((j) => j.id).indexOf(second.prompt_id),
    );
    expect((await jobs('status=in_progress,pending')).jobs).toEqual([]);
    expect((await jobs('workflow_id=wf-b')).jobs.map((j) => j.id)).toEqual([second.prompt_id]);

    // The detail the frontend re-opens a workflow from, and downloads outputs with.
    const detail = (await (await get(`/api/jobs/${encodeURIComponent(first.prompt_id)}`)).json()) as Job & {
      outputs: Record<string, { images: unknown[] }>;
      workflow: { prompt: unknown; extra_data: { extra_pnginfo: { workflow: { id: string } } } };
      execution_status: { status_str: string };
    };
    expect(detail.outputs['9'].images).toEqual([{ filename: (a.preview_output as { filename: string }).filename, subfolder: '', type: 'output' }]);
    expect(detail.workflow.extra_data.extra_pnginfo.workflow.id).toBe('wf-a');
    expect(detail.workflow.prompt).toEqual(expect.objectContaining({ '9': expect.objectContaining({ class_type: 'SaveImage' }) }));
    expect(detail.execution_status.status_str).toBe('success');
    const img = await get(`/api/view?filename=${(a.preview_output as { filename: string }).filename}&type=output&subfolder=`);
    expect(img.status).toBe(200);
  });

  test('a failing prompt is "failed" with its execution_error; pagination and parameter errors as ComfyUI', async () => {
    const bad = {
      '1': { class_type: 'TestImage', inputs: { width: 4, height: 4, seed: 1 } },
      '2': { class_type: 'TestFail', inputs: { images: ['1', 0], message: 'boom' } },
      '9': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'fail' } },
    };
    const r = await postJson(`${s.url}/api/prompt`, { prompt: bad, client_id: 'jobs' });
    expect(r.status).toBe(200);
    const { prompt_id } = (await r.json()) as { prompt_id: string };
    const failed = await until(async () => (await jobs('status=failed')).jobs.find((j) => j.id === prompt_id), 20_000, 'the failed job');
    expect(failed.execution_error).toEqual(
      expect.objectContaining({ exception_message: expect.stringContaining('boom'), node_id: '2', node_type: 'TestFail', traceback: expect.any(Array) }),
    );
    expect(failed.outputs_count).toBe(0);
    expect(failed).not.toHaveProperty('preview_output');
    expect((await jobs('status=completed')).jobs.map((j) => j.id)).not.toContain(prompt_id);
    expect((await jobs('status=cancelled')).jobs.map((j) => j.id)).not.toContain(prompt_id);
    // Enough finished jobs for a middle page, whichever tests ran before.
    for (const seed of [21, 22]) {
      const { prompt_id: id } = (await (await postJson(`${s.url}/api/prompt`, { prompt: imagePrompt({ seed, prefix: 'page' }) })).json()) as {
        prompt_id: string;
      };
      await until(
        async () => (await get(`/api/jobs/${id}`)).ok && ((await (await get(`/api/jobs/${id}`)).json()) as Job).status === 'completed',
        20_000,
        'a quick job',
      );
    }
    const all = await jobs('');
    expect(all.jobs.length).toBeGreaterThanOrEqual(3);
    expect(all.pagination).toEqual({ offset: 0, limit: null, total: all.jobs.length, has_more: false });
    const page = await jobs('limit=1&offset=1');
    expect(page.jobs).toHaveLength(1);
    expect(page.jobs[0].id).toBe(all.jobs[1].id);
    expect(page.pagination).toEqual({ offset: 1, limit: 1, total: all.jobs.length, has_more: all.jobs.length > 2 });
    for (const q of ['status=done', 'sort_by=name', 'sort_order=up', 'limit=0', 'limit=x', 'offset=x']) {
      const e = await get(`/api/jobs?${q}`);
      expect(e.status, q).toBe(400);
      expect(await e.json(), q).toEqual({ error: expect.any(String) });
    }
    const missing = await get('/api/jobs/not-a-job');
    expect(missing.status).toBe(404);
    expect(missing.ok).toBe(false);
  });
});

describe('--front-end-root', () => {
  test('serves another frontend at / with its assets and extension scripts, inside its folder only', async () => {
    const front = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-front-'));
    fs.mkdirSync(path.join(front, 'assets'));
    fs.mkdirSync(path.join(front, 'extensions', 'core'), { recursive: true });
    fs.writeFileSync(path.join(front, 'index.html'), '<!doctype html><title>ComfyUI</title><script type="module" src="./assets/index-abc.js"></script>');
    fs.writeFileSync(path.join(front, 'assets', 'index-abc.js'), 'console.log(1)');
    fs.writeFileSync(path.join(front, 'assets', 'font.woff2'), 'x');
    fs.writeFileSync(path.join(front, 'extensions', 'core', 'ext.js'), '');
    fs.writeFileSync(path.join(os.tmpdir(), 'sana-front-secret.txt'), 'secret');
    const f = await startStubServer({ frontEndRoot: front });
    try {
      const index = await fetch(`${f.url}/`);
      expect(await index.text()).toContain('<title>ComfyUI</title>');
      expect(index.headers.get('content-type')).toMatch(/text\/html/);
      const js = await fetch(`${f.url}/assets/index-abc.js`);
      expect(js.headers.get('content-type')).toMatch(/javascript/);
      expect(await js.text()).toBe('console.log(1)');
      expect((await fetch(`${f.url}/assets/font.woff2`)).headers.get('content-type')).toBe('font/woff2');
      expect(await (await fetch(`${f.url}/api/extensions`)).json()).toEqual(['/extensions/core/ext.js']);
      for (const p of ['/../sana-front-secret.txt', '/%2e%2e/sana-front-secret.txt', '/assets/..%2f..%2fsana-front-secret.txt']) {
        const r = await raw('GET', p, f.port);
        expect(r.status, p).toBe(404);
        expect(r.body).not.toContain('secret');
      }
      // The API is unchanged behind it.
      expect((await fetch(`${f.url}/api/object_info/TestImage`)).status).toBe(200);
    } finally {
      await f.close();
      fs.rmSync(f.dirs.root, { recursive: true, force: true });
      fs.rmSync(front, { recursive: true, force: true });
      fs.rmSync(path.join(os.tmpdir(), 'sana-front-secret.txt'), { force: true });
    }
  });

  test('a folder without index.html is refused at start, naming the flag', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-front-empty-'));
    await expect(
      startServer({
        port: 0,
        frontEndRoot: empty,
        userDir: path.join(empty, 'u'),
        outputDir: path.join(empty, 'o'),
        inputDir: path.join(empty, 'i'),
        tempDir: path.join(empty, 't'),
      }),
    ).rejects.toThrow(/--front-end-root .* has no index\.html/);
    fs.rmSync(empty, { recursive: true, force: true });
  });
});

describe('--multi-user', () => {
  test('users are created by POST /users and picked by the Comfy-User header', async () => {
    const m = await startStubServer({ multiUser: true });
    try {
      const users = (url: string, init?: RequestInit) => fetch(`${m.url}${url}`, init);
      expect(await (await users('/api/users')).json()).toEqual({ storage: 'server', users: {} });
      const created = await users('/api/users', { method: 'POST', body: JSON.stringify({ username: 'Alice B' }) });
      expect(created.status).toBe(200);
      const id = (await created.json()) as string;
      expect(id).toMatch(/^Alice-B_[0-9a-f-]{36}$/);
      expect(await (await users('/api/users')).json()).toEqual({ storage: 'server', users: { [id]: 'Alice B' } });
      expect((await users('/api/users', { method: 'POST', body: JSON.stringify({ username: 'Alice B' }) })).status).toBe(400);
      expect(await (await users('/api/users', { method: 'POST', body: JSON.stringify({ username: '__system' }) })).json()).toEqual({
        error: 'System User prefix not allowed',
      });

      // No header (or an unknown user): the frontend's "log in" path.
      expect((await users('/api/settings')).status).toBe(401);
      expect((await users('/api/settings', { headers: { 'Comfy-User': 'history' } })).status).toBe(401);
      expect((await users('/api/userdata?dir=workflows', { headers: { 'Comfy-User': 'nobody' } })).status).toBe(403);

      const h = { 'Comfy-User': id };
      expect((await users('/api/settings/Comfy.Locale', { method: 'POST', headers: h, body: '"de"' })).status).toBe(200);
      expect(await (await users('/api/settings', { headers: h })).json()).toEqual({ 'Comfy.Locale': 'de' });
      expect((await users(`/api/userdata/${encodeURIComponent('workflows/a.json')}`, { method: 'POST', headers: h, body: '{}' })).status).toBe(200);
      expect(fs.existsSync(path.join(m.dirs.user, id, 'workflows', 'a.json'))).toBe(true);
      expect(JSON.parse(fs.readFileSync(path.join(m.dirs.user, 'users.json'), 'utf8'))).toEqual({ [id]: 'Alice B' });
    } finally {
      await m.close();
      fs.rmSync(m.dirs.root, { recursive: true, force: true });
    }
  });
});

describe('logs', () => {
  test("/internal/logs/subscribe streams the server's log lines as `logs` messages", async () => {
    const ws = await connectWs(s.url, 'log-client');
    const r = await fetch(`${s.url}/internal/logs/subscribe`, { method: 'PATCH', body: JSON.stringify({ enabled: true, clientId: 'log-client' }) });
    expect(r.status).toBe(200);
    s.state.log.warn('a line for the terminal panel');
    const msg = await ws.waitFor((m) => m.type === 'logs');
    expect(msg.data).toEqual({
      entries: [{ t: expect.any(String), m: expect.stringContaining('a line for the terminal panel') }],
      size: { cols: expect.any(Number), rows: expect.any(Number) },
    });
    const rawLogs = (await (await fetch(`${s.url}/internal/logs/raw`)).json()) as { entries: Array<{ m: string }> };
    expect(rawLogs.entries.some((e) => e.m.includes('a line for the terminal panel'))).toBe(true);
    expect(await (await fetch(`${s.url}/internal/logs`)).json()).toContain('a line for the terminal panel');
    expect((await fetch(`${s.url}/internal/logs/subscribe`, { method: 'PATCH', body: '{}' })).status).toBe(400);
    ws.close();
  });
});
