// Hostile and random requests: whatever arrives, the server answers with a status below 500
// (JSON for API errors) and keeps serving. Jobs it queues run on the stub host: this is about HTTP.
import fs from 'node:fs';
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startStubServer, type TestServer } from './helpers.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startStubServer({ maxUploadBytes: 32 * 1024, maxJsonBytes: 64 * 1024 });
});
afterAll(async () => {
  await s?.close();
  if (s) fs.rmSync(s.dirs.root, { recursive: true, force: true });
});

const POST_ROUTES = ['/prompt', '/queue', '/interrupt', '/history', '/free', '/upload/image', '/upload/mask', '/workflow_to_prompt'];
const GET_ROUTES = [
  '/prompt',
  '/queue',
  '/history',
  '/history/x',
  '/object_info',
  '/object_info/SaveImage',
  '/view',
  '/system_stats',
  '/models',
  '/models/x',
  '/features',
  '/workflows',
  '/workflows/x',
];
const CONTENT_TYPES = [
  'application/json',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=zz',
  'multipart/form-data',
  'image/png',
  '',
];

const jsonish = fc.oneof(
  fc.json(),
  fc.string(),
  fc.jsonValue().map((v) => JSON.stringify({ prompt: v })),
  fc.jsonValue().map((v) => JSON.stringify({ prompt: { '1': { class_type: 'SaveImage', inputs: { images: v, filename_prefix: v } } } })),
  fc.jsonValue().map((v) => JSON.stringify({ delete: v, clear: v, prompt_id: v, number: v, front: v })),
);

test('random POST bodies and content types never produce a 5xx', async () => {
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...POST_ROUTES), fc.constantFrom(...CONTENT_TYPES), jsonish, fc.boolean(), async (route, ct, body, api) => {
      const headers: Record<string, string> = ct ? { 'content-type': ct } : {};
      const r = await fetch(`${s.url}${api ? '/api' : ''}${route}`, { method: 'POST', headers, body });
      expect(r.status, `${route} ${ct} ${body.slice(0, 200)}`).toBeLessThan(500);
      await r.arrayBuffer();
    }),
    { numRuns: 150 },
  );
  await fetch(`${s.url}/queue`, { method: 'POST', body: JSON.stringify({ clear: true }) });
  await fetch(`${s.url}/interrupt`, { method: 'POST' });
});

test('random query strings never produce a 5xx', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...GET_ROUTES),
      fc.dictionary(fc.constantFrom('filename', 'type', 'subfolder', 'channel', 'preview', 'max_items', 'offset'), fc.string()),
      async (route, q) => {
        const r = await fetch(`${s.url}${route}?${new URLSearchParams(q)}`);
        expect(r.status, `${route}?${new URLSearchParams(q)}`).toBeLessThan(500);
        await r.arrayBuffer();
      },
    ),
    { numRuns: 150 },
  );
});

test('garbage on the socket, truncated bodies and bad WS upgrades leave the server up', async () => {
  const raw = (payload: string) =>
    new Promise<string>((resolve) => {
      const sock = net.connect(s.port, '127.0.0.1', () => sock.end(payload));
      let out = '';
      sock.on('data', (d) => (out += d));
      sock.on('close', () => resolve(out));
      sock.on('error', () => resolve(out));
    });
  await raw('\x00\x01\x02 garbage\r\n\r\n');
  await raw('POST /prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"prompt":');
  await raw('GET /ws?clientId=x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n');
  await raw('GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  await raw(`GET /view?filename=${'a'.repeat(100_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  const r = await fetch(`${s.url}/system_stats`);
  expect(r.status).toBe(200);
});
