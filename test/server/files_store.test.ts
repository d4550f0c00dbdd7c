// The file routes through a store without local files: the same requests (/view with channels and
// previews, uploads with dedupe / rename / overwrite, /upload/mask, hostile names) against a
// server on its folders (SharedDirStore) and one whose store is Redis (RedisStore, no localPath)
// get the same answers, byte for byte; LoadImage lists the store's uploads; the Redis server's
// folders stay empty. Then the store's own refusals: a file over its limit (413), Redis down (503).
import fs from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterKeys } from '../../cluster/keys.ts';
import { SharedDirStore, type OutputStore } from '../../cluster/output_store.ts';
import { RedisStore } from '../../cluster/redis_store.ts';
import { encodePng } from '../../nodes/image/png.ts';
import { freePort, RedisServer } from '../cluster/redis_harness.ts';
import { HOSTILE_UPLOADS, postJson, startTestServer, type TestServer } from './helpers.ts';
import { StubHost } from './stub_host.ts';

let redis: RedisServer;
let conn: Redis;
let local: TestServer;
let remote: TestServer;
let remoteStore: RedisStore;
const servers: TestServer[] = [];

async function server(files?: OutputStore): Promise<TestServer> {
  const s = await startTestServer({ maxUploadBytes: 64 * 1024 }, undefined, { host: new StubHost(), files });
  servers.push(s);
  return s;
}

beforeAll(async () => {
  redis = await RedisServer.start();
  conn = new Redis({ port: redis.port, host: '127.0.0.1', maxRetriesPerRequest: null });
  remoteStore = new RedisStore(conn, new ClusterKeys('files'), { failFast: true });
  [local, remote] = await Promise.all([server(), server(remoteStore)]);
  const seed = async (store: OutputStore) => {
    await store.write('output', 'sub', 'a.png', smallPng(200));
    await store.write('output', 'sub', 'alpha.png', encodePng({ width: 2, height: 1, channels: 4, data: Uint8Array.from([10, 20, 30, 128, 40, 50, 60, 0]) }));
    await store.write('output', 'sub', 'opaque.png', encodePng({ width: 2, height: 1, channels: 3, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) }));
    await store.write('output', 'sub', 'broken.png', Buffer.concat([smallPng(1).subarray(0, 20), Buffer.alloc(10)]));
    await store.write('output', '', 'page.html', Buffer.from('<script>alert(1)</script>'));
    await store.write('temp', '', 't.png', smallPng(5));
  };
  await seed(new SharedDirStore({ output: local.dirs.output, input: local.dirs.input, temp: local.dirs.temp }));
  await seed(remoteStore);
});

afterAll(async () => {
  for (const s of servers) {
    await s.close();
    fs.rmSync(s.dirs.root, { recursive: true, force: true });
  }
  conn?.disconnect();
  await redis?.close();
});

const smallPng = (v: number) => encodePng({ width: 2, height: 2, channels: 4, data: new Uint8Array(16).fill(v) });

