// Shape ops (permute, concat, slice, indexSelect, repeatInterleave, reshape), casts, and the
// NCHW resampling ops, on every backend.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import * as R from './reference.ts';
import { backendsUnderTest, dim, expectClose, forAll, rand, shapeArb } from './harness.ts';

const permArb = shapeArb(1, 5, 5).chain((s) =>
  fc
    .shuffledSubarray(
      s.map((_, i) => i),
      { minLength: s.length, maxLength: s.length },
    )
    .map((perm) => ({ s, perm })),
);
const axisArb = shapeArb(1, 4, 6).chain((s) => fc.tuple(fc.constant(s), dim(0, s.length - 1)));

for (const b of backendsUnderTest()) {
  describe(`shape ops on ${b.name}`, () => {
    it('permute', () => {
      forAll(b, 'permute', permArb, ({ s, perm }, dt, seed) => {
        const x = rand(b, s, dt, seed);
        const got = b.permute(x.t, perm);
        expect(got.shape).toEqual(perm.map((p) => s[p]));
        expectClose('permute', got.toFloat32(), R.permute(x.v, s, perm), dt);
      });
    });
    it('concat along any axis, mixing dtypes into the first one', () => {
      forAll(b, 'concat', fc.tuple(axisArb, fc.array(dim(1, 4), { minLength: 1, maxLength: 4 })), ([[s, ax], lens], dt, seed) => {
        const parts = lens.map((n, k) => {
          const sh = [...s];
          sh[ax] = n;
          return { sh, ...rand(b, sh, k % 2 ? 'f32' : dt, seed + k) };
        });
        const got = b.concat(
          parts.map((p) => p.t),
          ax,
        );
        expect(got.dtype).toBe(parts[0].t.dtype);
        // values of f32 parts round to the first part's dtype on the way in
        const vals = parts.map((p) => Float64Array.from(b.cast(p.t, dt).toFloat32()));
        expectClose(
          'concat',
          got.toFloat32(),
          R.concat(
            vals,
            parts.map((p) => p.sh),
            ax,
          ),
          dt,
        );
      });
    });
    it('slice, indexSelect, repeatInterleave', () => {
      forAll(
        b,
        'slice',
        fc.tuple(axisArb, fc.nat(), fc.nat(), fc.array(fc.nat(), { minLength: 1, maxLength: 6 }), dim(1, 3)),
        ([[s, ax], p, q, picks, rep], dt, seed) => {
          const x = rand(b, s, dt, seed);
          const n = s[ax],
            start = p % (n + 1),
            end = start + (q % (n - start + 1));
          const rows = Array.from({ length: end - start }, (_, i) => start + i);
          expectClose('slice', b.slice(x.t, ax, start, end).toFloat32(), R.gather(x.v, s, ax, rows), dt);
          const idx = picks.map((i) => i % n);
          expectClose('indexSelect', b.indexSelect(x.t, ax, idx).toFloat32(), R.gather(x.v, s, ax, idx), dt);
          const repRows = Array.from({ length: n * rep }, (_, i) => Math.floor(i / rep));
          expectClose('repeatInterleave', b.repeatInterleave(x.t, rep, ax).toFloat32(), R.gather(x.v, s, ax, repRows), dt);
        },
      );
    });
    it('slice and indexSelect accept negative positions like Python', () => {
      const x = b.fromArray([0, 1, 2, 3, 4, 5], [6]);
      expect([...b.slice(x, 0, -3, 6).toFloat32()]).toEqual([3, 4, 5]);
      expect([...b.indexSelect(x, 0, [0, -1]).toFloat32()]).toEqual([0, 5]);
      expect(() => b.slice(x, 0, 4, 2)).toThrow(/slice/);
      expect(() => b.indexSelect(x, 0, [6])).toThrow(/indices\[0\]/);
      x.dispose();
    });
    it('reshape is a view that shares storage', () => {
      const x = b.fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
      const v = b.reshape(x, [3, -1]);
      expect(v.shape).toEqual([3, 2]);
      expect(v.nbytes).toBe(0);
      x.dispose();
      expect([...v.toFloat32()]).toEqual([1, 2, 3, 4, 5, 6]); // the view keeps the storage alive
      v.dispose();
      expect(() => b.reshape(b.zeros([4]), [3])).toThrow(/reshape/);
    });
    it('slice of one contiguous range (every dim before the axis 1) is a view; other slices copy', () => {
      const before = b.memory().allocated;
      const x = b.fromArray(
        Array.from({ length: 24 }, (_, i) => i),
        [1, 4, 2, 3],
      );
      const v = b.slice(x, 1, 1, 3); // rows 1..2: elements 6..17
      expect(v.shape).toEqual([1, 2, 2, 3]);
      expect(v.nbytes).toBe(0);
      expect(b.memory().allocated - before).toBe(24 * 4); // no new storage
      const v2 = b.reshape(v, [4, 3]);
      const vv = b.slice(v2, 0, 1, 3); // a view of a view at an offset
      expect([...vv.toFloat32()]).toEqual([9, 10, 11, 12, 13, 14]);
      // ops read a view at its offset
      const sum = b.add(vv, vv);
      expect([...sum.toFloat32()]).toEqual([18, 20, 22, 24, 26, 28]);
      const c = b.slice(x, 3, 0, 1); // strided: a copy
      expect(c.nbytes).toBe(8 * 4);
      expect([...c.toFloat32()]).toEqual([0, 3, 6, 9, 12, 15, 18, 21]);
      x.dispose();
      expect([...v.toFloat32()]).toEqual(Array.from({ length: 12 }, (_, i) => 6 + i)); // the view keeps the storage alive
      expect(() => b.reshape(v, [12], { consume: true })).toThrow(/consume needs a tensor that owns its storage alone, got a view/);
      for (const t of [v, v2, vv, c, sum]) t.dispose();
      expect(b.memory().allocated).toBe(before);
    });
    it('reshape with consume takes over the storage: an owner, not a view; the input is disposed', () => {
      const before = b.memory().allocated;
      const x = b.fromArray([1, 2, 3, 4, 5, 6], [6, 1, 1]);
      const o = b.reshape(x, [2, 3], { consume: true });
      expect(x.disposed).toBe(true);
      expect(o.shape).toEqual([2, 3]);
      expect(o.nbytes).toBe(6 * 4);
      expect(b.memory().allocated - before).toBe(6 * 4); // the same storage, not a copy
      expect([...o.toFloat32()]).toEqual([1, 2, 3, 4, 5, 6]);
      // a view, or a tensor whose storage a view shares, cannot hand it over
      const v = b.reshape(o, [6]);
      expect(() => b.reshape(v, [3, 2], { consume: true })).toThrow(/consume needs a tensor that owns its storage alone, got a view/);
      expect(() => b.reshape(o, [3, 2], { consume: true })).toThrow(/whose storage a view shares/);
      v.dispose();
      o.dispose();
      expect(b.memory().allocated).toBe(before);
    });
    it('cast between all dtypes', () => {
      const vals = [-3.7, -1, 0, 0.5, 2.25, 100, 65504, 1e-3];
      const x = b.fromArray(vals, [8]);
      expect([...b.cast(x, 'i32').toTypedArray()]).toEqual([-3, -1, 0, 0, 2, 100, 65504, 0]);
      expect([...b.cast(x, 'i64').toTypedArray()]).toEqual([-3n, -1n, 0n, 0n, 2n, 100n, 65504n, 0n]);
      expectClose('cast f16', b.cast(x, 'f16').toFloat32(), Float64Array.from(vals), 'f16');
      expectClose('cast bf16', b.cast(x, 'bf16').toFloat32(), Float64Array.from(vals), 'bf16');
      const big = b.fromArray(new BigInt64Array([2n ** 40n + 1n, -5n]), [2]);
      expect([...b.cast(big, 'i64').toTypedArray()]).toEqual([2n ** 40n + 1n, -5n]);
      expect([...b.cast(b.cast(big, 'i32'), 'i64').toTypedArray()]).toEqual([1n, -5n]);
    });
    it('bf16 and f16 round to nearest even', () => {
      // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one (1).
      const x = b.fromArray([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, 65520, 2 ** -25], [5]);
      expect([...b.cast(x, 'bf16').toFloat32()].slice(0, 2)).toEqual([1, 1 + 2 ** -6]);
      expect([...b.cast(x, 'f16').toFloat32()].slice(2)).toEqual([1, Infinity, 0]);
    });
    it('upsampleNearest, upsampleBilinear, pixelShuffle', () => {
      const arb = fc.record({ B: dim(1, 2), C: dim(1, 3), H: dim(1, 6), W: dim(1, 6), f: dim(1, 3), Ho: dim(1, 13), Wo: dim(1, 13), r: dim(1, 3) });
      forAll(b, 'upsampleBilinear', arb, ({ B, C, H, W, f, Ho, Wo, r }, dt, seed) => {
        const x = rand(b, [B, C, H, W], dt, seed);
        expectClose('upsampleNearest', b.upsampleNearest(x.t, f).toFloat32(), R.upsampleNearest(x.v, [B, C, H, W], f), dt);
        expectClose('upsampleBilinear', b.upsampleBilinear(x.t, Ho, Wo).toFloat32(), R.upsampleBilinear(x.v, [B, C, H, W], Ho, Wo), dt);
        const y = rand(b, [B, C * r * r, H, W], dt, seed + 1);
        expectClose('pixelShuffle', b.pixelShuffle(y.t, r).toFloat32(), R.pixelShuffle(y.v, [B, C * r * r, H, W], r), dt);
      });
    });
    it('embedding with i32 and i64 ids, out-of-range ids throw', () => {
      forAll(
        b,
        'embedding',
        fc.record({ V: dim(1, 20), D: dim(1, 17), ids: fc.array(fc.nat(), { minLength: 1, maxLength: 12 }), i64: fc.boolean() }),
        ({ V, D, ids, i64 }, dt, seed) => {
          const table = rand(b, [V, D], dt, seed);
          const idv = ids.map((i) => i % V);
          const idt = i64 ? b.fromArray(BigInt64Array.from(idv, BigInt), [idv.length]) : b.fromArray(Int32Array.from(idv), [idv.length]);
          const got = b.embedding(table.t, idt);
          expect(got.shape).toEqual([idv.length, D]);
          expectClose('embedding', got.toFloat32(), R.gather(table.v, [V, D], 0, idv), dt);
          expect(() => b.embedding(table.t, b.fromArray(Int32Array.from([V]), [1]))).toThrow(/embedding/);
        },
      );
    });
  });
}
