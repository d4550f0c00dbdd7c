// SharedDirStore: atomic writes into a folder type, /view resolution (hostile names refused,
// missing files undefined), listing.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { afterAll, expect, it } from 'vitest';
import { SharedDirStore } from '../../cluster/output_store.ts';
import { UnsafePathError } from '../../nodes/image/paths.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'store-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

it('writes, resolves and lists files per folder type, inside their folder only', async () => {
  const dirs = { output: path.join(root, 'out'), input: path.join(root, 'in'), temp: path.join(root, 'tmp') };
  const store = new SharedDirStore(dirs);
  await store.write('input', 'sub/dir', 'a.png', Buffer.from('hello'));
  await store.write('input', '', 'b.png', Buffer.from('x'));
  expect(fs.readFileSync(path.join(dirs.input, 'sub/dir/a.png'), 'utf8')).toBe('hello');
  const f = (await store.resolve('input', 'sub/dir', 'a.png'))!;
  expect(f.size).toBe(5);
  expect(await text(f.open())).toBe('hello');
  expect(await store.resolve('output', '', 'a.png')).toBeUndefined();
  expect(await store.list('input')).toEqual(['b.png', 'sub/dir/a.png']);
  expect(await store.list('input', 'sub')).toEqual(['dir/a.png']);
  expect(await store.list('temp')).toEqual([]);
  await expect(store.resolve('input', '..', 'x.png')).rejects.toBeInstanceOf(UnsafePathError);
  await expect(store.write('output', '', '../evil.png', Buffer.from('x'))).rejects.toBeInstanceOf(UnsafePathError);
  expect(fs.readdirSync(dirs.input).filter((n) => n.endsWith('.tmp'))).toEqual([]);
});
