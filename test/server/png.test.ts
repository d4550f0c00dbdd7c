// PNG encoder/decoder and text chunks (nodes/image/png.ts).
import { deflateSync } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { asciiJson, crc32, decodePng, encodePng, readPngText } from '../../nodes/image/png.ts';

function chunkTypes(buf: Buffer): string[] {
  const types: string[] = [];
  for (let off = 8; off < buf.length;) {
    const len = buf.readUInt32BE(off);
    types.push(buf.toString('latin1', off + 4, off + 8));
    off += 12 + len;
  }
  return types;
}

describe('png', () => {
  test('crc32 of "IEND" is the well-known constant', () => {
    expect(crc32(Buffer.from('IEND'))).toBe(0xae426082);
  });

  test('round-trips pixels and writes text chunks before IDAT', () => {
    const data = new Uint8Array(5 * 3 * 3).map((_, i) => (i * 37) & 0xff);
    const png = encodePng({ width: 5, height: 3, channels: 3, data }, { text: { prompt: '{"a":1}', workflow: '{}' } });
    expect(chunkTypes(png)).toEqual(['IHDR', 'tEXt', 'tEXt', 'IDAT', 'IEND']);
    const dec = decodePng(png);
    expect([dec.width, dec.height, dec.channels]).toEqual([5, 3, 3]);
    expect(Buffer.from(dec.data).equals(Buffer.from(data))).toBe(true);
    expect(dec.text).toEqual({ prompt: '{"a":1}', workflow: '{}' });
  });

  test('asciiJson escapes non-ASCII so tEXt stays Latin-1 and JSON round-trips', () => {
    const value = { t: '猫 🐱 é', n: [1, 2] };
    const s = asciiJson(value);
    expect(/^[\x00-\x7e]*$/.test(s)).toBe(true);
    expect(JSON.parse(s)).toEqual(value);
    const png = encodePng({ width: 1, height: 1, channels: 1, data: new Uint8Array([7]) }, { text: { prompt: s } });
    expect(JSON.parse(readPngText(png).prompt)).toEqual(value);
  });

  test('refuses non-Latin-1 text and bad keywords, naming them', () => {
    const img = { width: 1, height: 1, channels: 1 as const, data: new Uint8Array([0]) };
    expect(() => encodePng(img, { text: { prompt: '猫' } })).toThrow(/prompt.*Latin-1/);
    expect(() => encodePng(img, { text: { '': 'x' } })).toThrow(/keyword/);
  });

  test('property: any RGBA / gray image round-trips', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), fc.constantFrom(1, 2, 3, 4), fc.integer(), (w, h, ch, seed) => {
        const data = new Uint8Array(w * h * ch);
        let x = seed | 0;
        for (let i = 0; i < data.length; i++) data[i] = (x = (Math.imul(x, 1103515245) + 12345) | 0) >>> 24;
        const dec = decodePng(encodePng({ width: w, height: h, channels: ch as 1 | 2 | 3 | 4, data }));
        expect(dec.channels).toBe(ch);
        expect(Buffer.from(dec.data).equals(Buffer.from(data))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  test('decodes palette, 16-bit, 1-bit and Adam7 images written by hand', () => {
    const build = (ihdr: number[], raw: number[], extra: Array<[string, number[]]> = []) => {
      const chunk = (type: string, data: Uint8Array) => {
        const head = Buffer.alloc(8);
        head.writeUInt32BE(data.length, 0);
        head.write(type, 4, 'latin1');
        const crc = Buffer.alloc(4);
        crc.writeUInt32BE(crc32(Buffer.from(type, 'latin1'), data), 0);
        return Buffer.concat([head, data, crc]);
      };
      const h = Buffer.alloc(13);
      h.writeUInt32BE(ihdr[0], 0);
      h.writeUInt32BE(ihdr[1], 4);
      h[8] = ihdr[2];
      h[9] = ihdr[3];
      h[12] = ihdr[4] ?? 0;
      return Buffer.concat([
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        chunk('IHDR', h),
        ...extra.map(([t, d]) => chunk(t, Uint8Array.from(d))),
        chunk('IDAT', deflateSync(Uint8Array.from(raw))),
        chunk('IEND', new Uint8Array(0)),
      ]);
    };
    // 2x1 palette with tRNS: index 1 is half transparent.
    const pal = decodePng(
      build(
        [2, 1, 8, 3],
        [0, 0, 1],
        [
          ['PLTE', [10, 20, 30, 40, 50, 60]],
          ['tRNS', [255, 128]],
        ],
      ),
    );
    expect(Array.from(pal.data)).toEqual([10, 20, 30, 255, 40, 50, 60, 128]);
    // 1x1 16-bit gray: high byte kept.
    expect(Array.from(decodePng(build([1, 1, 16, 0], [0, 0xab, 0xcd])).data)).toEqual([0xab]);
    // 3x1 1-bit gray: bits 101 -> 255 0 255.
    expect(Array.from(decodePng(build([3, 1, 1, 0], [0, 0b10100000])).data)).toEqual([255, 0, 255]);
    // 2x2 8-bit gray, Adam7: pass 1 holds (0,0); pass 6 holds (1,0); pass 7 holds row 1.
    const adam = decodePng(build([2, 2, 8, 0, 1], [0, 11, 0, 12, 0, 13, 14]));
    expect(Array.from(adam.data)).toEqual([11, 12, 13, 14]);
  });

  test('rejects corrupt files with a reason', () => {
    const png = encodePng({ width: 2, height: 2, channels: 3, data: new Uint8Array(12) });
    const bad = Buffer.from(png);
    bad[bad.length - 20] ^= 0xff;
    expect(() => decodePng(bad)).toThrow(/CRC|PNG/);
    expect(() => decodePng(Buffer.from('not a png at all'))).toThrow(/signature/);
    expect(() => decodePng(png.subarray(0, png.length - 12))).toThrow(/truncated/);
  });
});
