// RedisStore on a real redis-server: write / create / resolve / list per folder type, atomic
// replacement under concurrent readers, one winner among concurrent creates, hostile paths
// refused without a key written, the per-file limit, retention, prefixes kept apart, fail-fast
// when Redis is down. FileSync (what a worker copies): inputs pulled into its folders, outputs
// pushed under the store's names (a second worker's "ComfyUI_00001_.png" gets the next counter).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSync, outputFiles, promptInputFiles } from '../../cluster/file_sync.ts';
import { parseRedisUrl } from '../../cluster/connection.ts';
import { ClusterKeys } from '../../cluster/keys.ts';
import { FileTooLargeError, sha256Hex, StoreFullError, storeNoClobber, uploadNames } from '../../cluster/output_store.ts';
import { RedisStore, StoreUnavailableError } from '../../cluster/redis_store.ts';
import { UnsafePathError } from '../../nodes/image/paths.ts';
import { freePort, RedisServer } from './redis_harness.ts';

let redis: RedisServer;
let conn: Redis;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'redis-store-'));
const stores: RedisStore[] = [];

function store(prefix: string, o: ConstructorParameters<typeof RedisStore>[2] = {}): RedisStore {
  const s = new RedisStore(conn, new ClusterKeys(prefix), o);
  stores.push(s);
  return s;
}

const fileKeys = async (prefix: string) => (await conn.keys(`${prefix}:cluster:file*`)).sort();

