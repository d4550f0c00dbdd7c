// The route schemas and error shapes, through app.inject() against a stub execution host: the odd
// bodies ComfyUI clients send, every validation failure's status and body, queue operations on a
// job the stub holds, and the WebSocket routing of a scripted job. No execution child is started.
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { connectWs, imagePrompt, startStubServer, until, type StubServer } from './helpers.ts';

let s: StubServer;
beforeAll(async () => {
  s = await startStubServer({ maxPromptNodes: 20, maxQueue: 3 });
});
afterAll(async () => {
  await s?.close();
  if (s) fs.rmSync(s.dirs.root, { recursive: true, force: true });
});

type Inject = { method?: 'GET' | 'POST' | 'PATCH' | 'DELETE'; url: string; payload?: string | Buffer; headers?: Record<string, string> };
async function call(o: Inject) {
  const r = await s.app.inject({ method: o.method ?? 'GET', url: o.url, payload: o.payload, headers: o.headers });
  let json: unknown;
  try {
    json = JSON.parse(r.body);
  } catch {
    json = undefined;
  }
  return { status: r.statusCode, body: r.body, json, headers: r.headers };
}
const post = (url: string, body: unknown, contentType = 'application/json') =>
  call({ method: 'POST', url, payload: typeof body === 'string' ? body : JSON.stringify(body), headers: contentType ? { 'content-type': contentType } : {} });

const promptError = (type: string, message: string | RegExp, details: unknown = expect.any(String)) => ({
  error: { type, message: typeof message === 'string' ? message : expect.stringMatching(message), details, extra_info: {} },
  node_errors: {},
});

/** Waits until the stub host is running a job (held by a `hold` step) and returns its id. */
async function heldJob(): Promise<string> {
  return (await until(() => s.host.current, 10_000, 'a running job')).promptId;
}

async function drain(): Promise<void> {
  await post('/queue', { clear: true });
  while (s.host.current) {
    s.host.release();
    s.host.interrupt();
    await new Promise((r) => setTimeout(r, 10));
  }
  await until(() => s.state.embedded.queue.remaining() === 0 && !s.host.current, 10_000, 'an empty queue');
  s.host.script = (job) => ({ steps: job.outputs.map((node) => ({ event: 'executing', data: { node } })) });
}

describe('POST /prompt bodies as clients send them', () => {
  test.each([
    ['application/json', 'application/json'],
    ['text/plain (comfyui-sdk)', 'text/plain;charset=UTF-8'],
    ['form-urlencoded (Python urllib)', 'application/x-www-form-urlencoded'],
    ['no content type', ''],
  ])('%s: queued, unknown keys ignored, number as a string', async (_name, ct) => {
    const r = await post('/api/prompt', { prompt: imagePrompt(), number: '7', front: 'false', unknown_key: { x: 1 }, client_id: '' }, ct);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ prompt_id: expect.any(String), number: 7, node_errors: {} });
    const job = await until(() => s.host.ran.find((j) => j.promptId === (r.json as { prompt_id: string }).prompt_id));
    expect(job.number).toBe(7);
    expect(job.clientId).toBeUndefined();
    expect(job.extraData).toEqual({ create_time: expect.any(Number) });
  });

  test('an empty body is {} (no_prompt); a non-object body too', async () => {
    for (const body of ['', '   ', '[]', '"x"', '42']) {
      const r = await post('/prompt', body);
      expect(r.status, body).toBe(400);
      expect(r.json, body).toEqual(promptError('no_prompt', 'No prompt provided', 'No prompt provided'));
    }
  });

  test('a prompt that is not an object, too big, or with bad partial_execution_targets', async () => {
    expect((await post('/prompt', { prompt: [] })).json).toEqual(
      promptError('invalid_prompt', 'Prompt must be an object keyed by node id', 'received an array'),
    );
    expect((await post('/prompt', { prompt: 'x' })).json).toEqual(
      promptError('invalid_prompt', 'Prompt must be an object keyed by node id', 'received string'),
    );
    expect((await post('/prompt', { prompt: null })).json).toEqual(promptError('no_prompt', 'No prompt provided', 'No prompt provided'));
    const big = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [String(i), { class_type: 'TestImage', inputs: {} }]));
    const tooBig = await post('/prompt', { prompt: big });
    expect(tooBig.status).toBe(400);
    expect(tooBig.json).toEqual(promptError('invalid_prompt', 'Prompt has too many nodes (21 > 20)', '21 nodes'));
    const targets = await post('/prompt', { prompt: imagePrompt(), partial_execution_targets: '9' });
    expect(targets.status).toBe(400);
    expect(targets.json).toEqual(promptError('invalid_prompt', 'partial_execution_targets must be a list of node ids or null', 'received string'));
  });

  test('malformed and too-deep JSON are 400s in the same shape', async () => {
    const bad = await post('/prompt', '{"prompt": ');
    expect(bad.status).toBe(400);
    expect(bad.json).toEqual(promptError('invalid_json', /^invalid JSON body/));
    const deep = await post('/prompt', '['.repeat(300) + ']'.repeat(300));
    expect(deep.status).toBe(400);
    expect(deep.json).toEqual(promptError('json_too_deep', /deeper than 256/));
  });

  test('an invalid graph is answered with the engine error and node_errors', async () => {
    const r = await post('/prompt', { prompt: { '1': { class_type: 'NoSuchNode', inputs: {} } } });
    expect(r.status).toBe(400);
    expect(r.json).toEqual({ error: expect.objectContaining({ type: 'missing_node_type' }), node_errors: expect.any(Object) });
  });
});

