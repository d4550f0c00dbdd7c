// What one prompt or one client may cost the server: a 5,000-node job's WebSocket traffic is
// linear and goes only to the client that queued it; a client that stops reading is held to a
// buffer limit and closed; seeds up to 2^64 - 1 stay exact end to end; filename_prefix is
// checked at submit; and the error shapes of a few edge requests.
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { randn } from '../../nodes/models/noise.ts';
import { connectWs, imagePrompt, postJson, startTestServer, until, type TestServer } from './helpers.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s?.close();
  if (s) fs.rmSync(s.dirs.root, { recursive: true, force: true });
});

/** Counts bytes and frames a socket receives; resolves `done` at the end marker of `promptId`. */
async function countingClient(url: string, clientId: string) {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/ws?clientId=${clientId}`);
  const stats = { bytes: 0, frames: 0, types: new Map<string, number>() };
  const ends = new Map<string, () => void>();
  ws.on('message', (data: Buffer, isBinary) => {
    stats.bytes += data.length;
    stats.frames++;
    if (isBinary) return;
    const m = JSON.parse(String(data)) as { type: string; data: { node?: unknown; prompt_id?: string } };
    stats.types.set(m.type, (stats.types.get(m.type) ?? 0) + 1);
    if (m.type === 'executing' && m.data.node === null && m.data.prompt_id) ends.get(m.data.prompt_id)?.();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, stats, end: (promptId: string) => new Promise<void>((resolve) => ends.set(promptId, resolve)) };
}

/** TestImage -> TestSlow x (n - 2) -> PreviewImage: n nodes in one chain. */
function chain(n: number, seed = 1): Record<string, unknown> {
  const prompt: Record<string, unknown> = { '0': { class_type: 'TestImage', inputs: { width: 1, height: 1, seed } } };
  for (let i = 1; i < n - 1; i++) prompt[String(i)] = { class_type: 'TestSlow', inputs: { images: [String(i - 1), 0], ms: 0, steps: 1, preview: false } };
  prompt[String(n - 1)] = { class_type: 'PreviewImage', inputs: { images: [String(n - 2), 0] } };
  return prompt;
}

describe('a 5,000-node prompt', () => {
  test('costs the queuing client linear traffic and a bystander nothing but status', async () => {
    const owner = await countingClient(s.url, 'chain-owner');
    const bystander = await countingClient(s.url, 'chain-bystander');
    const N = 5000;
    const t0 = Date.now();
    const r = await postJson(`${s.url}/prompt`, { prompt: chain(N), client_id: 'chain-owner', prompt_id: 'chain-5000' });
    expect(r.status).toBe(200);
    await owner.end('chain-5000');
    const wallMs = Date.now() - t0;
    const entry = (await (await fetch(`${s.url}/history/chain-5000`)).json()) as Record<string, { status: { status_str: string } }>;
    expect(entry['chain-5000'].status.status_str).toBe('success');
    console.log(
      `5000-node chain: ${wallMs} ms, owner ${owner.stats.bytes} B in ${owner.stats.frames} frames (${(owner.stats.bytes / N).toFixed(0)} B/node), bystander ${bystander.stats.bytes} B`,
    );
    // Per node: executing (~80 B), progress (~90 B) and three progress_state (~220 B each).
    expect(owner.stats.bytes / N).toBeLessThan(1200);
    expect(owner.stats.types.get('executing')).toBe(N + 1); // every node, then the end marker
    expect(owner.stats.types.get('progress_state')).toBeGreaterThanOrEqual(2 * (N - 2));
    // The bystander queued nothing: only `status` broadcasts reach it.
    expect([...bystander.stats.types.keys()]).toEqual(['status']);
    expect(bystander.stats.bytes).toBeLessThan(2000);
    owner.ws.close();
    bystander.ws.close();
  }, 180_000);

  test('small jobs keep ComfyUI whole-graph progress_state snapshots', async () => {
    const ws = await connectWs(s.url, 'small-owner');
    const r = await postJson(`${s.url}/prompt`, { prompt: chain(5, 2), client_id: 'small-owner' });
    const { prompt_id } = (await r.json()) as { prompt_id: string };
    await ws.waitFor((m) => m.type === 'executing' && m.data.node === null && m.data.prompt_id === prompt_id);
    const last = ws.messages.filter((m) => m.type === 'progress_state').at(-1)!.data as { nodes: Record<string, { state: string }> };
    expect(Object.keys(last.nodes).sort()).toEqual(['0', '1', '2', '3', '4']);
    expect(Object.values(last.nodes).every((n) => n.state === 'finished')).toBe(true);
    ws.close();
  });
});

describe('WebSocket back-pressure', () => {
  test('output images (SaveImageWebsocket) are never dropped for a slow client: it is closed instead', async () => {
    const LIMIT = 1024 * 1024;
    const c = await startTestServer({ wsMaxBufferedBytes: LIMIT });
    try {
      const frames = async (sid: string, result: boolean): Promise<{ dropped: number; closed: number }> => {
        const ws = await connectWs(c.url, sid);
        (ws.ws as unknown as { _socket: net.Socket })._socket.pause();
        const dropped0 = c.state.hub.droppedPreviews,
          closed0 = c.state.hub.slowClosed;
        const meta = { node_id: '9', prompt_id: 'p', display_node_id: '9', parent_node_id: null, real_node_id: '9' };
        // 64 MB offered: far past what the OS buffers for a socket nobody reads.
        for (let i = 0; i < 128 && c.state.hub.slowClosed === closed0; i++) {
          c.state.hub.sendPreview(sid, new Uint8Array(512 * 1024).fill(i), 'png', meta, result);
          await new Promise((r) => setTimeout(r, 2));
        }
        const out = { dropped: c.state.hub.droppedPreviews - dropped0, closed: c.state.hub.slowClosed - closed0 };
        ws.ws.terminate();
        return out;
      };
      const previews = await frames('slow-previews', false);
      expect(previews.dropped).toBeGreaterThan(0);
      expect(previews.closed).toBe(0);
      const results = await frames('slow-results', true);
      expect(results.dropped).toBe(0);
      expect(results.closed).toBe(1);
    } finally {
      await c.close();
      fs.rmSync(c.dirs.root, { recursive: true, force: true });
    }
  }, 120_000);

  test('a client that stops reading loses previews, is closed past the limit, and the server buffer stays bounded', async () => {
    const LIMIT = 1024 * 1024;
    const c = await startTestServer({ wsMaxBufferedBytes: LIMIT });
    try {
      const normal = await connectWs(c.url, 'reader');
      const stalled = await connectWs(c.url, 'stalled');
      const stalledClosed = new Promise<number>((resolve) => stalled.ws.once('close', (code) => resolve(code)));
      (stalled.ws as unknown as { _socket: net.Socket })._socket.pause();
      let maxBuffered = 0;
      const sampler = setInterval(() => (maxBuffered = Math.max(maxBuffered, c.state.hub.bufferedBytes)), 5);
      try {
        // ~50 MB of 512 KiB previews offered to a client that reads nothing.
        const big = imagePrompt({ seed: 1, slowMs: 2000, steps: 100, preview: true });
        (big['5'] as { inputs: Record<string, unknown> }).inputs.preview_bytes = 512 * 1024;
        expect((await postJson(`${c.url}/prompt`, { prompt: big, client_id: 'stalled' })).status).toBe(200);
        // Messages that cannot be dropped or merged (600 KB execution errors) push it past the limit.
        for (let i = 0; i < 3; i++) {
          const failing: Record<string, unknown> = {
            ...imagePrompt({ seed: 10 + i }),
            '7': { class_type: 'TestFail', inputs: { images: ['1', 0], message: 'x'.repeat(600_000) } },
          };
          (failing['9'] as { inputs: Record<string, unknown> }).inputs.images = ['7', 0];
          expect((await postJson(`${c.url}/prompt`, { prompt: failing, client_id: 'stalled' })).status).toBe(200);
        }
        // Meanwhile a client that reads gets every progress step and preview of its own job, in order.
        const mine = imagePrompt({ seed: 2, slowMs: 500, steps: 40, preview: true });
        const r = await postJson(`${c.url}/prompt`, { prompt: mine, client_id: 'reader' });
        const { prompt_id } = (await r.json()) as { prompt_id: string };
        await normal.waitFor((m) => m.type === 'executing' && m.data.node === null && m.data.prompt_id === prompt_id, 120_000);
        const steps = normal.messages.filter((m) => m.type === 'progress' && m.data.prompt_id === prompt_id).map((m) => m.data.value);
        expect(steps).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
        expect(normal.binary.length).toBe(40);
        const seq = normal.sequence.filter((t) => t !== 'status' && t !== 'progress_state');
        expect(seq.slice(0, 3)).toEqual(['execution_start', 'execution_cached', 'executing:1']);
        expect(seq.at(-1)).toBe('executing:null');

        await until(() => c.state.hub.slowClosed >= 1, 60_000, 'the stalled client to be closed');
        await until(() => c.state.embedded.queue.remaining() === 0, 60_000, 'the queue to drain');
      } finally {
        clearInterval(sampler);
      }
      console.log(`stalled client: server buffer peaked at ${maxBuffered} B (limit ${LIMIT}), ${c.state.hub.droppedPreviews} previews dropped`);
      // Bounded: the limit plus the one frame whose send crossed it (a 600 KB error message).
      expect(maxBuffered).toBeLessThan(LIMIT + 800 * 1024);
      expect(c.state.hub.droppedPreviews).toBeGreaterThan(0);
      (stalled.ws as unknown as { _socket: net.Socket })._socket.resume();
      expect([1006, 1008]).toContain(await stalledClosed);
      await until(() => c.state.hub.clientCount === 1, 10_000, 'the server to drop the stalled socket');
      normal.close();
    } finally {
      await c.close();
      fs.rmSync(c.dirs.root, { recursive: true, force: true });
    }
  }, 180_000);
});

describe('seeds up to 2^64 - 1', () => {
  const seedBody = (seed: string, id: string) => `{"prompt":{"1":{"class_type":"TestSeed","inputs":{"seed":${seed}}}},"prompt_id":"${id}"}`;
  const post = (body: string) => fetch(`${s.url}/prompt`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const historyText = async (id: string) => {
    await until(async () => Object.keys((await (await fetch(`${s.url}/history/${id}`)).json()) as object).length > 0, 30_000, `history of ${id}`);
    return (await fetch(`${s.url}/history/${id}`)).text();
  };

  test('0xffffffffffffffff is accepted, runs, and reaches the node and history exactly', async () => {
    expect((await post(seedBody('18446744073709551615', 'seed-max'))).status).toBe(200);
    const text = await historyText('seed-max');
    expect(text).toContain('"seed":18446744073709551615');
    expect(text).toContain('"bigint:18446744073709551615"');
    expect(text).toContain('"status_str":"success"');
  });

  test('2^53 + 1 keeps its value (JSON.parse would make it 2^53)', async () => {
    expect((await post(seedBody('9007199254740993', 'seed-53'))).status).toBe(200);
    const text = await historyText('seed-53');
    expect(text).toContain('"seed":9007199254740993');
    expect(text).toContain('"bigint:9007199254740993"');
  });

  test('2^64 and above are refused at submit with value_bigger_than_max; below min with value_smaller_than_min', async () => {
    for (const v of ['18446744073709551616', '100000000000000000000000', '"18446744073709551616"', '1.8446744073709552e19']) {
      const r = await post(seedBody(v, `seed-over-${v.length}`));
      expect(r.status, v).toBe(400);
      const text = await r.text();
      const body = JSON.parse(text) as { node_errors: Record<string, { errors: { type: string; message: string; extra_info: { input_name: string } }[] }> };
      const e = body.node_errors['1'].errors[0];
      expect(e.type).toBe('value_bigger_than_max');
      expect(e.extra_info.input_name).toBe('seed');
      expect(e.message).toMatch(/^Value \d+ bigger than max of 18446744073709551615$/);
    }
    const low = await post(seedBody('-1', 'seed-neg'));
    expect(low.status).toBe(400);
    expect(((await low.json()) as { node_errors: Record<string, { errors: { type: string }[] }> }).node_errors['1'].errors[0].type).toBe(
      'value_smaller_than_min',
    );
  });

  test('the Sana samplers declare the exact maximum and the noise takes the full 64-bit seed', () => {
    const seedMax = (cls: string) => (s.state.engine.registry.get(cls)!.inputs.required!.seed as { max: unknown }).max;
    expect(seedMax('FlowDPMSampler')).toBe(0xffffffffffffffffn);
    expect(seedMax('KSampler')).toBe(0xffffffffffffffffn);
    // torch's manual_seed takes a uint64 and its mt19937 keeps the low 32 bits.
    expect(randn(0xffffffffffffffffn, [4, 5])).toEqual(randn(0xffffffff, [4, 5]));
    expect(() => randn(2n ** 64n, [4])).toThrow(/outside/);
  });

  test('object_info advertises the exact maximum', async () => {
    const text = await (await fetch(`${s.url}/object_info/TestSeed`)).text();
    expect(text).toContain('"max":18446744073709551615');
  });
});

describe('filename_prefix is checked at submit', () => {
  const prefixError = async (prefix: string) => {
    const r = await postJson(`${s.url}/prompt`, { prompt: imagePrompt({ prefix }) });
    return {
      status: r.status,
      body: (await r.json()) as {
        error: { type: string };
        node_errors: Record<string, { errors: { type: string; message: string; details: string; extra_info: { input_name?: string } }[] }>;
      },
    };
  };

  test.each([
    ['parent segments', '../escape'],
    ['absolute', '/tmp/abs'],
    ['NUL', 'a\u0000b'],
    ['empty', ''],
    ['300 characters', 'p'.repeat(300)],
    ['a date token that expands to ..', '%date:..%/x'],
    ['only slashes', '///'],
  ])('%s', async (_what, prefix) => {
    const { status, body } = await prefixError(prefix);
    expect(status).toBe(400);
    expect(body.error.type).toBe('prompt_outputs_failed_validation');
    const e = body.node_errors['9'].errors[0];
    expect(e.type).toBe('custom_validation_failed');
    expect(e.message).toBe('Custom validation failed for node');
    expect(e.details).toMatch(/^filename_prefix - filename_prefix /);
    expect(e.extra_info.input_name).toBe('filename_prefix');
  });

  test('subfolders and tokens stay accepted', async () => {
    for (const prefix of ['sub/dir/name', '%date:yyyy-MM-dd%/img_%width%', 'ComfyUI']) {
      expect((await prefixError(prefix)).status, prefix).toBe(200);
    }
  });
});

describe('error shapes', () => {
  test('a malformed multipart body is a 400 invalid_multipart', async () => {
    const r = await fetch(`${s.url}/upload/image`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=zz' },
      body: 'no boundary here',
    });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { type: string } }).error.type).toBe('invalid_multipart');
  });

  test("a malformed URL is answered in our JSON shape, not fastify's", async () => {
    const raw = await new Promise<string>((resolve) => {
      const sock = net.connect(s.port, '127.0.0.1', () => sock.end('GET /history/%zz%E0%A4%A HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
      let out = '';
      sock.on('data', (d) => (out += d));
      sock.on('close', () => resolve(out));
    });
    expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as { error: { type: string }; code?: unknown };
    expect(body.error.type).toBe('invalid_url');
    expect(body.code).toBeUndefined();
  });

  test('/history/<very long id> reaches the history route', async () => {
    for (const prefix of ['', '/api']) {
      const r = await fetch(`${s.url}${prefix}/history/${'a'.repeat(5000)}`);
      expect(r.status).toBe(200);
      expect(await r.json()).toEqual({});
    }
  });

  test('a reused prompt_id is refused while queued, running, or in history', async () => {
    const id = 'reused-id';
    expect((await postJson(`${s.url}/prompt`, { prompt: imagePrompt({ seed: 77, slowMs: 1500, steps: 5 }), prompt_id: id })).status).toBe(200);
    const again = await postJson(`${s.url}/prompt`, { prompt: imagePrompt({ seed: 78 }), prompt_id: id });
    expect(again.status).toBe(400);
    const body = (await again.json()) as { error: { type: string; message: string; extra_info: { state: string } } };
    expect(body.error.type).toBe('prompt_id_in_use');
    expect(['queued', 'running']).toContain(body.error.extra_info.state);
    await until(async () => Object.keys((await (await fetch(`${s.url}/history/${id}`)).json()) as object).length > 0, 30_000, 'history');
    const later = await postJson(`${s.url}/prompt`, { prompt: imagePrompt({ seed: 79 }), prompt_id: id });
    expect(later.status).toBe(400);
    expect(((await later.json()) as { error: { extra_info: { state: string } } }).error.extra_info.state).toBe('in history');
    // The first job's entry is still the one stored.
    const entry = (await (await fetch(`${s.url}/history/${id}`)).json()) as Record<
      string,
      { prompt: [number, string, Record<string, { inputs: { seed?: number } }>] }
    >;
    expect(entry[id].prompt[2]['1'].inputs.seed).toBe(77);
  });
});