beforeAll(async () => {
  redis = await RedisServer.start();
  conn = new Redis({ port: redis.port, host: '127.0.0.1', maxRetriesPerRequest: null });
});
afterAll(async () => {
  conn?.disconnect();
  await redis?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('RedisStore', () => {
  it('writes, resolves and lists files per folder type; hidden names are not listed', async () => {
    const s = store('t1');
    await s.write('input', 'sub/dir', 'a.png', Buffer.from('hello'));
    await s.write('input', '', 'b.png', Buffer.from('x'));
    await s.write('input', '', '.hidden.png', Buffer.from('h'));
    await s.write('output', '', 'a.png', Buffer.from('out'));
    const f = (await s.resolve('input', 'sub/dir', 'a.png'))!;
    expect([f.size, f.sha256, f.localPath]).toEqual([5, sha256Hex(Buffer.from('hello')), undefined]);
    expect(f.mtimeMs).toBeGreaterThan(Date.now() - 60_000);
    expect((await f.read()).toString()).toBe('hello');
    expect(await text(f.open())).toBe('hello');
    // "sub/dir" + "a.png" and "" + "sub/dir/a.png" are the same file.
    expect((await (await s.resolve('input', '', 'sub/dir/a.png'))!.read()).toString()).toBe('hello');
    expect(await s.resolve('output', 'sub/dir', 'a.png')).toBeUndefined();
    expect(await s.resolve('temp', '', 'a.png')).toBeUndefined();
    expect(await s.list('input')).toEqual(['b.png', 'sub/dir/a.png']);
    expect(await s.list('input', 'sub')).toEqual(['dir/a.png']);
    expect(await s.list('input', 'su')).toEqual([]);
    expect(await s.list('output')).toEqual(['a.png']);
    expect(await s.list('temp')).toEqual([]);
    // Non-ASCII names round-trip (keys and listing are binary-safe).
    await s.write('input', 'ünï', 'çat 1.png', Buffer.from('u'));
    expect(await s.list('input', 'ünï')).toEqual(['çat 1.png']);
    // Nothing staged is left behind.
    expect((await conn.keys('t1:cluster:file-upload:*')).length).toBe(0);
  });

  it('create() writes only a free name; the upload rule (same bytes kept, else "name (n)") holds against it', async () => {
    const s = store('t2');
    expect(await s.create('input', '', 'up.png', Buffer.from('one'))).toEqual({ created: true });
    expect(await s.create('input', '', 'up.png', Buffer.from('two'))).toEqual({ created: false, sha256: sha256Hex(Buffer.from('one')) });
    expect((await (await s.resolve('input', '', 'up.png'))!.read()).toString()).toBe('one');
    expect(await storeNoClobber(s, 'input', '', Buffer.from('one'), uploadNames('up.png'))).toBe('up.png');
    expect(await storeNoClobber(s, 'input', '', Buffer.from('two'), uploadNames('up.png'))).toBe('up (1).png');
    expect(await storeNoClobber(s, 'input', '', Buffer.from('three'), uploadNames('up.png'))).toBe('up (2).png');
    expect(await storeNoClobber(s, 'input', '', Buffer.from('two'), uploadNames('up.png'))).toBe('up (1).png');
    expect(await s.list('input')).toEqual(['up (1).png', 'up (2).png', 'up.png']);
  });

  it('of concurrent creates of one name exactly one wins, and the others are told its bytes', async () => {
    const s = store('t3');
    const datas = Array.from({ length: 12 }, (_, i) => Buffer.alloc(64 * 1024, i));
    const results = await Promise.all(datas.map((d) => s.create('output', '', 'race.png', d)));
    const winners = results.flatMap((r, i) => (r.created ? [i] : []));
    expect(winners).toHaveLength(1);
    const sha = sha256Hex(datas[winners[0]]);
    for (const r of results) if (!r.created) expect(r.sha256).toBe(sha);
    expect(sha256Hex(await (await s.resolve('output', '', 'race.png'))!.read())).toBe(sha);
  });

  it('an overwrite is atomic: concurrent readers see the old file or the new one, whole', async () => {
    const s = store('t4');
    const a = Buffer.alloc(2 * 1024 * 1024, 0xaa);
    const b = Buffer.alloc(3 * 1024 * 1024 + 7, 0xbb);
    await s.write('output', 'x', 'f.png', a);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 20; i++) await s.write('output', 'x', 'f.png', i % 2 === 0 ? b : a);
      writing = false;
    })();
    let reads = 0;
    while (writing) {
      const f = (await s.resolve('output', 'x', 'f.png'))!;
      const data = await f.read();
      expect(data.equals(a) || data.equals(b)).toBe(true);
      reads++;
    }
    await writer;
    expect(reads).toBeGreaterThan(3);
    expect(await s.list('output', 'x')).toEqual(['f.png']);
    expect((await conn.keys('t4:cluster:file-upload:*')).length).toBe(0);
  });

  it('refuses hostile paths (UnsafePathError) and writes no key for them', async () => {
    const s = store('t5');
    const hostile: Array<[string, string]> = [
      ['', '../evil.png'],
      ['..', 'evil.png'],
      ['a/../..', 'evil.png'],
      ['/etc', 'passwd'],
      ['', '/etc/passwd'],
      ['', 'a\0.png'],
      ['', 'a\\..\\b.png'],
      ['sub\\x', 'a.png'],
      ['', ''],
      ['sub', '.'],
      ['', 'x'.repeat(1100) + '.png'],
    ];
    for (const [sub, name] of hostile) {
      await expect(s.write('input', sub, name, Buffer.from('x')), `${sub} + ${name}`).rejects.toBeInstanceOf(UnsafePathError);
      await expect(s.create('input', sub, name, Buffer.from('x'))).rejects.toBeInstanceOf(UnsafePathError);
      await expect(s.resolve('input', sub, name)).rejects.toBeInstanceOf(UnsafePathError);
      expect(() => s.check('input', sub, name)).toThrow(UnsafePathError);
    }
    await expect(s.list('input', '../x')).rejects.toBeInstanceOf(UnsafePathError);
    expect(() => s.check('input', '/abs')).toThrow(UnsafePathError);
    expect(await fileKeys('t5')).toEqual([]);
  });

  it('refuses a file over its limit with an error naming the file, its size and the limit', async () => {
    const s = store('t6', { maxFileBytes: 1000 });
    await s.write('input', '', 'ok.png', Buffer.alloc(1000));
    const err = await s.write('input', 'd', 'big.png', Buffer.alloc(1001)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileTooLargeError);
    expect((err as FileTooLargeError).statusCode).toBe(413);
    expect((err as Error).message).toBe('input/d/big.png is 1001 bytes; the redis store keeps files of at most 1000 bytes (--store-max-file-mb)');
    await expect(s.create('input', '', 'big2.png', Buffer.alloc(5000))).rejects.toBeInstanceOf(FileTooLargeError);
    expect(await s.list('input')).toEqual(['ok.png']);
    const mb = new FileTooLargeError('output/x.png', 80 * 1024 * 1024, 64 * 1024 * 1024, 'redis');
    expect(mb.message).toBe('output/x.png is 80.0 MiB; the redis store keeps files of at most 64.0 MiB (--store-max-file-mb)');
  });

  it('temp files expire (and leave the listing); with a retention, inputs and outputs too; a later write without one keeps the file', async () => {
    const s = store('t7', { tempTtlSeconds: 0.3 });
    await s.write('temp', '', 'p.png', Buffer.from('p'));
    await s.write('input', '', 'keep.png', Buffer.from('k'));
    expect(await s.list('temp')).toEqual(['p.png']);
    expect(await conn.pttl('t7:cluster:file:input:keep.png')).toBe(-1);
    await new Promise((r) => setTimeout(r, 450));
    expect(await s.resolve('temp', '', 'p.png')).toBeUndefined();
    expect(await s.list('temp')).toEqual([]);
    expect(await conn.zcard('t7:cluster:files:temp')).toBe(0);
    expect(await s.list('input')).toEqual(['keep.png']);

    const r = store('t7', { ttlSeconds: 0.3 });
    await r.write('input', '', 'short.png', Buffer.from('s'));
    await r.write('output', '', 'gone.png', Buffer.from('g'));
    // Written again by a store without retention before it expired: it stays.
    await s.write('input', '', 'short.png', Buffer.from('s2'));
    await new Promise((res) => setTimeout(res, 450));
    expect(await s.list('input')).toEqual(['keep.png', 'short.png']);
    expect(await s.list('output')).toEqual([]);
    expect((await (await s.resolve('input', '', 'short.png'))!.read()).toString()).toBe('s2');
  });

  it('a full Redis (maxmemory, noeviction) refuses a write with a 507 that says so; nothing is half-written', async () => {
    const s = store('full');
    const used = Number(/used_memory:(\d+)/.exec(await conn.info('memory'))![1]);
    await conn.config('SET', 'maxmemory', String(used + 256 * 1024));
    try {
      const err = await s.write('output', '', 'big.png', Buffer.alloc(2 * 1024 * 1024, 3)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreFullError);
      expect((err as StoreFullError).statusCode).toBe(507);
      expect((err as Error).message).toMatch(/^the Redis output store at redis is full \(maxmemory reached\), so output\/big\.png was not stored: .*OOM/);
    } finally {
      await conn.config('SET', 'maxmemory', '0');
    }
    expect(await fileKeys('full')).toEqual([]);
  });

  it('keeps clusters with different prefixes apart', async () => {
    const a = store('pa');
    const b = store('pb');
    await a.write('input', '', 'same.png', Buffer.from('a'));
    expect(await b.resolve('input', '', 'same.png')).toBeUndefined();
    expect(await b.list('input')).toEqual([]);
    expect(await b.create('input', '', 'same.png', Buffer.from('b'))).toEqual({ created: true });
    expect((await (await a.resolve('input', '', 'same.png'))!.read()).toString()).toBe('a');
  });

  it('lists the last names with a prefix (the highest SaveImage counter first)', async () => {
    const s = store('t8');
    for (const n of ['ComfyUI_00003_.png', 'ComfyUI_00012_.png', 'ComfyUI_temp_abcde_00001_.png', 'Other_00099_.png'])
      await s.write('output', 'o', n, Buffer.from(n));
    await s.write('output', 'o/deeper', 'ComfyUI_00050_.png', Buffer.from('d'));
    expect(await s.lastNamesWithPrefix('output', 'o', 'ComfyUI_', 2)).toEqual(['ComfyUI_temp_abcde_00001_.png', 'ComfyUI_00012_.png']);
    expect(await s.lastNamesWithPrefix('output', 'o', 'ComfyUI_0', 10)).toEqual(['ComfyUI_00012_.png', 'ComfyUI_00003_.png']);
  });

  it('a front end store answers 503 at once while Redis is unreachable', async () => {
    const down = new Redis({ port: await freePort(), host: '127.0.0.1', maxRetriesPerRequest: null, lazyConnect: true, retryStrategy: () => 1000 });
    down.on('error', () => undefined);
    void down.connect().catch(() => undefined);
    const s = new RedisStore(down, new ClusterKeys('t9'), { failFast: true, display: 'redis://nowhere:1/0' });
    const t0 = Date.now();
    const err = await s.resolve('input', '', 'a.png').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as StoreUnavailableError).statusCode).toBe(503);
    expect((err as Error).message).toMatch(/^the Redis output store at redis:\/\/nowhere:1\/0 is unreachable/);
    await expect(s.write('input', '', 'a.png', Buffer.from('x'))).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(s.list('input')).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(Date.now() - t0).toBeLessThan(1000);
    down.disconnect();
  });

  it('a front end store just opened waits for its first connection instead of answering 503', async () => {
    // CI caught this: a front end's first /view or upload, sent while its store's connection was
    // still being made, got 503 although Redis was up.
    const s = RedisStore.open(parseRedisUrl(`redis://127.0.0.1:${redis.port}/0`), new ClusterKeys('t10'), { failFast: true }, 't10');
    expect(s.redis.status).not.toBe('ready');
    const readyListeners = s.redis.listenerCount('ready');
    // many calls during the attempt share one wait (no listener per call: no MaxListeners warning)
    const calls = [s.write('input', '', 'a.png', Buffer.from('x')), ...Array.from({ length: 20 }, () => s.list('input'))];
    expect(s.redis.listenerCount('ready')).toBe(readyListeners);
    await Promise.all(calls);
    expect((await s.resolve('input', '', 'a.png'))?.size).toBe(1);
    await s.close();
  });
});