describe('queue operations on a held job', () => {
  afterEach(drain);
  test('running, pending, prompt_id_in_use, delete, clear, interrupt, queue_full', async () => {
    s.host.script = () => ({ steps: [{ hold: true }] });
    const a = await post('/prompt', { prompt: imagePrompt(), prompt_id: 'held-a' });
    expect(a.status).toBe(200);
    expect(await heldJob()).toBe('held-a');
    expect((await post('/prompt', { prompt: imagePrompt(), prompt_id: 'held-b' })).status).toBe(200);

    const inUse = await post('/prompt', { prompt: imagePrompt(), prompt_id: 'held-a' });
    expect(inUse.status).toBe(400);
    expect(inUse.json).toEqual({
      error: {
        type: 'prompt_id_in_use',
        message: "prompt_id 'held-a' is already running",
        details: expect.any(String),
        extra_info: { prompt_id: 'held-a', state: 'running' },
      },
      node_errors: {},
    });
    expect(((await post('/prompt', { prompt: imagePrompt(), prompt_id: 'held-b' })).json as { error: { message: string } }).error.message).toBe(
      "prompt_id 'held-b' is already queued",
    );

    // maxQueue 3: one running + two pending; a full queue is answered before the id is looked at.
    expect((await post('/prompt', { prompt: imagePrompt(), prompt_id: 'held-c' })).status).toBe(200);
    expect(((await post('/prompt', { prompt: imagePrompt(), prompt_id: 'held-a' })).json as { error: { type: string } }).error.type).toBe('queue_full');
    const full = await post('/prompt', { prompt: imagePrompt() });
    expect(full.status).toBe(429);
    expect(full.headers['retry-after']).toBe('5');
    expect(full.json).toEqual({
      error: { type: 'queue_full', message: 'The queue is full (3 jobs)', details: 'Retry later', extra_info: { max_queue: 3 } },
      node_errors: {},
    });

    const queue = (await call({ url: '/queue' })).json as { queue_running: unknown[][]; queue_pending: unknown[][] };
    expect(queue.queue_running.map((i) => i[1])).toEqual(['held-a']);
    expect(queue.queue_pending.map((i) => i[1]).sort()).toEqual(['held-b', 'held-c']);

    // delete: the strings of a list; a non-list deletes nothing.
    expect((await post('/queue', { delete: ['held-b', 7, null] })).status).toBe(200);
    expect((await post('/queue', { delete: 'held-c' })).status).toBe(200);
    expect(((await call({ url: '/api/queue' })).json as { queue_pending: unknown[][] }).queue_pending.map((i) => i[1])).toEqual(['held-c']);
    expect((await post('/queue', { clear: 'true' })).status).toBe(200); // only JSON true clears
    expect(((await call({ url: '/queue' })).json as { queue_pending: unknown[] }).queue_pending).toHaveLength(1);
    const cleared = await post('/queue', { clear: true });
    expect(cleared.status).toBe(200);
    expect(cleared.body).toBe('');
    expect(((await call({ url: '/queue' })).json as { queue_pending: unknown[] }).queue_pending).toHaveLength(0);

    // An interrupt for another job does nothing; for this one, it ends it.
    await post('/interrupt', { prompt_id: 'other' });
    expect(s.host.current?.promptId).toBe('held-a');
    s.host.script = () => ({ steps: [{ untilInterrupted: true }] });
    s.host.release();
    await until(() => !s.host.current || s.host.current.promptId !== 'held-a');
    const hist = (await call({ url: '/history/held-a' })).json as Record<string, { status: { status_str: string } }>;
    expect(hist['held-a'].status.status_str).toBe('success');
    expect(s.host.interrupts).toContain('other');

    const c = await post('/prompt', { prompt: imagePrompt(), prompt_id: 'cancel-me' });
    expect(c.status).toBe(200);
    await until(() => s.host.current?.promptId === 'cancel-me');
    expect((await post('/interrupt', '')).status).toBe(200); // an empty body interrupts whatever runs
    const entry = await until(
      async () => ((await call({ url: '/history/cancel-me' })).json as Record<string, { status: { status_str: string; messages: unknown[][] } }>)['cancel-me'],
    );
    expect(entry.status.status_str).toBe('error');
    expect(entry.status.messages.map((m) => m[0])).toContain('execution_interrupted');
    const job = (await call({ url: '/api/jobs/cancel-me' })).json as { status: string };
    expect(job.status).toBe('cancelled');
    expect((await post('/prompt', { prompt: imagePrompt(), prompt_id: 'cancel-me' })).json).toEqual(
      expect.objectContaining({ error: expect.objectContaining({ type: 'prompt_id_in_use', extra_info: { prompt_id: 'cancel-me', state: 'in history' } }) }),
    );
  });

  test('POST /free passes JSON booleans only to the host', async () => {
    s.host.frees.length = 0;
    await post('/free', { unload_models: true, free_memory: 'true' });
    await post('/api/free', { free_memory: true, extra: 1 });
    await post('/free', { unload_models: 1 });
    expect(s.host.frees).toEqual([
      { unloadModels: true, freeMemory: false },
      { unloadModels: false, freeMemory: true },
    ]);
  });
});

