// SharedDirStore: atomic writes into a folder type, /view resolution (hostile names refused,
// missing files undefined), listing, create-if-free and ComfyUI's upload naming on top of it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { afterAll, expect, it } from 'vitest';
import { sha256Hex, SharedDirStore, storeNoClobber, uploadNames } from '../../cluster/output_store.ts';
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

it('create() never replaces a file (the upload rule on top of it), and path failures are UnsafePathError', async () => {
  const dirs = { output: path.join(root, 'o2'), input: path.join(root, 'i2'), temp: path.join(root, 't2') };
  const store = new SharedDirStore(dirs);
  expect(await store.create('input', 'd', 'a.png', Buffer.from('one'))).toEqual({ created: true });
  expect(await store.create('input', 'd', 'a.png', Buffer.from('two'))).toEqual({ created: false, sha256: sha256Hex(Buffer.from('one')) });
  expect(fs.readFileSync(path.join(dirs.input, 'd', 'a.png'), 'utf8')).toBe('one');
  // A folder of that name is taken, and holds no bytes to compare.
  fs.mkdirSync(path.join(dirs.input, 'd', 'dir.png'));
  expect(await store.create('input', 'd', 'dir.png', Buffer.from('x'))).toEqual({ created: false, sha256: undefined });
  expect(await storeNoClobber(store, 'input', 'd', Buffer.from('two'), uploadNames('a.png'))).toBe('a (1).png');
  expect(await storeNoClobber(store, 'input', 'd', Buffer.from('one'), uploadNames('a.png'))).toBe('a.png');
  expect(await store.list('input', 'd')).toEqual(['a (1).png', 'a.png']);
  // A file used as a folder (ENOTDIR from realpath) is refused like any path outside the folder.
  await expect(store.resolve('input', 'd/a.png', 'x.png')).rejects.toBeInstanceOf(UnsafePathError);
  expect(() => store.check('input', 'd/a.png', 'x.png')).toThrow(UnsafePathError);
  // A symlinked folder pointing outside: refused for reads and writes.
  fs.symlinkSync(os.tmpdir(), path.join(dirs.input, 'out'));
  expect(() => store.check('input', 'out')).toThrow(UnsafePathError);
  await expect(store.create('input', 'out', 'x.png', Buffer.from('x'))).rejects.toBeInstanceOf(UnsafePathError);
  expect([...uploadNames('x.tar.png')].slice(0, 3)).toEqual(['x.tar.png', 'x.tar (1).png', 'x.tar (2).png']);
  expect([...uploadNames('noext')].length).toBe(10_000);
});
