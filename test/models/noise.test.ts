// torch.randn reproduction: every case of the golden noise fixture must match bit for bit.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { fmaf, MT19937, randn } from '../../nodes/models/noise.ts';
import { readFixture } from '../../nodes/models/golden/fixture.ts';
import { golden, haveGolden } from '../fixtures.ts';

const FIXTURE = golden('noise', 'randn.safetensors');

describe('MT19937', () => {
  it('produces the reference MT19937 sequence for seed 5489 (std::mt19937 default)', () => {
    const g = new MT19937(5489);
    // Known first outputs of the canonical generator.
    expect([g.nextU32(), g.nextU32(), g.nextU32()]).toEqual([3499211612, 581869302, 3890346734]);
    // The 10000th output of default-seeded std::mt19937 is specified by the C++ standard.
    const h = new MT19937(5489);
    let v = 0;
    for (let i = 0; i < 10000; i++) v = h.nextU32();
    expect(v).toBe(4123659995);
  });

  it('keeps only the low 32 bits of the seed and maps negative seeds into uint64', () => {
    const a = new MT19937(5n);
    const b = new MT19937((1n << 32n) + 5n);
    expect(a.nextU32()).toBe(b.nextU32());
    const c = new MT19937(-1);
    const d = new MT19937(0xffffffffn);
    expect(c.nextU32()).toBe(d.nextU32());
    expect(() => new MT19937(1n << 64n)).toThrow(/seed/);
  });
});

describe('fmaf', () => {
  it('rounds once: differs from mul-then-add where the product rounding matters', () => {
    const a = Math.fround(1 + 2 ** -23);
    // a*a = 1 + 2^-22 + 2^-46: the separately rounded product loses 2^-46.
    expect(fmaf(a, a, -1)).toBe(Math.fround(2 ** -22 + 2 ** -46));
    expect(Math.fround(Math.fround(a * a) - 1)).toBe(2 ** -22);
  });

  it('breaks double-rounding ties with the exact remainder', () => {
    // 1 + 2^-24 is a float32 midpoint; + 2^-60 must round up, - 2^-60 down.
    const tiny = 2 ** -60;
    expect(fmaf(1, 1 + 2 ** -24, tiny)).toBe(Math.fround(1 + 2 ** -23));
    expect(fmaf(1, 1 + 2 ** -24, -tiny)).toBe(1);
  });
});

describe.skipIf(!haveGolden('noise', 'randn.safetensors'))('randn vs torch (golden fixture)', () => {
  const fx = existsSync(FIXTURE) ? readFixture(FIXTURE) : undefined;
  const cases = fx ? Object.entries(fx.metadata).filter(([k]) => /^case\d+$/.test(k)) : [];

  it('has cases on both sides of the 16-element switch', () => {
    const sizes = cases.map(([, v]) => /shape=\[(.*)\]/.exec(v)![1].split(',').map(Number).reduce((a, b) => a * b, 1));
    expect(sizes.some((n) => n < 16)).toBe(true);
    expect(sizes.some((n) => n >= 16 && n % 16 !== 0)).toBe(true);
  });

  for (const [name, desc] of cases) {
    it(`${name}: ${desc}`, () => {
      const m = /seed=(-?\d+) shape=\[(.*)\]/.exec(desc);
      expect(m, `metadata ${desc}`).not.toBeNull();
      const shape = m![2].split(',').map((s) => Number(s.trim()));
      const got = randn(BigInt(m![1]), shape);
      const want = fx!.get(`${name}.values`).data;
      expect(got.length).toBe(want.length);
      let mismatches = 0;
      for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) mismatches++;
      expect(mismatches).toBe(0);
    });
  }
});

describe('randn', () => {
  it('is deterministic, seed-sensitive and roughly standard normal', () => {
    const a = randn(1234, [4, 32, 8, 8]);
    expect(randn(1234, [4, 32, 8, 8])).toEqual(a);
    expect(randn(1235, [4, 32, 8, 8])).not.toEqual(a);
    let s = 0, s2 = 0;
    for (const v of a) { s += v; s2 += v * v; }
    expect(Math.abs(s / a.length)).toBeLessThan(0.05);
    expect(Math.abs(s2 / a.length - 1)).toBeLessThan(0.05);
  });

  it('rejects unsafe number seeds and bad shapes', () => {
    expect(() => randn(2 ** 60, [4])).toThrow(/bigint/);
    expect(() => randn(1, [2, -1])).toThrow(/shape/);
  });
});