describe('history and jobs parameters', () => {
  afterEach(drain);
  test('GET /history: max_items / offset integers, else invalid_parameter', async () => {
    for (const q of ['max_items=x', 'max_items=-1', 'offset=1.5', 'max_items=1&max_items=2', 'offset=9999999999']) {
      const r = await call({ url: `/history?${q}` });
      expect(r.status, q).toBe(400);
      expect(r.json, q).toEqual({
        error: { type: 'invalid_parameter', message: 'max_items and offset must be integers (max_items >= 0)', details: '', extra_info: {} },
      });
    }
    expect((await call({ url: '/history?max_items=&offset=' })).status).toBe(200);
    expect((await call({ url: '/history?max_items=1&offset=-1' })).status).toBe(200);
    expect((await call({ url: `/history/${'x'.repeat(900)}` })).json).toEqual({});
  });

  test("GET /jobs: the first bad parameter, in ComfyUI's order, as {error}", async () => {
    const cases: Array<[string, string]> = [
      ['status=done', 'Invalid status value(s): done. Valid values: pending, in_progress, completed, failed, cancelled'],
      ['status=done&sort_by=name', 'Invalid status value(s): done. Valid values: pending, in_progress, completed, failed, cancelled'],
      ['sort_by=name&limit=0', "sort_by must be 'created_at' or 'execution_duration'"],
      ['sort_order=up', "sort_order must be 'asc' or 'desc'"],
      ['limit=0', 'limit must be a positive integer'],
      ['limit=x', 'limit must be an integer'],
      ['limit=', 'limit must be an integer'],
      ['offset=x', 'offset must be an integer'],
    ];
    for (const [q, message] of cases) {
      const r = await call({ url: `/api/jobs?${q}` });
      expect(r.status, q).toBe(400);
      expect(r.json, q).toEqual({ error: message });
    }
    const ok = (await call({ url: '/api/jobs?status=Completed,%20failed&limit=%2B2&offset=-4&sort_by=EXECUTION_DURATION' })).json as { pagination: unknown };
    expect(ok.pagination).toEqual({ offset: 0, limit: 2, total: expect.any(Number), has_more: expect.any(Boolean) });
    expect((await call({ url: '/api/jobs/nope' })).json).toEqual({ error: 'Job not found' });
  });

  test('a scripted failure is a failed job with its execution_error', async () => {
    s.host.script = () => ({ error: { node: '9', message: 'disk full', type: 'OSError' } });
    const r = await post('/prompt', { prompt: imagePrompt(), prompt_id: 'fails' });
    expect(r.status).toBe(200);
    const job = await until(async () => {
      const j = (await call({ url: '/api/jobs/fails' })).json as { status?: string };
      return j.status === 'failed' ? j : undefined;
    });
    expect(job).toEqual(
      expect.objectContaining({
        execution_error: expect.objectContaining({ node_id: '9', node_type: 'SaveImage', exception_message: 'disk full', exception_type: 'OSError' }),
      }),
    );
  });
});