function multipart(parts: Array<{ name: string; value: string | Buffer; filename?: string }>) {
  const boundary = '----storeBoundary' + Math.random().toString(16).slice(2);
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

type Parts = Parameters<typeof multipart>[0];

/** What a client can see of an answer. */
async function seen(res: Response) {
  const h = (k: string) => res.headers.get(k);
  return {
    status: res.status,
    type: h('content-type'),
    disposition: h('content-disposition'),
    cache: h('cache-control'),
    length: h('content-length'),
    body: Buffer.from(await res.arrayBuffer()).toString('base64'),
  };
}

const get = (s: TestServer, p: string) => fetch(`${s.url}${p}`);
const upload = (s: TestServer, parts: Parts, route = '/upload/image') => {
  const { body, contentType } = multipart(parts);
  return fetch(`${s.url}${route}`, { method: 'POST', headers: { 'content-type': contentType }, body });
};

/** The same request to both servers: the same answer. */
async function same(request: (s: TestServer) => Promise<Response>): Promise<Awaited<ReturnType<typeof seen>>> {
  const a = await seen(await request(local));
  const b = await seen(await request(remote));
  expect(b).toEqual(a);
  return a;
}

describe('a store without local files answers as the folders do', () => {
  it.each([
    ['/view?filename=a.png&subfolder=sub&type=output', 200],
    ['/api/view?filename=t.png&type=temp', 200],
    ['/view?filename=t.png%20%5Btemp%5D', 200],
    ['/view?filename=page.html', 200],
    ['/view?filename=alpha.png&subfolder=sub&channel=rgb', 200],
    ['/view?filename=alpha.png&subfolder=sub&channel=a', 200],
    ['/view?filename=opaque.png&subfolder=sub&channel=a', 200],
    ['/view?filename=alpha.png&subfolder=sub&channel=rgba', 200],
    ['/view?filename=a.png&subfolder=sub&preview=jpeg;80', 200],
    ['/view?filename=alpha.png&subfolder=sub&channel=a&preview=webp;90', 200],
    ['/view?filename=x%2Fa.png&subfolder=sub', 200],
    ['/view?filename=broken.png&subfolder=sub&channel=rgb', 400],
    ['/view', 404],
    ['/view?filename=', 400],
    ['/view?filename=../secret.png', 400],
    ['/view?filename=%2Fetc%2Fpasswd', 400],
    ['/view?filename=a.png&type=evil', 400],
    ['/view?filename=a%00.png', 400],
    ['/view?filename=a%5C..%5Cb.png', 400],
    ['/view?filename=secret.png&subfolder=..', 403],
    ['/view?filename=secret.png&subfolder=%2Ftmp', 403],
    ['/view?filename=secret.png&subfolder=sub%5Cx', 403],
    ['/view?filename=missing.png', 404],
    ['/view?filename=sub', 404],
    ['/view?filename=a.png&type=input', 404],
  ])('GET %s -> %i, the same bytes and headers', async (url, status) => {
    expect((await same((s) => get(s, url))).status).toBe(status);
  });

  it('uploads: written, duplicates kept, different bytes renamed, overwrite replaces, other types and subfolders', async () => {
    const steps: Array<[Parts, string?]> = [
      [[{ name: 'image', value: smallPng(1), filename: 'up.png' }]],
      [[{ name: 'image', value: smallPng(1), filename: 'up.png' }]],
      [[{ name: 'image', value: smallPng(2), filename: 'up.png' }]],
      [[{ name: 'image', value: smallPng(7), filename: 'up.png' }]],
      [
        [
          { name: 'image', value: smallPng(3), filename: 'up.png' },
          { name: 'overwrite', value: 'true' },
        ],
        '/api/upload/image',
      ],
      [
        [
          { name: 'image', value: smallPng(4), filename: 'x.png' },
          { name: 'type', value: 'temp' },
          { name: 'subfolder', value: 'a/b' },
        ],
      ],
    ];
    const names: unknown[] = [];
    for (const [parts, route] of steps) names.push(JSON.parse(Buffer.from((await same((s) => upload(s, parts, route))).body, 'base64').toString()));
    expect(names.map((n) => (n as { name: string }).name)).toEqual(['up.png', 'up.png', 'up (1).png', 'up (2).png', 'up.png', 'x.png']);
    expect(names[5]).toEqual({ name: 'x.png', subfolder: 'a/b', type: 'temp' });
    await same((s) => get(s, '/view?filename=up.png&type=input'));
    await same((s) => get(s, '/view?filename=up%20(2).png&type=input'));
    await same((s) => get(s, '/view?filename=x.png&type=temp&subfolder=a/b'));
    // LoadImage's choices are the store's files.
    const choices = async (s: TestServer) =>
      ((await (await get(s, '/object_info/LoadImage')).json()) as { LoadImage: { input: { required: { image: [string[]] } } } }).LoadImage.input.required
        .image[0];
    expect(await choices(remote)).toEqual(await choices(local));
    expect(await choices(remote)).toEqual(['up (1).png', 'up (2).png', 'up.png']);
    // A prompt naming an uploaded file validates; one naming anything else does not.
    const prompt = (image: string) => ({
      prompt: { '1': { class_type: 'LoadImage', inputs: { image } }, '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'x' } } },
    });
    expect((await postJson(`${remote.url}/prompt`, prompt('up (2).png'))).status).toBe(200);
    const bad = await postJson(`${remote.url}/prompt`, prompt('nope.png'));
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { node_errors: Record<string, { errors: Array<{ type: string }> }> }).node_errors['1'].errors[0].type).toBe(
      'value_not_in_list',
    );
    // Nothing landed in the Redis server's folders: the store is the only place.
    for (const d of [remote.dirs.input, remote.dirs.output, remote.dirs.temp]) expect(fs.readdirSync(d)).toEqual([]);
  });

  it.each(HOSTILE_UPLOADS)('hostile or incomplete upload %j: the same 400', async (parts) => {
    expect((await same((s) => upload(s, parts as Parts))).status).toBe(400);
  });

  it('oversized and non-multipart uploads: the same 413 / 400', async () => {
    expect((await same((s) => upload(s, [{ name: 'image', value: Buffer.alloc(100 * 1024), filename: 'big.png' }]))).status).toBe(413);
    expect((await same((s) => postJson(`${s.url}/upload/image`, { image: 'x' }))).status).toBe(400);
  });

  it('/upload/mask composes the same PNG from a stored original; bad refs are the same 400s', async () => {
    const original = encodePng({ width: 2, height: 1, channels: 3, data: new Uint8Array([10, 20, 30, 40, 50, 60]) }, { text: { prompt: '{"k":1}' } });
    await same((s) => upload(s, [{ name: 'image', value: original, filename: 'orig.png' }]));
    const maskPng = encodePng({ width: 2, height: 1, channels: 4, data: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 255]) });
    const ref = JSON.stringify({ filename: 'orig.png', subfolder: '', type: 'input' });
    const r = await same((s) =>
      upload(
        s,
        [
          { name: 'image', value: maskPng, filename: 'clipspace-mask.png' },
          { name: 'original_ref', value: ref },
        ],
        '/upload/mask',
      ),
    );
    expect(r.status).toBe(200);
    await same((s) => get(s, '/view?filename=clipspace-mask.png&type=input'));
    for (const bad of [
      JSON.stringify({ filename: '../secret.png' }),
      '{nope',
      JSON.stringify({ filename: 'missing.png' }),
      JSON.stringify({ filename: 'a.png', type: 'x' }),
    ]) {
      const rb = await same((s) =>
        upload(
          s,
          [
            { name: 'image', value: maskPng, filename: 'm2.png' },
            { name: 'original_ref', value: bad },
          ],
          '/upload/mask',
        ),
      );
      expect(rb.status).toBe(400);
    }
  });
});