describe('what a worker copies (FileSync)', () => {
  const folders = (name: string) => {
    const base = path.join(tmp, name);
    const f = { output: path.join(base, 'output'), input: path.join(base, 'input'), temp: path.join(base, 'temp') };
    for (const d of Object.values(f)) fs.mkdirSync(d, { recursive: true });
    return f;
  };

  it('finds the files a prompt reads and the files its outputs name', () => {
    const prompt = {
      '1': { class_type: 'LoadImage', inputs: { image: 'sub/a.png' } },
      '2': { class_type: 'LoadImage', inputs: { image: 'ComfyUI_00001_.png [output]' } },
      '3': { class_type: 'LoadImage', inputs: { image: ['9', 0] } },
      '4': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'x.png' } },
      '5': { class_type: 'LoadImage', inputs: { image: 'sub/a.png' } },
    };
    expect(promptInputFiles(prompt)).toEqual([
      { type: 'input', subfolder: '', filename: 'sub/a.png' },
      { type: 'output', subfolder: '', filename: 'ComfyUI_00001_.png' },
    ]);
    const outputs = {
      '9': {
        images: [
          { filename: 'a.png', subfolder: 's', type: 'output' },
          { filename: 'p.png', subfolder: '', type: 'temp' },
        ],
      },
      '10': { images: [{ filename: 'in.png', subfolder: '', type: 'input' }], text: ['hello'] },
      '11': { gifs: [{ filename: 'v.webp', type: 'output' }] },
    };
    expect(outputFiles(outputs)).toEqual([
      { type: 'output', subfolder: 's', filename: 'a.png' },
      { type: 'temp', subfolder: '', filename: 'p.png' },
      { type: 'output', subfolder: '', filename: 'v.webp' },
    ]);
  });

  it('pulls the inputs a prompt names into the worker folders (atomic, skipped when equal); missing and hostile names are left alone', async () => {
    const s = store('f1');
    const w = folders('pull');
    const logs: string[] = [];
    const sync = new FileSync(s, w, (m) => logs.push(m));
    await s.write('input', 'sub', 'a.png', Buffer.from('AAA'));
    await s.write('output', '', 'ComfyUI_00001_.png', Buffer.from('OUT'));
    const refs = promptInputFiles({
      '1': { class_type: 'LoadImage', inputs: { image: 'sub/a.png' } },
      '2': { class_type: 'LoadImage', inputs: { image: 'ComfyUI_00001_.png [output]' } },
      '3': { class_type: 'LoadImage', inputs: { image: 'missing.png' } },
      '4': { class_type: 'LoadImage', inputs: { image: '../../escape.png' } },
    });
    await sync.pull(refs, 'job1');
    expect(fs.readFileSync(path.join(w.input, 'sub', 'a.png'), 'utf8')).toBe('AAA');
    expect(fs.readFileSync(path.join(w.output, 'ComfyUI_00001_.png'), 'utf8')).toBe('OUT');
    expect(fs.existsSync(path.join(w.input, 'missing.png'))).toBe(false);
    expect(fs.existsSync(path.join(tmp, 'escape.png'))).toBe(false);
    expect(logs).toEqual([]);
    // Equal bytes: not rewritten (same inode); changed in the store: replaced.
    const ino = fs.statSync(path.join(w.input, 'sub', 'a.png')).ino;
    await sync.pull(refs, 'job2');
    expect(fs.statSync(path.join(w.input, 'sub', 'a.png')).ino).toBe(ino);
    await s.write('input', 'sub', 'a.png', Buffer.from('BBBB'));
    await sync.pull(refs, 'job3');
    expect(fs.readFileSync(path.join(w.input, 'sub', 'a.png'), 'utf8')).toBe('BBBB');
    expect(fs.readdirSync(path.join(w.input, 'sub')).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('pushes outputs under the store names: a second worker\'s "ComfyUI_00001_.png" gets the next free counter, and the refs say so', async () => {
    const s = store('f2');
    const w1 = folders('w1');
    const w2 = folders('w2');
    const logs: string[] = [];
    const one = new FileSync(s, w1, (m) => logs.push(m));
    const two = new FileSync(s, w2, (m) => logs.push(m));
    const name = 'ComfyUI_00001_.png';
    fs.writeFileSync(path.join(w1.output, name), 'from w1');
    fs.mkdirSync(path.join(w2.output, 'sub'));
    fs.writeFileSync(path.join(w2.output, name), 'from w2');
    fs.writeFileSync(path.join(w2.temp, 'ComfyUI_temp_abcde_00001_.png'), 'preview');
    const out = (n: string, type = 'output', subfolder = '') => ({ '9': { images: [{ filename: n, subfolder, type }] } });

    expect(await one.push(out(name), new Map(), 'j1')).toEqual(out(name));
    const pushed = await two.push(
      { ...out(name), '10': { images: [{ filename: 'ComfyUI_temp_abcde_00001_.png', subfolder: '', type: 'temp' }] } },
      new Map(),
      'j2',
    );
    expect(pushed['9'].images[0].filename).toBe('ComfyUI_00002_.png');
    expect(pushed['10'].images[0].filename).toBe('ComfyUI_temp_abcde_00001_.png');
    const read = async (type: 'output' | 'temp', n: string) => (await (await s.resolve(type, '', n))!.read()).toString();
    expect([await read('output', name), await read('output', 'ComfyUI_00002_.png'), await read('temp', 'ComfyUI_temp_abcde_00001_.png')]).toEqual([
      'from w1',
      'from w2',
      'preview',
    ]);
    // The same file reported again (a cached output in a later job): the name it was given.
    expect((await two.push(out(name), new Map(), 'j3'))['9'].images[0].filename).toBe('ComfyUI_00002_.png');
    // The next collision starts from the store's highest counter, not from 1.
    await s.write('output', '', 'ComfyUI_00040_.png', Buffer.from('someone else'));
    fs.writeFileSync(path.join(w1.output, 'ComfyUI_00002_.png'), 'w1 second');
    expect((await one.push(out('ComfyUI_00002_.png'), new Map(), 'j4'))['9'].images[0].filename).toBe('ComfyUI_00041_.png');
    // Names without a counter follow the upload rule.
    fs.writeFileSync(path.join(w1.output, 'plain.png'), 'p1');
    fs.writeFileSync(path.join(w2.output, 'plain.png'), 'p2');
    await one.push(out('plain.png'), new Map(), 'j5');
    expect((await two.push(out('plain.png'), new Map(), 'j6'))['9'].images[0].filename).toBe('plain (1).png');
    expect(logs).toEqual([]);
  });

  it('a file that cannot be stored keeps its name and is logged: missing locally, over the limit, hostile', async () => {
    const s = store('f3', { maxFileBytes: 10 });
    const w = folders('w3');
    const logs: string[] = [];
    const sync = new FileSync(s, w, (m) => logs.push(m));
    fs.writeFileSync(path.join(w.output, 'big_00001_.png'), Buffer.alloc(11));
    const value = {
      '1': { images: [{ filename: 'big_00001_.png', subfolder: '', type: 'output' }] },
      '2': { images: [{ filename: 'nothere.png', subfolder: '', type: 'output' }] },
      '3': { images: [{ filename: 'x.png', subfolder: '../..', type: 'output' }] },
    };
    expect(await sync.push(value, new Map(), 'j7')).toEqual(value);
    expect(logs).toHaveLength(3);
    expect(logs[0]).toBe(
      'job j7: output/big_00001_.png is 11 bytes; the redis store keeps files of at most 10 bytes (--store-max-file-mb); /view cannot serve it',
    );
    expect(logs[1]).toMatch(/^job j7: output\/nothere\.png is not in this worker's folders/);
    expect(logs[2]).toMatch(/^job j7: output\/\.\.\/\.\.\/x\.png is not in this worker's folders \(unsafe path/);
    expect(await fileKeys('f3')).toEqual([]);
  });
});

afterAll(async () => {
  for (const s of stores) await s.close();
});