describe("other routes' validation answers", () => {
  test('users and settings: {error} and plain-text 400s', async () => {
    expect(await post('/users', { name: 'x' })).toEqual(expect.objectContaining({ status: 400, json: { error: 'username not provided' } }));
    expect(await post('/users', '[1]')).toEqual(expect.objectContaining({ status: 400, json: { error: 'username not provided' } }));
    const arr = await post('/settings', '[1, 2]');
    expect(arr.status).toBe(400);
    expect(arr.body).toBe('settings must be a JSON object');
    expect(arr.headers['content-type']).toMatch(/^text\/plain/);
    expect((await post('/settings', '')).status).toBe(200); // empty body = {}: nothing to merge
    const noDir = await call({ url: '/userdata' });
    expect([noDir.status, noDir.body]).toEqual([400, 'Directory not provided']);
    expect((await call({ url: '/userdata?dir=' })).body).toBe('Directory not provided');
    expect((await call({ url: '/userdata?dir=workflows' })).status).toBe(404);
  });

  test('an unknown user is 401 before the body is looked at (--multi-user)', async () => {
    const m = await startStubServer({ multiUser: true });
    try {
      const r = await m.app.inject({
        method: 'POST',
        url: '/settings',
        payload: '[1]',
        headers: { 'content-type': 'application/json', 'comfy-user': 'nobody' },
      });
      expect([r.statusCode, r.body]).toEqual([401, 'Unauthorized']);
      const id = await m.app.inject({ method: 'POST', url: '/settings/', payload: '1', headers: { 'comfy-user': 'nobody' } });
      expect(id.statusCode).toBe(401);
    } finally {
      await m.close();
      fs.rmSync(m.dirs.root, { recursive: true, force: true });
    }
  });

  test('logs subscription, workflow_to_prompt, uploads', async () => {
    for (const body of ['', '{"clientId": 1, "enabled": true}', '{"clientId": "a", "enabled": "true"}']) {
      const r = await call({ method: 'PATCH', url: '/internal/logs/subscribe', payload: body, headers: { 'content-type': 'application/json' } });
      expect(r.status, body).toBe(400);
      expect(r.json, body).toEqual({
        error: { type: 'bad_request', message: 'expected {"clientId": string, "enabled": boolean}', details: '', extra_info: {} },
      });
    }
    expect((await call({ method: 'PATCH', url: '/internal/logs/subscribe', payload: '{"clientId": "a", "enabled": false, "x": 1}' })).status).toBe(200);
    for (const body of ['[]', '"x"', '']) {
      const r = await post('/workflow_to_prompt', body);
      if (body === '') expect(r.status).not.toBe(500);
      else expect(r.json, body).toEqual({ error: 'the body must be a UI workflow JSON object' });
    }
    const notMultipart = await post('/upload/image', { image: 'x' });
    expect(notMultipart.status).toBe(400);
    expect(notMultipart.json).toEqual({
      error: { type: 'bad_request', message: 'expected multipart/form-data with an "image" file part', details: '', extra_info: {} },
    });
    const broken = await post('/upload/image', 'garbage', 'multipart/form-data; boundary=zz');
    expect(broken.status).toBe(400);
    expect(broken.json).toEqual({
      error: { type: 'invalid_multipart', message: expect.any(String), details: expect.any(String), extra_info: {} },
      node_errors: {},
    });
  });

  test('router refusals and unknown routes keep our JSON shape', async () => {
    const badUrl = await call({ url: '/models/%E0%A4%A' });
    expect(badUrl.status).toBe(400);
    expect(badUrl.json).toEqual({ error: { type: 'invalid_url', message: expect.any(String), details: '', extra_info: {} }, node_errors: {} });
    const none = await call({ method: 'POST', url: '/nothing' });
    expect(none.json).toEqual({ error: { type: 'not_found', message: 'no route for POST /nothing', details: '', extra_info: {} } });
    expect((await call({ url: '/view' })).json).toEqual({ error: { type: 'not_found', message: 'no filename', details: '', extra_info: {} } });
    expect((await call({ url: '/view?filename=a&filename=b' })).json).toEqual({
      error: { type: 'bad_request', message: 'invalid filename', details: '', extra_info: {} },
    });
    expect((await call({ url: '/features' })).json).toEqual({ supports_preview_metadata: true, max_upload_size: expect.any(Number) });
  });
});

