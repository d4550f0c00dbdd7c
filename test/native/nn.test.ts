// GEMM-like ops, attention and rope against the float64 references, on every backend.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import * as R from './reference.ts';
import type { Tensor } from '../../native/api.ts';
import { backendsUnderTest, dim, expectClose, forAll, rand, randn } from './harness.ts';
import { roundToDType } from '../../nodes/models/gemma2.ts';

/** conv2d / conv2dNhwc cases: groups, stride, padding, depthwise, kernel sizes `ks`; the kernel
 *  always fits the padded input. */
const convArb = <A extends string>(ks: number[], act: fc.Arbitrary<A>) =>
  fc
    .record({
      B: dim(1, 2),
      G: dim(1, 3),
      cin: dim(1, 3),
      cout: dim(1, 3),
      H: dim(1, 9),
      W: dim(1, 9),
      k: fc.constantFrom(...ks),
      stride: dim(1, 2),
      pad: dim(0, 2),
      bias: fc.boolean(),
      depthwise: fc.boolean(),
      act,
    })
    .filter((p) => p.H + 2 * p.pad >= p.k && p.W + 2 * p.pad >= p.k);

for (const b of backendsUnderTest()) {
  describe(`nn ops on ${b.name}`, () => {
    it('linear (sizes crossing the 6×16 tile edges, with and without bias)', () => {
      const arb = fc.record({ lead: fc.array(dim(1, 3), { maxLength: 2 }), M: dim(1, 20), N: dim(1, 40), K: dim(1, 70), bias: fc.boolean() });
      forAll(b, 'linear', arb, ({ lead, M, N, K, bias }, dt, seed) => {
        const x = rand(b, [...lead, M, K], dt, seed, 0.5),
          w = rand(b, [N, K], dt, seed + 1, 0.5),
          bs = rand(b, [N], 'f32', seed + 2);
        const got = b.linear(x.t, w.t, bias ? bs.t : undefined);
        expect(got.shape).toEqual([...lead, M, N]);
        const Mt = x.v.length / K;
        expectClose('linear', got.toFloat32(), R.linear(x.v, w.v, bias ? bs.v : undefined, Mt, N, K), dt);
        // the second call goes through the pre-packed weight cache
        expectClose(
          'linear (cached weight)',
          b.linear(x.t, w.t, bias ? bs.t : undefined).toFloat32(),
          R.linear(x.v, w.v, bias ? bs.v : undefined, Mt, N, K),
          dt,
        );
      });
    });
    it('linear packs weights of any N and K across the 64-column and 16/32-row blocks (own packing of the blocked layouts)', () => {
      // oneDNN's AVX-512 weight layouts pad N to 64 and K to 16 (f32) or 32 (bf16, in k-pairs): the
      // CPU backend fills them itself (linear.cpp pack_blocked); odd K in bf16 goes to oneDNN's reorder.
      const shapes: Array<[number, number, number]> = [
        [3, 64, 32],
        [5, 130, 34],
        [2, 1, 2],
        [4, 65, 96],
        [7, 200, 70],
        [1, 128, 31],
        [3, 63, 1],
        [9, 192, 288],
      ];
      for (const dt of ['f32', 'bf16'] as const) {
        if (!b.supportsOp('linear', dt)) continue;
        shapes.forEach(([M, N, K], i) => {
          const x = rand(b, [M, K], dt, 40 + i, 0.5),
            w = rand(b, [N, K], dt, 60 + i, 0.5);
          const want = R.linear(x.v, w.v, undefined, M, N, K);
          expectClose(`linear ${M}x${N}x${K} ${dt}`, b.linear(x.t, w.t).toFloat32(), want, dt);
          expectClose(`linear ${M}x${N}x${K} ${dt} (packed)`, b.linear(x.t, w.t).toFloat32(), want, dt);
        });
      }
    });
    it('linear with f32 activations and bf16 weights computes in bf16, returns f32', () => {
      const x = rand(b, [5, 33], 'f32', 3),
        w = rand(b, [17, 33], 'bf16', 4);
      const got = b.linear(x.t, w.t);
      expect(got.dtype).toBe('f32');
      const xr = Float64Array.from(b.cast(x.t, 'bf16').toFloat32());
      expectClose('linear mixed', got.toFloat32(), R.linear(xr, w.v, undefined, 5, 17, 33), 'f32', 10);
    });
    it('linearResidual: res + gate ⊙ (x·wᵀ + bias) with per-image, shared or no gate', () => {
      const arb = fc.record({
        B: dim(1, 3),
        T: dim(1, 20),
        N: dim(1, 40),
        K: dim(1, 70),
        bias: fc.boolean(),
        gate: fc.constantFrom('image', 'shared', 'none'),
      });
      forAll(b, 'linearResidual', arb, ({ B, T, N, K, bias, gate }, dt, seed) => {
        const x = rand(b, [B, T, K], dt, seed, 0.5),
          w = rand(b, [N, K], dt, seed + 1, 0.5),
          bs = rand(b, [N], 'f32', seed + 2),
          res = rand(b, [B, T, N], dt, seed + 3),
          g = rand(b, gate === 'image' ? [B, 1, N] : [N], dt, seed + 4);
        const gt = gate === 'none' ? undefined : g;
        const got = b.linearResidual(x.t, w.t, bias ? bs.t : undefined, res.t, gt?.t);
        expect(got.shape).toEqual([B, T, N]);
        expect(got.dtype).toBe(dt);
        const want = R.linearResidual(x.v, w.v, bias ? bs.v : undefined, res.v, gt?.v, gate === 'image' ? T : B * T, B * T, N, K);
        expectClose('linearResidual', got.toFloat32(), want, dt);
        // second call: the packed weight and the cached primitive
        expectClose('linearResidual (cached)', b.linearResidual(x.t, w.t, bias ? bs.t : undefined, res.t, gt?.t).toFloat32(), want, dt);
      });
    });
    it('linearResidual: 2 × 700 rows × 1600 (the portable epilogue runs in row blocks that cross the per-image gate rows)', () => {
      for (const dt of ['f16', 'bf16', 'f32'] as const) {
        if (!b.supportsOp('linearResidual', dt)) continue;
        b.scope(() => {
          const [B, T, N, K] = [2, 700, 1600, 8];
          const x = rand(b, [B, T, K], dt, 41, 0.5),
            w = rand(b, [N, K], dt, 42, 0.5),
            res = rand(b, [B, T, N], dt, 43),
            g = rand(b, [B, 1, N], dt, 44);
          const want = R.linearResidual(x.v, w.v, undefined, res.v, g.v, T, B * T, N, K);
          expectClose('linearResidual (row blocks)', b.linearResidual(x.t, w.t, undefined, res.t, g.t).toFloat32(), want, dt);
        });
      }
    });
    it('linearResidual equals addGated(res, gate, linear) and add(res, linear) (the ops it replaces)', () => {
      const x = rand(b, [2, 9, 48], 'f32', 21, 0.5),
        w = rand(b, [40, 48], 'f32', 22, 0.5),
        bs = rand(b, [40], 'f32', 23),
        res = rand(b, [2, 9, 40], 'f32', 24),
        g = rand(b, [2, 1, 40], 'f32', 25);
      const lin = b.linear(x.t, w.t, bs.t);
      expectClose('gated', b.linearResidual(x.t, w.t, bs.t, res.t, g.t).toFloat32(), Float64Array.from(b.addGated(res.t, g.t, lin).toFloat32()), 'f32');
      expectClose('plain', b.linearResidual(x.t, w.t, bs.t, res.t).toFloat32(), Float64Array.from(b.add(res.t, lin).toFloat32()), 'f32');
      expect(() => b.linearResidual(x.t, w.t, bs.t, b.slice(res.t, 1, 0, 8))).toThrow(/residual/);
      expect(() => b.linearResidual(x.t, w.t, bs.t, res.t, b.slice(g.t, 2, 0, 39))).toThrow(/gate/);
    });
    it('matmul: batched, broadcast batch, transB', () => {
      const arb = fc.record({
        batch: dim(1, 3),
        M: dim(1, 13),
        N: dim(1, 19),
        K: dim(1, 37),
        transB: fc.boolean(),
        mode: fc.constantFrom('both', 'aOnly', 'bOnly'),
      });
      forAll(b, 'matmul', arb, ({ batch, M, N, K, transB, mode }, dt, seed) => {
        const aB = mode !== 'bOnly',
          bB = mode !== 'aOnly';
        const a = rand(b, aB ? [batch, M, K] : [M, K], dt, seed, 0.5);
        const bm = rand(b, bB ? [batch, ...(transB ? [N, K] : [K, N])] : transB ? [N, K] : [K, N], dt, seed + 1, 0.5);
        const got = b.matmul(a.t, bm.t, transB);
        const nb = aB || bB ? batch : 1;
        expect(got.shape).toEqual(aB || bB ? [batch, M, N] : [M, N]);
        expectClose('matmul', got.toFloat32(), R.matmul(a.v, bm.v, nb, aB, bB, M, N, K, transB), dt);
      });
    });
    it('conv2d: groups, stride, padding, depthwise, 1×1', () => {
      const arb = convArb([1, 3, 5], fc.constant('none' as const));
      forAll(
        b,
        'conv2d',
        arb,
        (p, dt, seed) => {
          const G = p.depthwise ? p.G * p.cin : p.G;
          const Cin = p.depthwise ? G : p.G * p.cin,
            Cout = p.depthwise ? G : p.G * p.cout;
          const xs = [p.B, Cin, p.H, p.W],
            ws = [Cout, Cin / G, p.k, p.k];
          const x = rand(b, xs, dt, seed, 0.5),
            w = rand(b, ws, dt, seed + 1, 0.5),
            bs = rand(b, [Cout], 'f32', seed + 2);
          const got = b.conv2d(x.t, w.t, p.bias ? bs.t : undefined, { stride: p.stride, padding: p.pad, groups: G });
          const want = R.conv2d(x.v, xs, w.v, ws, p.bias ? bs.v : undefined, p.stride, p.pad, G);
          expect(got.shape).toEqual(want.shape);
          expectClose('conv2d', got.toFloat32(), want.out, dt);
        },
        { runs: 16 },
      );
    });
    it('conv2dNhwc: channels-last conv2d with a fused SiLU/ReLU (groups, depthwise, stride, padding)', () => {
      const arb = convArb([1, 2, 3, 5], fc.constantFrom('none' as const, 'silu' as const, 'relu' as const));
      forAll(
        b,
        'conv2dNhwc',
        arb,
        (p, dt, seed) => {
          const G = p.depthwise ? p.G * p.cin : p.G;
          const Cin = p.depthwise ? G : p.G * p.cin,
            Cout = p.depthwise ? G : p.G * p.cout;
          const xs = [p.B, p.H, p.W, Cin],
            ws = [Cout, Cin / G, p.k, p.k];
          const x = rand(b, xs, dt, seed, 0.5),
            w = rand(b, ws, dt, seed + 1, 0.5),
            bs = rand(b, [Cout], 'f32', seed + 2);
          const got = b.conv2dNhwc(x.t, w.t, p.bias ? bs.t : undefined, { stride: p.stride, padding: p.pad, groups: G, act: p.act });
          const want = R.conv2dNhwc(x.v, xs, w.v, ws, p.bias ? bs.v : undefined, p.stride, p.pad, G, p.act);
          expect(got.shape).toEqual(want.shape);
          expectClose('conv2dNhwc', got.toFloat32(), want.out, dt);
        },
        { runs: 16 },
      );
    });
    it('conv2dNhwc equals permute → conv2d → act → permute, and refuses a bad activation', () => {
      const x = rand(b, [2, 6, 7, 16], 'f32', 11, 0.5),
        w = rand(b, [24, 16, 3, 3], 'f32', 12, 0.3),
        bs = rand(b, [24], 'f32', 13);
      const want = b.permute(b.silu(b.conv2d(b.permute(x.t, [0, 3, 1, 2]), w.t, bs.t, { padding: 1 })), [0, 2, 3, 1]);
      expectClose('conv2dNhwc vs composed', b.conv2dNhwc(x.t, w.t, bs.t, { padding: 1, act: 'silu' }).toFloat32(), Float64Array.from(want.toFloat32()), 'f32');
      expect(() => b.conv2dNhwc(x.t, w.t, bs.t, { act: 'gelu' as 'silu' })).toThrow(/activation/);
      expect(() => b.conv2dNhwc(x.t, rand(b, [24, 15, 3, 3], 'f32', 1).t, undefined)).toThrow(/groups/);
    });
    it('upsamplePhasesNhwc: phases placed, with and without the repeat/pixel-shuffle shortcut', () => {
      const arb = fc.record({ B: dim(1, 2), H: dim(1, 6), W: dim(1, 6), C: dim(1, 9), rep: fc.constantFrom(0, 1, 2, 4) });
      forAll(b, 'upsamplePhasesNhwc', arb, (p, dt, seed) => {
        const C = p.rep ? p.rep * p.C : p.C; // 4C must be a multiple of Cx = 4C / rep
        const Cx = p.rep ? (4 * C) / p.rep : 0;
        const y = rand(b, [p.B, p.H + 1, p.W + 1, 4 * C], dt, seed),
          x = rand(b, [p.B, p.H, p.W, Math.max(Cx, 1)], dt, seed + 1);
        const got = b.upsamplePhasesNhwc(y.t, p.rep ? x.t : undefined);
        expect(got.shape).toEqual([p.B, 2 * p.H, 2 * p.W, C]);
        expectClose('upsamplePhasesNhwc', got.toFloat32(), R.upsamplePhasesNhwc(y.v, p.B, p.H, p.W, C, p.rep ? x.v : undefined, Cx), dt);
      });
      const y = rand(b, [1, 3, 3, 8], 'f32', 1);
      expect(() => b.upsamplePhasesNhwc(y.t, rand(b, [1, 2, 2, 3], 'f32', 2).t)).toThrow(/multiple/);
      expect(() => b.upsamplePhasesNhwc(rand(b, [1, 3, 3, 6], 'f32', 3).t)).toThrow(/4C/);
    });
    it('dwconv3x3GluTokens: grids down to 1×1, channel blocks with tails, with/without bias and pre-SiLU', () => {
      // F crosses the CPU kernel's 64-channel blocks and 16-lane vectors (1, 17, 64, 70, 130).
      const arb = fc.record({
        B: dim(1, 2),
        H: dim(1, 6),
        W: dim(1, 7),
        F: fc.constantFrom(1, 3, 17, 64, 70, 130),
        bias: fc.boolean(),
        preSilu: fc.boolean(),
      });
      forAll(
        b,
        'dwconv3x3GluTokens',
        arb,
        (p, dt, seed) => {
          const u = rand(b, [p.B, p.H * p.W, 2 * p.F], dt, seed, 1.5),
            w = rand(b, [2 * p.F, 1, 3, 3], dt, seed + 1, 0.5),
            bs = rand(b, [2 * p.F], 'f32', seed + 2, 0.5);
          const got = b.dwconv3x3GluTokens(u.t, w.t, p.bias ? bs.t : undefined, [p.H, p.W], p.preSilu);
          expect(got.shape).toEqual([p.B, p.H * p.W, p.F]);
          const want = R.dwconv3x3GluTokens(u.v, p.B, p.H, p.W, p.F, w.v, p.bias ? bs.v : undefined, p.preSilu);
          expectClose('dwconv3x3GluTokens', got.toFloat32(), want, dt);
        },
        { runs: 16 },
      );
    });
    it('dwconv3x3GluTokens equals permute → depthwise conv2d → gluMul → permute (the path it replaces)', () => {
      const [B, H, W, F] = [2, 5, 6, 70];
      const u = rand(b, [B, H * W, 2 * F], 'f32', 5),
        w = rand(b, [2 * F, 1, 3, 3], 'f32', 6, 0.5),
        bs = rand(b, [2 * F], 'f32', 7, 0.5);
      const img = b.reshape(b.permute(u.t, [0, 2, 1]), [B, 2 * F, H, W]);
      const dw = b.conv2d(img, w.t, bs.t, { padding: 1, groups: 2 * F });
      const glu = b.gluMul(b.slice(dw, 1, 0, F), b.slice(dw, 1, F, 2 * F), 'silu');
      const want = Float64Array.from(b.permute(b.reshape(glu, [B, F, H * W]), [0, 2, 1]).toFloat32());
      expectClose('dwconv3x3GluTokens vs composed', b.dwconv3x3GluTokens(u.t, w.t, bs.t, [H, W]).toFloat32(), want, 'f32');
      // SiLU far into both tails (the AVX-512 SiLU drops vec.h's overflow selects): inputs up to ±200
      const ub = rand(b, [B, H * W, 2 * F], 'f32', 8, 60);
      expectClose(
        'dwconv3x3GluTokens, large inputs',
        b.dwconv3x3GluTokens(ub.t, w.t, bs.t, [H, W], true).toFloat32(),
        R.dwconv3x3GluTokens(ub.v, B, H, W, F, w.v, bs.v, true),
        'f32',
      );
      expect(() => b.dwconv3x3GluTokens(u.t, w.t, bs.t, [H, W + 1])).toThrow(/grid/);
    });
    it('dwconv3x3GluTokens keeps its weight taps on the weight: repeated calls equal a fresh weight, the taps go with it', () => {
      for (const dt of ['f32', 'bf16'] as const) {
        const F = 150; // two full 64-channel blocks and a tail
        const w = rand(b, [2 * F, 1, 3, 3], dt, 61, 0.5),
          bs = rand(b, [2 * F], 'f32', 62, 0.5);
        const wHost = w.t.toFloat32();
        const before = b.memory().allocated;
        const grids: [number, number, number][] = [
          [2, 4, 4],
          [1, 1, 1],
          [1, 7, 3],
          [2, 8, 8],
        ];
        grids.forEach(([B, H, W], i) =>
          b.scope(() => {
            const u = rand(b, [B, H * W, 2 * F], dt, 63 + i);
            const got = b.dwconv3x3GluTokens(u.t, w.t, bs.t, [H, W], i % 2 === 0).toFloat32();
            const fresh = b.fromArray(wHost, [2 * F, 1, 3, 3], dt);
            expect(b.dwconv3x3GluTokens(u.t, fresh, bs.t, [H, W], i % 2 === 0).toFloat32(), `grid ${H}x${W} (${dt})`).toEqual(got);
            expectClose('dwconv3x3GluTokens, kept taps', got, R.dwconv3x3GluTokens(u.v, B, H, W, F, w.v, bs.v, i % 2 === 0), dt);
          }),
        );
        if (b.name === 'cpu') expect(b.memory().allocated).toBe(before + 3 * 2 * 9 * 64 * 4); // 3 blocks of value + gate taps, f32
        const wBytes = w.t.nbytes;
        w.t.dispose();
        expect(b.memory().allocated).toBe(before - wBytes);
        bs.t.dispose();
      }
    });
    it('linearAttentionTokens: token-major qkv, heads, relu on/off', () => {
      const arb = fc.record({ B: dim(1, 2), N: dim(1, 40), H: dim(1, 4), D: dim(1, 33), relu: fc.boolean() });
      forAll(b, 'linearAttentionTokens', arb, ({ B, N, H, D, relu }, dt, seed) => {
        // relu off: positive inputs keep the denominator away from zero
        const qkv = relu
          ? rand(b, [B, N, 3 * H * D], dt, seed)
          : (() => {
              const t = b.fromArray(
                Float32Array.from(randn(seed, B * N * 3 * H * D), (v) => 0.1 + Math.abs(v)),
                [B, N, 3 * H * D],
                dt,
              );
              return { t, v: Float64Array.from(t.toFloat32()) };
            })();
        const got = b.linearAttentionTokens(qkv.t, H, 1e-6, relu);
        expect(got.shape).toEqual([B, N, H * D]);
        expectClose('linearAttentionTokens', got.toFloat32(), R.linearAttentionTokens(qkv.v, B, N, H, D, 1e-6, relu), dt, 2);
      });
    });
    it('linearAttentionTokens over several 128-token blocks, with the rows ahead prefetched up to the last', () => {
      // N = 300: two full blocks of the CPU kernel's state and apply passes and a 44-token tail.
      for (const dt of ['f32', 'bf16'] as const)
        for (const D of [32, 20])
          for (const relu of [true, false]) {
            const [B, N, H] = [2, 300, 2];
            const t = b.fromArray(
              Float32Array.from(randn(70 + D, B * N * 3 * H * D), (v) => (relu ? v : 0.1 + Math.abs(v))),
              [B, N, 3 * H * D],
              dt,
            );
            const want = R.linearAttentionTokens(Float64Array.from(t.toFloat32()), B, N, H, D, 1e-6, relu);
            expectClose(`linearAttentionTokens N=${N} D=${D} relu=${relu}`, b.linearAttentionTokens(t, H, 1e-6, relu).toFloat32(), want, dt, 2);
          }
    });
    it('linearAttentionTokens equals permute → slices → linearAttention → permute (the path it replaces)', () => {
      const [B, N, H, D] = [2, 37, 3, 8];
      const qkv = rand(b, [B, N, 3 * H * D], 'f32', 9);
      const s5 = b.permute(b.reshape(qkv.t, [B, N, 3, H, D]), [2, 0, 3, 1, 4]);
      const part = (k: number): Tensor => b.reshape(b.slice(s5, 0, k, k + 1), [B, H, N, D]);
      const o = b.linearAttention(part(0), part(1), part(2), 1e-15, true);
      const want = Float64Array.from(b.permute(o, [0, 2, 1, 3]).toFloat32());
      expectClose('linearAttentionTokens vs composed', b.linearAttentionTokens(qkv.t, H, 1e-15).toFloat32(), want, 'f32');
      expect(() => b.linearAttentionTokens(qkv.t, 5, 1e-15)).toThrow(/heads/); // 72 channels: not 3 · 5 heads
    });
    it('attention: GQA, soft-cap, causal, sliding window, bias shapes, blocks beyond one tile', () => {
      const arb = fc.record({
        B: dim(1, 2),
        Hkv: dim(1, 2),
        g: dim(1, 3),
        Lq: dim(1, 40),
        Lk: dim(1, 80),
        D: dim(1, 16),
        Dv: dim(1, 12),
        softcap: fc.constantFrom(0, 5),
        causal: fc.boolean(),
        window: fc.constantFrom(0, 4),
        bias: fc.constantFrom('none', 'BL', 'B11L', 'B1QL', 'BHQL'),
      });
      forAll(
        b,
        'attention',
        arb,
        (p, dt, seed) => {
          const Hq = p.Hkv * p.g;
          const Lk = p.causal ? p.Lq : p.Lk,
            Dv = p.causal ? p.D : p.Dv;
          const q = rand(b, [p.B, Hq, p.Lq, p.D], dt, seed),
            k = rand(b, [p.B, p.Hkv, Lk, p.D], dt, seed + 1),
            v = rand(b, [p.B, p.Hkv, Lk, Dv], dt, seed + 2);
          const bshape = { none: [], BL: [p.B, Lk], B11L: [p.B, 1, 1, Lk], B1QL: [p.B, 1, p.Lq, Lk], BHQL: [p.B, Hq, p.Lq, Lk] }[p.bias];
          const bias = bshape.length ? rand(b, bshape, 'f32', seed + 3) : undefined;
          const window = p.causal ? p.window : 0;
          const opts = { scale: 1 / Math.sqrt(p.D), softcap: p.softcap || undefined, causal: p.causal, window: window || undefined, bias: bias?.t };
          const got = b.attention(q.t, k.t, v.t, opts);
          expect(got.shape).toEqual([p.B, Hq, p.Lq, Dv]);
          const want = R.attention(q.v, k.v, v.v, [p.B, Hq, p.Lq, p.D], p.Hkv, Lk, Dv, {
            scale: opts.scale,
            softcap: p.softcap,
            causal: p.causal,
            window,
            bias: bias?.v,
            biasShape: bias ? bshape : undefined,
          });
          expectClose('attention', got.toFloat32(), want, dt);
        },
        { runs: 16 },
      );
    });
    it('attentionTokens: token-major q, k|v in place, head dims across the 16-float column blocks, key biases', () => {
      // Lk up to 150 crosses the CPU kernel's 64-key chunks; D up to 100 its 16/64/80-float PV blocks.
      const arb = fc.record({
        B: dim(1, 2),
        H: dim(1, 3),
        Lq: dim(1, 40),
        Lk: dim(1, 150),
        D: fc.constantFrom(1, 8, 20, 33, 72, 80, 100),
        bias: fc.constantFrom('none', 'random', 'padding', 'all masked'),
        visible: dim(1, 150),
      });
      forAll(
        b,
        'attentionTokens',
        arb,
        (p, dt, seed) => {
          const C = p.H * p.D;
          const q = rand(b, [p.B, p.Lq, C], dt, seed),
            kv = rand(b, [p.B, p.Lk, 2 * C], dt, seed + 1);
          // padding: Sana's (1 - mask)·(-10000) past `visible` keys (different per batch row)
          const vis = (bb: number): number => Math.max(1, Math.min(p.Lk, p.visible - 7 * bb));
          const bv =
            p.bias === 'random'
              ? randn(seed + 2, p.B * p.Lk)
              : Float32Array.from({ length: p.B * p.Lk }, (_, i) =>
                  p.bias === 'all masked' || (p.bias === 'padding' && i % p.Lk >= vis(Math.floor(i / p.Lk))) ? -10000 : 0,
                );
          const bias = p.bias === 'none' ? undefined : b.fromArray(bv, [p.B, p.Lk], 'f32');
          const scale = 1 / Math.sqrt(p.D);
          const got = b.attentionTokens(q.t, kv.t, p.H, { scale, bias });
          expect(got.shape).toEqual([p.B, p.Lq, C]);
          const want = R.attentionTokens(q.v, kv.v, p.B, p.Lq, p.Lk, p.H, p.D, scale, bias ? Float64Array.from(bv) : undefined);
          expectClose('attentionTokens', got.toFloat32(), want, dt);
        },
        { runs: 16 },
      );
    });
    it('attentionTokens equals permute → attention → permute (the path it replaces); skipped padded keys change no bit', () => {
      // bf16 too: its keys past the soft end get their norms (the skip bound) straight from bf16
      for (const dt of ['f32', 'bf16'] as const) {
        const [B, Lq, Lk, H, D, vis] = [2, 37, 300, 3, 72, 40];
        const q = rand(b, [B, Lq, H * D], dt, 31),
          kv = rand(b, [B, Lk, 2 * H * D], dt, 32);
        const mask = Float32Array.from({ length: B * Lk }, (_, i) => (i % Lk < vis ? 0 : -10000));
        const bias = b.fromArray(mask, [B, Lk], 'f32');
        const scale = D ** -0.5;
        const qh = b.permute(b.reshape(q.t, [B, Lq, H, D]), [0, 2, 1, 3]);
        const kvh = b.permute(b.reshape(kv.t, [B, Lk, 2, H, D]), [2, 0, 3, 1, 4]);
        const k = b.reshape(b.slice(kvh, 0, 0, 1), [B, H, Lk, D]),
          v = b.reshape(b.slice(kvh, 0, 1, 2), [B, H, Lk, D]);
        const composed = b.reshape(b.permute(b.attention(qh, k, v, { scale, bias }), [0, 2, 1, 3]), [B, Lq, H * D]);
        const got = b.attentionTokens(q.t, kv.t, H, { scale, bias }).toFloat32();
        expectClose('attentionTokens vs composed', got, Float64Array.from(composed.toFloat32()), dt);
        // the keys past `vis` have probability exactly 0: the same call on the visible keys alone
        // (kv truncated, no bias) gives the very same bits
        const kvVis = b.slice(kv.t, 1, 0, vis);
        expect(b.attentionTokens(q.t, kvVis, H, { scale }).toFloat32()).toEqual(got);
        // a tail that is not negligible is still taken: scores of ±1000s against a bias drop of 2000
        const qb = rand(b, [B, Lq, H * D], dt, 33, 30),
          kvb = rand(b, [B, Lk, 2 * H * D], dt, 34, 30);
        const drop = Float32Array.from({ length: B * Lk }, (_, i) => (i % Lk < vis ? 0 : -2000));
        expectClose(
          'attentionTokens, large scores',
          b.attentionTokens(qb.t, kvb.t, H, { scale, bias: b.fromArray(drop, [B, Lk], 'f32') }).toFloat32(),
          R.attentionTokens(qb.v, kvb.v, B, Lq, Lk, H, D, scale, Float64Array.from(drop)),
          dt,
        );
        // keys past the soft end that win the softmax in one head (key scores ~1000× the visible
        // ones', above the bias drop): the chunk holding the soft end, converted up to it first,
        // must be completed before its later keys are read, and each head's skip bound must come
        // from its own keys' norms. (Scores of ~±3000 carry f32 rounding of ~1e-4
        // into the softmax: 4× the usual tolerance; reading unconverted keys is off by ~1.)
        const kvt = randn(37, B * Lk * 2 * H * D);
        for (let i = 0; i < B * Lk; i++) if (i % Lk >= vis) for (let c = D; c < 2 * D; c++) kvt[i * 2 * H * D + c] *= 1000; // head 1's keys only
        const kvTail = b.fromArray(kvt, [B, Lk, 2 * H * D], dt);
        const want = R.attentionTokens(q.v, Float64Array.from(kvTail.toFloat32()), B, Lq, Lk, H, D, scale, Float64Array.from(drop));
        expectClose(
          'attentionTokens, winning padded keys',
          b.attentionTokens(q.t, kvTail, H, { scale, bias: b.fromArray(drop, [B, Lk], 'f32') }).toFloat32(),
          want,
          dt,
          4,
        );
      }
      const q = rand(b, [2, 5, 6], 'f32', 35),
        kv = rand(b, [2, 7, 12], 'f32', 36),
        scale = 1;
      expect(() => b.attentionTokens(q.t, kv.t, 5, { scale })).toThrow(/heads/);
      expect(() => b.attentionTokens(q.t, kv.t, 3, { scale, bias: b.fromArray(new Float32Array(2 * 5 * 7), [2, 1, 5, 7]) })).toThrow(/key bias/);
    });
    it('attentionTokens on one k|v across calls (the converted keys kept on its storage) equals a fresh k|v every time', () => {
      // A prepared caption's k|v serve every sampling step. The CPU keeps its converted keys between
      // calls and converts further only what a later call needs: here soft ends that move both
      // ways (a prefix converted by one call, extended by the next, read partly by a third),
      // keys past the soft end that win in one head (completed on first use), queries and dtypes
      // that change. Each call must give the bits of the same call on a new copy of k|v.
      for (const dt of ['f32', 'bf16'] as const) {
        const [B, Lk, H, D] = [2, 200, 2, 40];
        const kvt = randn(41, B * Lk * 2 * H * D);
        for (let i = 0; i < B * Lk; i++) if (i % Lk >= 150) for (let c = D; c < 2 * D; c++) kvt[i * 2 * H * D + c] *= 300; // head 1, keys ≥ 150
        const kv = b.fromArray(kvt, [B, Lk, 2 * H * D], dt);
        const kvHost = kv.toFloat32();
        const before = b.memory().allocated;
        const steps: { vis: number[]; drop: number; Lq: number }[] = [
          { vis: [5, 20], drop: -10000, Lq: 3 }, // chunk 0 up to 16 / 32 keys
          { vis: [40, 33], drop: -10000, Lq: 9 }, // extends chunk 0's prefixes
          { vis: [10, 2], drop: -10000, Lq: 40 }, // reads inside what is converted
          { vis: [70, 140], drop: -10000, Lq: 5 }, // into chunks 1 and 2
          { vis: [100, 120], drop: -500, Lq: 33 }, // padded keys ≥ 150 of head 1 win: chunks 2 and 3 completed on use
          { vis: [200, 1], drop: -10000, Lq: 7 }, // everything / almost nothing
        ];
        steps.forEach((s, i) =>
          b.scope(() => {
            const q = rand(b, [B, s.Lq, H * D], dt, 50 + i);
            const mask = Float32Array.from({ length: B * Lk }, (_, j) => (j % Lk < s.vis[Math.floor(j / Lk)]! ? 0 : s.drop));
            const bias = b.fromArray(mask, [B, Lk], 'f32');
            const scale = D ** -0.5;
            const got = b.attentionTokens(q.t, kv, H, { scale, bias }).toFloat32();
            const fresh = b.fromArray(kvHost, [B, Lk, 2 * H * D], dt);
            expect(b.attentionTokens(q.t, fresh, H, { scale, bias }).toFloat32(), `step ${i} (${dt})`).toEqual(got);
            if (i === 4) {
              const want = R.attentionTokens(q.v, Float64Array.from(kvHost), B, s.Lq, Lk, H, D, scale, Float64Array.from(mask));
              expectClose('attentionTokens, winning padded keys, kept k|v', got, want, dt, 4);
            }
          }),
        );
        // The kept tiles are counted while k|v lives and go with it.
        if (b.name === 'cpu') expect(b.memory().allocated).toBeGreaterThan(before);
        const kvBytes = kv.nbytes;
        kv.dispose();
        expect(b.memory().allocated).toBe(before - kvBytes);
      }
    });
    it('selfAttentionRope: fused qkv in place, RoPE, GQA, soft-cap, causal, key padding, window, rows that see no key', () => {
      // N up to 150 crosses the CPU kernel's 32-query blocks and 64-key chunks; D up to 96 its
      // 16/64/80-float PV blocks. Masks: none, right padding (Sana's prompts), random holes, a
      // padded first token (rows before the first real token see nothing).
      const arb = fc.record({
        B: dim(1, 2),
        Hkv: dim(1, 2),
        g: dim(1, 3),
        N: dim(1, 150),
        half: fc.constantFrom(1, 4, 10, 36, 48),
        softcap: fc.constantFrom(0, 3),
        window: fc.constantFrom(0, 1, 5, 70),
        mask: fc.constantFrom('none', 'right', 'holes', 'late start'),
        real: dim(1, 150),
        start: dim(0, 40),
      });
      forAll(
        b,
        'selfAttentionRope',
        arb,
        (p, dt, seed) => {
          const Hq = p.Hkv * p.g,
            D = 2 * p.half;
          const qkv = rand(b, [p.B, p.N, (Hq + 2 * p.Hkv) * D], dt, seed, 1.5);
          const noise = randn(seed + 5, p.B * p.N);
          const keyMask =
            p.mask === 'none'
              ? undefined
              : Float32Array.from({ length: p.B * p.N }, (_, e) => {
                  const bb = Math.floor(e / p.N),
                    j = e % p.N;
                  if (p.mask === 'right') return j < Math.max(1, p.real - 5 * bb) ? 1 : 0;
                  if (p.mask === 'holes') return noise[e] > -0.3 ? 1 : 0;
                  return j >= Math.min(p.N - 1, p.start % 9) + bb ? 1 : 0;
                });
          const pos = Array.from({ length: p.N }, (_, i) => p.start + i);
          const scale = D ** -0.5 * 2;
          const got = b.selfAttentionRope(qkv.t, {
            heads: Hq,
            kvHeads: p.Hkv,
            positions: pos,
            theta: 10000,
            scale,
            softcap: p.softcap || undefined,
            window: p.window || undefined,
            keyMask,
          });
          expect(got.shape).toEqual([p.B, p.N, Hq * D]);
          expect(got.dtype).toBe(dt);
          const want = R.selfAttentionRope(qkv.v, [p.B, p.N, Hq, p.Hkv, D], {
            pos,
            theta: 10000,
            scale,
            softcap: p.softcap,
            window: p.window,
            mask: keyMask,
            round: (x) => roundToDType(x, dt),
          });
          expectClose('selfAttentionRope', got.toFloat32(), want, dt, 2);
        },
        { runs: 24 },
      );
    });
    it('selfAttentionRope equals slices → rope → attention(finfo.min bias) → permute (the Gemma-2 path it replaces)', () => {
      const [B, N, Hq, Hkv, D, win] = [2, 75, 4, 2, 32, 20];
      const qkv = rand(b, [B, N, (Hq + 2 * Hkv) * D], 'f32', 41, 1.5);
      // batch 0: 30 real tokens; batch 1: padding first (rows 0..2 see no key), then real tokens
      const mask = Float32Array.from({ length: B * N }, (_, e) => (e < N ? (e < 30 ? 1 : 0) : e - N >= 3 ? 1 : 0));
      const pos = Array.from({ length: N }, (_, i) => i);
      for (const window of [undefined, win]) {
        const bias = new Float32Array(B * N * N);
        for (let bb = 0; bb < B; bb++)
          for (let i = 0; i < N; i++)
            for (let j = 0; j < N; j++) {
              const visible = j <= i && mask[bb * N + j] !== 0 && (window === undefined || i - j < window);
              if (!visible) bias[(bb * N + i) * N + j] = -3.4028234663852886e38;
            }
        const heads = (lo: number, H: number): Tensor => b.permute(b.reshape(b.slice(qkv.t, 2, lo * D, (lo + H) * D), [B, N, H, D]), [0, 2, 1, 3]);
        const q = b.rope(heads(0, Hq), pos, 10000),
          k = b.rope(heads(Hq, Hkv), pos, 10000),
          v = heads(Hq + Hkv, Hkv);
        const o = b.attention(q, k, v, { scale: 0.1, softcap: 50, bias: b.fromArray(bias, [B, 1, N, N], 'f32') });
        const composed = b.reshape(b.permute(o, [0, 2, 1, 3]), [B, N, Hq * D]).toFloat32();
        const got = b.selfAttentionRope(qkv.t, { heads: Hq, kvHeads: Hkv, positions: pos, theta: 10000, scale: 0.1, softcap: 50, window, keyMask: mask });
        expectClose(`selfAttentionRope vs composed (window ${window})`, got.toFloat32(), Float64Array.from(composed), 'f32');
      }
      expect(() => b.selfAttentionRope(qkv.t, { heads: 3, kvHeads: 2, positions: pos, theta: 1e4, scale: 1 })).toThrow(/multiple/);
      expect(() => b.selfAttentionRope(qkv.t, { heads: Hq, kvHeads: Hkv, positions: pos.slice(1), theta: 1e4, scale: 1 })).toThrow(/positions/);
      expect(() => b.selfAttentionRope(qkv.t, { heads: Hq, kvHeads: Hkv, positions: pos, theta: 1e4, scale: 1, keyMask: [1, 0] })).toThrow(/keyMask/);
    });
    it('linearAttention (ReLU, f32 inside whatever the dtype)', () => {
      const arb = fc.record({ B: dim(1, 2), H: dim(1, 3), N: dim(1, 30), D: dim(1, 16), relu: fc.boolean() });
      forAll(b, 'linearAttention', arb, ({ B, H, N, D, relu }, dt, seed) => {
        const s = [B, H, N, D];
        const q = rand(b, s, dt, seed),
          k = rand(b, s, dt, seed + 1),
          v = rand(b, s, dt, seed + 2);
        // without ReLU the denominator can approach 0; keep q·k positive by shifting
        const qq = relu ? q : { t: b.affine(q.t, 0.1, 1), v: Float64Array.from(b.affine(q.t, 0.1, 1).toFloat32()) };
        const kk = relu ? k : { t: b.affine(k.t, 0.1, 1), v: Float64Array.from(b.affine(k.t, 0.1, 1).toFloat32()) };
        const got = b.linearAttention(qq.t, kk.t, v.t, 1e-15, relu);
        expect(got.dtype).toBe(dt);
        expectClose('linearAttention', got.toFloat32(), R.linearAttention(qq.v, kk.v, v.v, s, 1e-15, relu), dt, 4);
      });
    });
    it('rope (rotate_half, arbitrary positions)', () => {
      const arb = fc.record({ B: dim(1, 2), H: dim(1, 3), L: dim(1, 12), half: dim(1, 16), start: dim(0, 300) });
      forAll(b, 'rope', arb, ({ B, H, L, half, start }, dt, seed) => {
        const s = [B, H, L, 2 * half];
        const x = rand(b, s, dt, seed);
        const pos = Array.from({ length: L }, (_, i) => start + i);
        expectClose('rope', b.rope(x.t, pos, 10000).toFloat32(), R.rope(x.v, s, pos, 10000), dt, 2);
      });
    });
  });
}
