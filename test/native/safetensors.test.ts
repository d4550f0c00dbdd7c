// Safetensors: writer/reader round trips, dtype conversion on load, sharded indexes, folder
// resolution with diffusers variants, the golden fixtures, and corrupt or hostile headers.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getBackend, openSafetensors, writeSafetensors } from '../../native/index.ts';
import { golden } from '../fixtures.ts';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-st-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const cpu = () => getBackend('cpu');

/** Writes a file from a raw header object and a data area. */
function rawFile(name: string, header: unknown, data = Buffer.alloc(0), lenOverride?: bigint): string {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(h.length));
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.concat([len, h, data]));
  return p;
}

describe('safetensors', () => {
  it('round-trips every dtype with metadata, and converts on load', () => {
    const p = path.join(dir, 'all.safetensors');
    writeSafetensors(
      p,
      {
        a: { dtype: 'F32', shape: [2, 2], data: new Float32Array([1, -2, 3.5, 4]) },
        b: { dtype: 'BF16', shape: [3], data: new Float32Array([1, 0.5, -3]) },
        c: { dtype: 'F16', shape: [1, 2], data: new Uint16Array([0x3c00, 0xc000]) },
        d: { dtype: 'I32', shape: [2], data: new Int32Array([7, -9]) },
        e: { dtype: 'I64', shape: [2], data: new BigInt64Array([2n ** 40n, -3n]) },
        empty: { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
      },
      { format: 'pt', note: 'test' },
    );
    const ck = openSafetensors(p);
    expect(ck.keys().sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'empty']);
    expect(ck.metadata).toEqual({ format: 'pt', note: 'test' });
    expect(ck.entry('b')).toEqual({ name: 'b', dtype: 'BF16', shape: [3], file: p });
    const b = cpu();
    expect([...ck.load('a', b).toFloat32()]).toEqual([1, -2, 3.5, 4]);
    const bt = ck.load('b', b);
    expect(bt.dtype).toBe('bf16');
    expect([...bt.toFloat32()]).toEqual([1, 0.5, -3]);
    expect([...ck.load('c', b, 'f32').toFloat32()]).toEqual([1, -2]);
    expect([...ck.load('a', b, 'bf16').toFloat32()]).toEqual([1, -2, 3.5, 4]);
    expect([...ck.load('d', b).toTypedArray()]).toEqual([7, -9]);
    expect([...ck.load('e', b).toTypedArray()]).toEqual([2n ** 40n, -3n]);
    expect(ck.load('empty', b).shape).toEqual([0, 3]);
    expect(() => ck.load('nope', b)).toThrow(/no tensor named 'nope'/);
    // the data area starts 8-byte aligned
    const hlen = Number(fs.readFileSync(p).readBigUInt64LE(0));
    expect((8 + hlen) % 8).toBe(0);
    ck.close();
    expect(() => ck.keys() && ck.load('a', b)).toThrow(/closed/);
  });

  it('writer rejects mismatched data', () => {
    expect(() => writeSafetensors(path.join(dir, 'x.safetensors'), { a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(/'a' has 2 values/);
    expect(() => writeSafetensors(path.join(dir, 'x.safetensors'), { a: { dtype: 'I32', shape: [1], data: new Float32Array(1) } })).toThrow(/'a' is I32/);
  });

  it('opens sharded checkpoints through the index, and folders (with diffusers variants)', () => {
    const sub = path.join(dir, 'sharded');
    fs.mkdirSync(sub);
    writeSafetensors(path.join(sub, 'model-00001-of-00002.safetensors'), { x: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } });
    writeSafetensors(path.join(sub, 'model-00002-of-00002.safetensors'), { y: { dtype: 'F32', shape: [1], data: new Float32Array([2]) } });
    const weight_map = { x: 'model-00001-of-00002.safetensors', y: 'model-00002-of-00002.safetensors' };
    fs.writeFileSync(path.join(sub, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map }));
    writeSafetensors(path.join(sub, 'model.fp16.safetensors'), { x: { dtype: 'F16', shape: [1], data: new Float32Array([5]) } });
    const b = cpu();
    for (const p of [path.join(sub, 'model.safetensors.index.json'), sub]) {
      const ck = openSafetensors(p);
      expect(ck.files.length).toBe(2);
      expect(ck.entry('y').file).toMatch(/00002/);
      expect([...ck.load('y', b).toFloat32()]).toEqual([2]);
      ck.close();
    }
    const v = openSafetensors(sub, { variant: 'fp16' });
    expect([...v.load('x', b).toFloat32()]).toEqual([5]);
    v.close();
    expect(() => openSafetensors(sub, { variant: 'bf16' })).toThrow(/variant 'bf16'/);
    fs.writeFileSync(path.join(sub, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...weight_map, z: 'model-00001-of-00002.safetensors' } }));
    expect(() => openSafetensors(sub)).toThrow(/'z' is mapped to .* but no shard holds it/);
    fs.writeFileSync(path.join(sub, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: '../escape.safetensors' } }));
    expect(() => openSafetensors(sub)).toThrow(/invalid file name/);
  });

  it('reads the golden fixtures', () => {
    const p = golden('gemma2', 'model.safetensors');
    if (!fs.existsSync(p)) return;
    const ck = openSafetensors(p);
    expect(ck.entry('embed_tokens.weight').shape).toEqual([64, 24]);
    const t = ck.load('embed_tokens.weight', cpu(), 'bf16');
    expect(t.shape).toEqual([64, 24]);
    expect(t.toFloat32().every(Number.isFinite)).toBe(true);
    ck.close();
  });

  describe('rejects corrupt and hostile files, naming file and tensor', () => {
    const good = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
    const cases: Array<[string, () => string, RegExp]> = [
      [
        'shorter than 8 bytes',
        () => {
          const p = path.join(dir, 'tiny.safetensors');
          fs.writeFileSync(p, Buffer.from([1, 2]));
          return p;
        },
        /shorter than the 8-byte/,
      ],
      ['header length beyond the limit', () => rawFile('huge.safetensors', good, Buffer.alloc(8), 2n ** 62n), /exceeds the 100000000-byte limit/],
      ['header length past the end', () => rawFile('past.safetensors', good, Buffer.alloc(8), 4000n), /runs past the end/],
      ['invalid JSON', () => rawFile('json.safetensors', '{"t": {"dtype": "F32", ', Buffer.alloc(8)), /not valid UTF-8 JSON/],
      ['JSON that is not an object', () => rawFile('arr.safetensors', '[1,2,3]'), /not a JSON object/],
      [
        'unknown dtype',
        () => rawFile('dt.safetensors', { t: { dtype: 'F33', shape: [2], data_offsets: [0, 8] } }, Buffer.alloc(8)),
        /tensor 't': unknown dtype "F33"/,
      ],
      ['bad shape', () => rawFile('shape.safetensors', { t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, Buffer.alloc(8)), /tensor 't': shape/],
      [
        'offsets outside the data area',
        () => rawFile('off.safetensors', { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, Buffer.alloc(4)),
        /tensor 't': data_offsets \[0, 8\] outside the 4-byte/,
      ],
      [
        'reversed offsets',
        () => rawFile('rev.safetensors', { t: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, Buffer.alloc(8)),
        /tensor 't': data_offsets/,
      ],
      [
        'dtype × shape ≠ byte length',
        () => rawFile('len.safetensors', { t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(12)),
        /tensor 't': F32 \[3\] needs 12 bytes but data_offsets span 8/,
      ],
      [
        'overlapping tensors',
        () =>
          rawFile(
            'ovl.safetensors',
            { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
            Buffer.alloc(12),
          ),
        /'a' and 'b' overlap/,
      ],
      ['non-string metadata', () => rawFile('meta.safetensors', { __metadata__: { n: 1 }, ...good }, Buffer.alloc(8)), /__metadata__.n is not a string/],
      [
        'huge shape product',
        () => rawFile('big.safetensors', { t: { dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] } }, Buffer.alloc(8)),
        /too large|needs/,
      ],
    ];
    for (const [what, make, msg] of cases) {
      it(what, () => {
        const p = make();
        let err: Error | undefined;
        try {
          openSafetensors(p).close();
        } catch (e) {
          err = e as Error;
        }
        expect(err, `${what} was accepted`).toBeDefined();
        expect(err!.message).toMatch(msg);
        expect(err!.message).toContain(path.basename(p));
      });
    }
    it('a missing file', () => {
      expect(() => openSafetensors(path.join(dir, 'missing.safetensors'))).toThrow(/missing.safetensors: no such file/);
    });
    it('a loadable header with a dtype we cannot load names the tensor on load', () => {
      const p = rawFile('u8.safetensors', { t: { dtype: 'U8', shape: [8], data_offsets: [0, 8] } }, Buffer.alloc(8));
      const ck = openSafetensors(p);
      expect(() => ck.load('t', cpu())).toThrow(/'t' has dtype U8/);
      ck.close();
    });
  });
});