describe('WebSocket routing of a scripted job', () => {
  test('events and previews go to the queuing client, status to everyone', async () => {
    const mine = await connectWs(s.url, 'mine');
    const other = await connectWs(s.url, 'other');
    try {
      s.host.script = () => ({
        steps: [
          { event: 'executing', data: { node: '9', display_node: '9' } },
          { event: 'progress', data: { value: 1, max: 2, node: '9' } },
          { preview: { node: '9', displayNode: '9', format: 'jpeg' } },
        ],
        outputs: { '9': { images: [{ filename: 'x.png', subfolder: '', type: 'output' }] } },
      });
      const r = await post('/prompt', { prompt: imagePrompt(), client_id: 'mine', prompt_id: 'ws-job' });
      expect(r.status).toBe(200);
      await mine.waitFor((m) => m.type === 'executing' && m.data.node === null && m.data.prompt_id === 'ws-job');
      expect(mine.sequence.filter((t) => t !== 'status')).toEqual([
        'execution_start',
        'execution_cached',
        'executing:9',
        'progress',
        'binary',
        'executed',
        'execution_success',
        'executing:null',
      ]);
      expect(mine.binary[0].readUInt32BE(0)).toBe(1); // a preview frame, type 1 (no feature_flags handshake)
      expect(other.messages.some((m) => m.data.prompt_id === 'ws-job')).toBe(false);
      expect(other.messages.some((m) => m.type === 'status')).toBe(true);
      const h = (await call({ url: '/history/ws-job' })).json as Record<string, { outputs: unknown }>;
      expect(h['ws-job'].outputs).toEqual({ '9': { images: [{ filename: 'x.png', subfolder: '', type: 'output' }] } });
    } finally {
      mine.close();
      other.close();
      await drain();
    }
  });
});