describe("the store's own refusals", () => {
  it('a file over the store limit is a 413 naming the file and the limit; nothing is written', async () => {
    const s = await server(new RedisStore(conn, new ClusterKeys('small'), { maxFileBytes: 1000, failFast: true }));
    const r = await upload(s, [{ name: 'image', value: Buffer.alloc(1500, 1), filename: 'big.png' }]);
    expect(r.status).toBe(413);
    expect(await r.json()).toEqual({
      error: {
        type: 'file_too_large',
        message: 'input/big.png is 1500 bytes; the redis store keeps files of at most 1000 bytes (--store-max-file-mb)',
        details: '',
        extra_info: {},
      },
    });
    expect(await conn.keys('small:cluster:file*')).toEqual([]);
    expect((await upload(s, [{ name: 'image', value: Buffer.alloc(900, 1), filename: 'ok.png' }])).status).toBe(200);
  });

  it('a full Redis (maxmemory) refuses an upload with a 507 store_full that says so', async () => {
    const s = await server(new RedisStore(conn, new ClusterKeys('fullsrv'), { failFast: true, display: 'redis://test' }));
    const used = Number(/used_memory:(\d+)/.exec(await conn.info('memory'))![1]);
    await conn.config('SET', 'maxmemory', String(used + 16 * 1024));
    let res: Response;
    try {
      res = await upload(s, [{ name: 'image', value: Buffer.alloc(60 * 1024, 2), filename: 'full.png' }]);
    } finally {
      await conn.config('SET', 'maxmemory', '0');
    }
    expect(res.status).toBe(507);
    const body = (await res.json()) as { error: { type: string; message: string } };
    expect(body.error.type).toBe('store_full');
    expect(body.error.message).toMatch(/^the Redis output store at redis:\/\/test is full \(maxmemory reached\), so input\/full\.png was not stored: .*OOM/);
    expect(await conn.keys('fullsrv:cluster:file*')).toEqual([]);
  });

  it('Redis down: /view and uploads answer 503 backend_unavailable with Retry-After; object_info keeps answering', async () => {
    const down = new Redis({ port: await freePort(), host: '127.0.0.1', maxRetriesPerRequest: null, lazyConnect: true, retryStrategy: () => 1000 });
    down.on('error', () => undefined);
    void down.connect().catch(() => undefined);
    const s = await server(new RedisStore(down, new ClusterKeys('down'), { failFast: true, display: 'redis://127.0.0.1:1/0' }));
    for (const res of [await get(s, '/view?filename=a.png'), await upload(s, [{ name: 'image', value: smallPng(1), filename: 'u.png' }])]) {
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      const body = (await res.json()) as { error: { type: string; message: string } };
      expect(body.error.type).toBe('backend_unavailable');
      expect(body.error.message).toMatch(/^the Redis output store at redis:\/\/127\.0\.0\.1:1\/0 is unreachable/);
    }
    expect((await get(s, '/object_info/LoadImage')).status).toBe(200);
    down.disconnect();
  });
});
