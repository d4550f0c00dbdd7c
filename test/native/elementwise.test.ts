// Element-wise ops, softmax and the norms against the float64 references, on every backend.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import * as R from './reference.ts';
import { backendsUnderTest, dim, expectClose, forAll, rand, shapeArb } from './harness.ts';

/** A shape and a second shape that broadcasts against it (some dims 1, maybe fewer dims). */
const bcastPair = shapeArb(1, 4, 6).chain((s) =>
  fc.tuple(fc.constant(s), fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }), dim(0, s.length - 1)).map(([a, ones, drop]) => {
    const b = a.map((d, i) => (ones[i] ? 1 : d)).slice(drop);
    return { a, b: b.length ? b : [1] };
  }),
);

for (const b of backendsUnderTest()) {
  describe(`elementwise on ${b.name}`, () => {
    const bin = [
      ['add', (x: number, y: number) => x + y],
      ['sub', (x: number, y: number) => x - y],
      ['mul', (x: number, y: number) => x * y],
      ['div', (x: number, y: number) => x / y],
    ] as const;
    for (const [op, f] of bin) {
      it(`${op} with broadcasting`, () => {
        forAll(b, op, bcastPair, ({ a, b: bs }, dt, seed) => {
          const x = rand(b, a, dt, seed),
            y = rand(b, bs, dt, seed + 1);
          if (op === 'div') {
            // keep divisors away from 0
            const yv = Float32Array.from(y.v, (v) => (v >= 0 ? v + 0.5 : v - 0.5));
            const yt = b.fromArray(yv, bs, dt);
            const yr = Float64Array.from(yt.toFloat32());
            expectClose(op, b.div(x.t, yt).toFloat32(), R.binary(x.v, a, yr, bs, f), dt);
            return;
          }
          expectClose(op, b[op](x.t, y.t).toFloat32(), R.binary(x.v, a, y.v, bs, f), dt);
        });
      });
    }
    it('add with a second operand of another dtype', () => {
      const x = rand(b, [3, 5], 'bf16', 1),
        y = rand(b, [5], 'f32', 2);
      const got = b.add(x.t, y.t);
      if (got.dtype !== 'bf16') throw new Error(`result dtype ${got.dtype}, want bf16 (the first input's)`);
      expectClose(
        'add mixed',
        got.toFloat32(),
        R.binary(x.v, [3, 5], y.v, [5], (p, q) => p + q),
        'bf16',
      );
      x.t.dispose();
      y.t.dispose();
      got.dispose();
    });
    const un = [
      ['gelu_tanh', R.geluTanh],
      ['silu', R.silu],
      ['relu', (v: number) => Math.max(0, v)],
      ['tanh', Math.tanh],
    ] as const;
    for (const [op, f] of un) {
      it(op, () => {
        forAll(b, op, shapeArb(1, 3, 9), (s, dt, seed) => {
          const x = rand(b, s, dt, seed, 2);
          expectClose(op, b[op](x.t).toFloat32(), R.map(x.v, f), dt);
        });
      });
    }
    it('affine and clamp', () => {
      forAll(
        b,
        'affine',
        fc.tuple(shapeArb(1, 3, 9), fc.double({ min: -3, max: 3, noNaN: true }), fc.double({ min: -3, max: 3, noNaN: true })),
        ([s, p, q], dt, seed) => {
          const x = rand(b, s, dt, seed);
          const sc = Math.fround(p),
            sh = Math.fround(q);
          expectClose(
            'affine',
            b.affine(x.t, sc, sh).toFloat32(),
            R.map(x.v, (v) => v * sc + sh),
            dt,
          );
          const lo = Math.fround(Math.min(p, q)),
            hi = Math.fround(Math.max(p, q));
          expectClose(
            'clamp',
            b.clamp(x.t, lo, hi).toFloat32(),
            R.map(x.v, (v) => Math.min(Math.max(v, lo), hi)),
            dt,
          );
        },
      );
    });
    it('gluMul (silu and gelu_tanh)', () => {
      forAll(b, 'gluMul', shapeArb(1, 3, 9), (s, dt, seed) => {
        const x = rand(b, s, dt, seed),
          g = rand(b, s, dt, seed + 7);
        expectClose(
          'gluMul silu',
          b.gluMul(x.t, g.t, 'silu').toFloat32(),
          R.binary(x.v, s, g.v, s, (p, q) => p * R.silu(q)),
          dt,
        );
        expectClose(
          'gluMul gelu',
          b.gluMul(x.t, g.t, 'gelu_tanh').toFloat32(),
          R.binary(x.v, s, g.v, s, (p, q) => p * R.geluTanh(q)),
          dt,
        );
      });
    });
    it('gluHalves: x[..., :F] · act(x[..., F:]) read in place, equal to gluMul on the slices', () => {
      // F across the kernel's 1024-element chunks and 16 Ki-element work items, 1 to 3 leading dims
      const arb = fc.record({ lead: fc.array(dim(1, 4), { minLength: 0, maxLength: 2 }), F: fc.constantFrom(1, 7, 33, 1030, 9000) });
      forAll(
        b,
        'gluHalves',
        arb,
        ({ lead, F }, dt, seed) => {
          const s = [...lead, 2 * F];
          const x = rand(b, s, dt, seed, 2);
          const rows = x.v.length / (2 * F);
          for (const act of ['silu', 'gelu_tanh'] as const) {
            const f = act === 'silu' ? R.silu : R.geluTanh;
            const want = new Float64Array(rows * F);
            for (let r = 0; r < rows; r++) for (let c = 0; c < F; c++) want[r * F + c] = x.v[r * 2 * F + c] * f(x.v[r * 2 * F + F + c]);
            const got = b.gluHalves(x.t, act);
            expect(got.shape).toEqual([...lead, F]);
            expectClose(`gluHalves ${act}`, got.toFloat32(), want, dt);
            const ax = s.length - 1;
            expect(got.toFloat32()).toEqual(b.gluMul(b.slice(x.t, ax, 0, F), b.slice(x.t, ax, F, 2 * F), act).toFloat32());
          }
        },
        { runs: 10 },
      );
      expect(() => b.gluHalves(b.zeros([2, 5]), 'silu')).toThrow(/even/);
    });
    it('modulate and addGated (adaLN shapes)', () => {
      const arb = fc.record({ B: dim(1, 2), N: dim(1, 9), C: dim(1, 20) });
      forAll(b, 'modulate', arb, ({ B, N, C }, dt, seed) => {
        const x = rand(b, [B, N, C], dt, seed),
          shift = rand(b, [B, 1, C], dt, seed + 1),
          scale = rand(b, [B, 1, C], dt, seed + 2);
        expectClose(
          'modulate',
          b.modulate(x.t, shift.t, scale.t).toFloat32(),
          R.ternary(x.v, [B, N, C], shift.v, [B, 1, C], scale.v, [B, 1, C], (v, sh, sc) => v * (1 + sc) + sh),
          dt,
        );
        const y = rand(b, [B, N, C], dt, seed + 3);
        expectClose(
          'addGated',
          b.addGated(x.t, shift.t, y.t).toFloat32(),
          R.ternary(x.v, [B, N, C], shift.v, [B, 1, C], y.v, [B, N, C], (h, g, yy) => h + g * yy),
          dt,
        );
      });
    });
    it('softmax over the last dim', () => {
      forAll(b, 'softmax', shapeArb(1, 3, 40), (s, dt, seed) => {
        const x = rand(b, s, dt, seed, 3);
        expectClose('softmax', b.softmax(x.t).toFloat32(), R.softmax(x.v, s[s.length - 1]), dt);
      });
    });
    it('rmsnorm (weight, Gemma offset, bias)', () => {
      const arb = fc.record({ rows: dim(1, 7), C: dim(1, 70), offset: fc.constantFrom(0, 1), w: fc.boolean(), bias: fc.boolean() });
      forAll(b, 'rmsnorm', arb, ({ rows, C, offset, w, bias }, dt, seed) => {
        const x = rand(b, [rows, C], dt, seed),
          wt = rand(b, [C], dt, seed + 1),
          bt = rand(b, [C], dt, seed + 2);
        const got = b.rmsnorm(x.t, w ? wt.t : undefined, bias ? bt.t : undefined, 1e-6, offset);
        expectClose('rmsnorm', got.toFloat32(), R.rmsnorm(x.v, C, w ? wt.v : undefined, bias ? bt.v : undefined, 1e-6, offset), dt);
      });
    });
    it('rmsnormAct: rmsnorm → SiLU/ReLU → + residual (any residual shape with C last)', () => {
      const arb = fc.record({
        rows: dim(1, 7),
        C: dim(1, 1100),
        act: fc.constantFrom('none', 'silu', 'relu'),
        w: fc.boolean(),
        bias: fc.boolean(),
        res: fc.boolean(),
      });
      forAll(b, 'rmsnormAct', arb, ({ rows, C, act, w, bias, res }, dt, seed) => {
        const x = rand(b, [rows, C], dt, seed),
          wt = rand(b, [C], dt, seed + 1),
          bt = rand(b, [C], dt, seed + 2),
          rt = rand(b, [1, rows, 1, C], dt, seed + 3);
        const got = b.rmsnormAct(x.t, w ? wt.t : undefined, bias ? bt.t : undefined, 1e-5, act, res ? rt.t : undefined);
        expect(got.shape).toEqual([rows, C]);
        const want = R.rmsnorm(x.v, C, w ? wt.v : undefined, bias ? bt.v : undefined, 1e-5, 0).map((v, i) => {
          const a = act === 'silu' ? v / (1 + Math.exp(-v)) : act === 'relu' ? Math.max(v, 0) : v;
          return a + (res ? rt.v[i]! : 0);
        });
        expectClose('rmsnormAct', got.toFloat32(), want, dt);
      });
      const x = rand(b, [3, 8], 'f32', 1);
      expect(() => b.rmsnormAct(x.t, undefined, undefined, 1e-5, 'none', rand(b, [3, 4, 2], 'f32', 2).t)).toThrow(/residual/);
      expect(() => b.rmsnormAct(x.t, undefined, undefined, 1e-5, 'tanh' as 'relu')).toThrow(/activation/);
    });
    it('rmsnorm2d over channels', () => {
      const arb = fc.record({ B: dim(1, 2), C: dim(1, 9), H: dim(1, 7), W: dim(1, 40) });
      forAll(b, 'rmsnorm2d', arb, ({ B, C, H, W }, dt, seed) => {
        const x = rand(b, [B, C, H, W], dt, seed),
          w = rand(b, [C], dt, seed + 1),
          bias = rand(b, [C], dt, seed + 2);
        expectClose('rmsnorm2d', b.rmsnorm2d(x.t, w.t, bias.t, 1e-5).toFloat32(), R.rmsnorm2d(x.v, [B, C, H, W], w.v, bias.v, 1e-5), dt);
      });
    });
    it('layernorm (with and without affine)', () => {
      const arb = fc.record({ rows: dim(1, 7), C: dim(2, 70), affine: fc.boolean() });
      forAll(b, 'layernorm', arb, ({ rows, C, affine }, dt, seed) => {
        const x = rand(b, [rows, C], dt, seed, 2),
          w = rand(b, [C], dt, seed + 1),
          bias = rand(b, [C], dt, seed + 2);
        const got = affine ? b.layernorm(x.t, w.t, bias.t, 1e-6) : b.layernorm(x.t, undefined, undefined, 1e-6);
        expectClose('layernorm', got.toFloat32(), R.layernorm(x.v, C, affine ? w.v : undefined, affine ? bias.v : undefined, 1e-6), dt);
      });
    });
    it('layernormModulate (adaLN: per-batch and shared shift/scale, rows crossing chunk edges)', () => {
      const arb = fc.record({ B: dim(1, 3), R: dim(1, 6), C: fc.oneof(dim(2, 70), dim(1020, 1100)), perBatch: fc.boolean() });
      forAll(b, 'layernormModulate', arb, ({ B, R: rows, C, perBatch }, dt, seed) => {
        const ms = perBatch ? [B, 1, C] : [C];
        const x = rand(b, [B, rows, C], dt, seed, 2),
          shift = rand(b, ms, dt, seed + 1, 0.5),
          scale = rand(b, ms, dt, seed + 2, 0.5);
        const got = b.layernormModulate(x.t, shift.t, scale.t, 1e-6);
        expect(got.shape).toEqual([B, rows, C]);
        expectClose('layernormModulate', got.toFloat32(), R.layernormModulate(x.v, B, C, shift.v, scale.v, perBatch, 1e-6), dt);
      });
    });
    it('layernormModulate rejects shift/scale that fit neither (B, 1, D) nor D', () => {
      const x = b.zeros([2, 3, 8]);
      expect(() => b.layernormModulate(x, b.zeros([3, 1, 8]), b.zeros([3, 1, 8]), 1e-6)).toThrow(/must both be/);
      expect(() => b.layernormModulate(x, b.zeros([8]), b.zeros([2, 1, 8]), 1e-6)).toThrow(/must both be/);
    });
  });
}
