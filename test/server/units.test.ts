// Unit tests of the server's building blocks: safe paths, save naming, queue order, history
// persistence, multipart parsing, body parsing, CLI args.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { parseArgs, parseSet, UsageError } from '../../cli/args.ts';
import { expandPrefix, formatDate, planSave } from '../../nodes/image/filenames.ts';
import { createFileAtomic, relativeSegments, resolveInside, UnsafePathError } from '../../nodes/image/paths.ts';
import { decodePng, readPngText } from '../../nodes/image/png.ts';
import { saveImageBatch } from '../../nodes/image/save.ts';
import { checkJsonDepth, parseJsonBody } from '../../web/server/body.ts';
import { HistoryStore, type HistoryEntry } from '../../web/server/history.ts';
import { parseMultipart } from '../../web/server/multipart.ts';
import { PromptQueue, QueueStore, type Job } from '../../web/server/queue.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-units-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('safe paths', () => {
  const root = path.join(tmp, 'root');
  fs.mkdirSync(path.join(root, 'sub'), { recursive: true });
  fs.symlinkSync(os.tmpdir(), path.join(root, 'escape'));

  test.each([
    ['../x', /\.\./],
    ['a/../../x', /\.\./],
    ['/etc/passwd', /absolute/],
    ['a\\..\\b', /backslash/],
    ['a\0b', /NUL/],
    ['escape/x.png', /outside/],
  ])('rejects %j', (rel, why) => {
    expect(() => resolveInside(root, [rel])).toThrow(UnsafePathError);
    expect(() => resolveInside(root, [rel])).toThrow(why);
  });

  test('accepts nested relative paths, and the root only when asked', () => {
    expect(resolveInside(root, ['sub', 'x.png'])).toBe(path.join(root, 'sub', 'x.png'));
    expect(resolveInside(root, ['', 'new/dir/y.png'])).toBe(path.join(root, 'new', 'dir', 'y.png'));
    expect(() => resolveInside(root, [''])).toThrow(/outside/);
    expect(resolveInside(root, [''], true)).toBe(root);
    expect(relativeSegments('./a//b/')).toEqual(['a', 'b']);
  });

  test('createFileAtomic never overwrites', () => {
    const f = path.join(root, 'once.bin');
    expect(createFileAtomic(f, Buffer.from('a'))).toBe(true);
    expect(createFileAtomic(f, Buffer.from('b'))).toBe(false);
    expect(fs.readFileSync(f, 'utf8')).toBe('a');
    expect(fs.readdirSync(root).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});

describe('save naming', () => {
  const d = new Date(2026, 0, 2, 3, 4, 5);
  test('date and size tokens', () => {
    expect(formatDate('yyyy-MM-dd hh:mm:ss', d)).toBe('2026-01-02 03:04:05');
    expect(expandPrefix('a/%date:yyyyMMdd%_%width%x%height%_%year%', { width: 8, height: 4, date: d })).toBe('a/20260102_8x4_2026');
  });

  test('counter continues after the highest existing number, per prefix and folder', () => {
    const root = path.join(tmp, 'out1');
    fs.mkdirSync(path.join(root, 'a'), { recursive: true });
    for (const f of ['ComfyUI_00003_.png', 'ComfyUI_00010_.png', 'Other_00050_.png', 'ComfyUI_x_00099_.png']) fs.writeFileSync(path.join(root, f), '');
    expect(planSave(root, 'ComfyUI')).toEqual({ subfolder: '', name: 'ComfyUI', counter: 11 });
    expect(planSave(root, 'a/ComfyUI')).toEqual({ subfolder: 'a', name: 'ComfyUI', counter: 1 });
  });

  test('saveImageBatch writes one PNG per batch item with prompt/workflow chunks', () => {
    const root = path.join(tmp, 'out2');
    const img = { data: new Float32Array(2 * 2 * 3 * 3).map((_, i) => (i % 7) / 6), batch: 2, height: 2, width: 3, channels: 3 as const };
    const saved = saveImageBatch(img, {
      root,
      type: 'output',
      prefix: 'x/img_%batch_num%',
      prompt: { '1': { class_type: 'é' } },
      extraPnginfo: { workflow: { nodes: [] } },
      level: 4,
    });
    expect(saved).toEqual([
      { filename: 'img_0_00001_.png', subfolder: 'x', type: 'output' },
      { filename: 'img_1_00002_.png', subfolder: 'x', type: 'output' },
    ]);
    // The next save continues the counter even though the batch number changes the name.
    expect(
      saveImageBatch({ ...img, batch: 1, data: img.data.subarray(0, 2 * 3 * 3) }, { root, type: 'output', prefix: 'x/img_%batch_num%', level: 1 })[0].filename,
    ).toBe('img_0_00003_.png');
    const first = fs.readFileSync(path.join(root, saved[0].subfolder, saved[0].filename));
    expect(JSON.parse(readPngText(first).prompt)).toEqual({ '1': { class_type: 'é' } });
    expect(JSON.parse(readPngText(first).workflow)).toEqual({ nodes: [] });
    const dec = decodePng(first);
    expect([dec.width, dec.height]).toEqual([3, 2]);
    expect(dec.data[1]).toBe(Math.trunc((1 / 6) * 255));
  });

  test('a malformed IMAGE is refused with a clear message', () => {
    const bad = { data: new Float32Array(5), batch: 1, height: 1, width: 2, channels: 3 as const };
    expect(() => saveImageBatch(bad, { root: path.join(tmp, 'out4'), type: 'output', prefix: 'x', level: 1 })).toThrow(
      /saving images \(output\): expected an IMAGE/,
    );
  });

  test('a prefix that leaves the output folder is refused', () => {
    const img = { data: new Float32Array(3), batch: 1, height: 1, width: 1, channels: 3 as const };
    expect(() => saveImageBatch(img, { root: path.join(tmp, 'out3'), type: 'output', prefix: '../evil', level: 1 })).toThrow(/\.\./);
    expect(() => saveImageBatch(img, { root: path.join(tmp, 'out3'), type: 'output', prefix: '/abs/evil', level: 1 })).toThrow(/absolute/);
  });
});

const job = (promptId: string, number: number): Job => ({ number, promptId, prompt: {}, extraData: {}, outputs: [], sensitive: {}, clientId: undefined });

describe('queue', () => {
  test('FIFO for plain jobs, front jobs first and LIFO among themselves, explicit numbers slot in', () => {
    const q = new PromptQueue();
    const a = job('a', q.nextNumber(undefined, false)); // 0
    const b = job('b', q.nextNumber(undefined, false)); // 1
    const f1 = job('f1', q.nextNumber(undefined, true)); // -2
    const f2 = job('f2', q.nextNumber(undefined, true)); // -3
    const mid = job('mid', q.nextNumber(0.5, false));
    for (const j of [a, b, f1, f2, mid]) q.put(j);
    expect(q.snapshot().queue_pending.map((i) => i[1])).toEqual(['f2', 'f1', 'a', 'mid', 'b']);
    expect(q.take()?.promptId).toBe('f2');
    expect(q.take()).toBeUndefined(); // one job at a time
    expect(q.remaining()).toBe(5);
    expect(q.delete(['b', 'nope', 'f2'])).toBe(1); // running job cannot be deleted this way
    expect(q.snapshot().queue_running[0][1]).toBe('f2');
    q.finish('f2');
    expect(q.clear()).toBe(3);
    expect(q.remaining()).toBe(0);
  });
});

describe('queue store', () => {
  test('restores pending jobs in order, hands back the stopped running job once, never writes secrets, sets damaged files aside', () => {
    const dir = path.join(tmp, 'qstore');
    const q1 = new PromptQueue(new QueueStore(dir));
    const secret = { ...job('s', q1.nextNumber(undefined, false)), sensitive: { api_key_comfy_org: 'SECRET' }, clientId: 'c1' };
    for (const j of [secret, job('a', q1.nextNumber(undefined, false)), job('f', q1.nextNumber(undefined, true)), job('gone', q1.nextNumber(undefined, false))])
      q1.put(j);
    expect(q1.take()?.promptId).toBe('f');
    q1.delete(['gone']);
    const files = fs.readdirSync(path.join(dir, 'queue'));
    expect(files.sort()).toEqual(['000000000000.json', '000000000001.json', 'running.json']);
    for (const f of files) expect(fs.readFileSync(path.join(dir, 'queue', f), 'utf8')).not.toContain('SECRET');
    fs.writeFileSync(path.join(dir, 'queue', '000000000099.json'), '{not json');

    const store = new QueueStore(dir);
    const left = store.load();
    expect(left.interrupted?.promptId).toBe('f');
    expect(left.pending.map((j) => [j.promptId, j.clientId, j.sensitive])).toEqual([
      ['s', 'c1', {}],
      ['a', undefined, {}],
    ]);
    expect(fs.existsSync(path.join(dir, 'queue', '000000000099.json.corrupt'))).toBe(true);
    const q2 = new PromptQueue(store, left.pending);
    // A new job numbers after the restored ones (0 and 1).
    expect(q2.nextNumber(undefined, false)).toBe(2);
    expect(q2.take()?.promptId).toBe('s');
    q2.finish('s');
    expect(q2.clear()).toBe(1);
    expect(fs.readdirSync(path.join(dir, 'queue')).filter((f) => f.endsWith('.json'))).toEqual([]);
    expect(new QueueStore(dir).load()).toEqual({ pending: [], interrupted: undefined });
  });
});

describe('history store', () => {
  const entry = (n: number): HistoryEntry => ({
    prompt: [n, `p${n}`, {}, {}, []],
    outputs: { '9': { images: [] } },
    status: { status_str: 'success', completed: true, messages: [] },
    meta: {},
  });

  test('persists, keeps the newest N, lists like ComfyUI, survives a reload', () => {
    const dir = path.join(tmp, 'user1');
    const h = new HistoryStore(dir, 3);
    for (let i = 0; i < 5; i++) h.add(`p${i}`, entry(i));
    expect(Object.keys(h.list())).toEqual(['p2', 'p3', 'p4']);
    expect(Object.keys(h.list(2))).toEqual(['p3', 'p4']);
    expect(Object.keys(h.list(1, 1))).toEqual(['p3']);
    expect(Object.keys(h.list(undefined, 2))).toEqual(['p4']);
    h.add('p2', entry(22)); // a reused prompt id moves to the end
    const again = new HistoryStore(dir, 3);
    expect(Object.keys(again.list())).toEqual(['p3', 'p4', 'p2']);
    expect(again.get('p2')?.prompt[0]).toBe(22);
    again.delete(['p3']);
    expect(Object.keys(new HistoryStore(dir, 3).list())).toEqual(['p4', 'p2']);
    new HistoryStore(dir, 3).clear();
    expect(new HistoryStore(dir, 3).size).toBe(0);
  });

  test('a corrupt file is set aside instead of stopping the server', () => {
    const dir = path.join(tmp, 'user2');
    const h = new HistoryStore(dir, 10);
    h.add('ok', entry(1));
    fs.writeFileSync(path.join(dir, 'history', '000000000099.json'), '{not json');
    const again = new HistoryStore(dir, 10);
    expect(Object.keys(again.list())).toEqual(['ok']);
    expect(fs.existsSync(path.join(dir, 'history', '000000000099.json.corrupt'))).toBe(true);
  });
});

describe('request bodies', () => {
  test('empty is {}, malformed and too deep are 400 errors', () => {
    expect(parseJsonBody('  ')).toEqual({});
    expect(parseJsonBody('{"a":[1]}')).toEqual({ a: [1] });
    expect(() => parseJsonBody('{"a":')).toThrow(expect.objectContaining({ statusCode: 400, code: 'invalid_json' }));
    expect(() => checkJsonDepth('['.repeat(300) + ']'.repeat(300))).toThrow(expect.objectContaining({ code: 'json_too_deep' }));
    // Brackets inside strings do not count.
    expect(() => checkJsonDepth(JSON.stringify({ s: '['.repeat(1000) }))).not.toThrow();
  });

  test('multipart fields and files', () => {
    const b = 'XyZ';
    const body = Buffer.from(
      `--${b}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput\r\n` +
        `--${b}\r\nContent-Disposition: form-data; name="image"; filename="a \\"q\\".png"\r\nContent-Type: image/png\r\n\r\n\x00\x01\r\n\x02\r\n` +
        `--${b}--\r\n`,
      'latin1',
    );
    const parts = parseMultipart(body, b);
    expect(parts.map((p) => [p.name, p.filename])).toEqual([
      ['type', undefined],
      ['image', 'a "q".png'],
    ]);
    expect(Array.from(parts[1].data)).toEqual([0, 1, 13, 10, 2]);
    expect(() => parseMultipart(Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="x"\r\n\r\nno end`), b)).toThrow(/terminated/);
  });
});

describe('cli args', () => {
  const specs = {
    port: { kind: 'number' as const },
    listen: { kind: 'optional-string' as const, implicit: '0.0.0.0' },
    set: { kind: 'list' as const },
    cache: { kind: 'string' as const, choices: ['classic', 'lru', 'none'] },
  };
  test('flags, lists, implicit values and errors', () => {
    expect(parseArgs(['f.json', '--port', '9', '--listen', '--set', 'a.b=1', '--set=c.d="x"'], specs)).toEqual({
      positional: ['f.json'],
      flags: { port: 9, listen: '0.0.0.0', set: ['a.b=1', 'c.d="x"'] },
    });
    expect(() => parseArgs(['--nope'], specs)).toThrow(UsageError);
    expect(() => parseArgs(['--port', 'x'], specs)).toThrow(/--port needs a number/);
    expect(() => parseArgs(['--cache', 'big'], specs)).toThrow(/one of classic, lru, none/);
    expect(parseSet('KSampler.seed=42')).toEqual({ node: 'KSampler', input: 'seed', value: 42 });
    expect(parseSet('My.Node.text=hello world')).toEqual({ node: 'My.Node', input: 'text', value: 'hello world' });
    expect(() => parseSet('novalue')).toThrow(UsageError);
  });
});
