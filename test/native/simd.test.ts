// The CPU element-wise/norm/cast kernels come in AVX-512, AVX2 and baseline clones picked per
// call (native/cpu/vec.h); SANA_CPU_ISA lowers the choice, so each clone is checked here on the
// same machine. Covers what the random-shape suite does not reach: rows longer than one chunk
// and one work item, chunk tails, the polynomial exp/tanh accuracy, bf16 rounding ties and NaN,
// attention's register-blocked QK/PV paths (4-row tiles, 16-float column blocks, key columns cut
// to the visible keys) and the linear attention's small-GEMM tiles.
import { afterAll, describe, expect, it } from 'vitest';
import { getBackend } from '../../native/index.ts';
import * as R from './reference.ts';
import { expectClose, rand } from './harness.ts';
import { buildInfo } from '../../native/index.ts';

const b = getBackend('cpu');
const ISAS = ['avx512', 'avx2', 'base'] as const;
const saved = process.env.SANA_CPU_ISA;
afterAll(() => {
  if (saved === undefined) delete process.env.SANA_CPU_ISA;
  else process.env.SANA_CPU_ISA = saved;
});

/** Largest |got - want| / max(|want|, floor) over the inputs. */
function maxRelErr(got: Float32Array, want: (i: number) => number, floor: number): number {
  let m = 0;
  for (let i = 0; i < got.length; i++) {
    const w = want(i);
    m = Math.max(m, Math.abs(got[i]! - w) / Math.max(Math.abs(w), floor));
  }
  return m;
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
// 0.5·x·(1 + tanh(u)) written as x·sigmoid(2u): the float64 reference must not cancel either.
const geluTanh = (x: number): number => x / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

for (const isa of ISAS) {
  describe(`cpu SIMD kernels, SANA_CPU_ISA=${isa}`, () => {
    const use = (): void => {
      process.env.SANA_CPU_ISA = isa;
    };

    it('tanh, silu and gelu_tanh (f32) match float64 to a few ulp on [-30, 30]', () => {
      use();
      // 200001 points: every region of the approximations (tiny |x|, the 0.3 switch, saturation).
      const n = 200001;
      const xs = Float32Array.from({ length: n }, (_, i) => -30 + (60 * i) / (n - 1));
      const x = b.fromArray(xs, [n], 'f32');
      const eps = 2 ** -23;
      const tanhErr = maxRelErr(b.tanh(x).toFloat32(), (i) => Math.tanh(xs[i]!), 1e-30);
      const siluErr = maxRelErr(b.silu(x).toFloat32(), (i) => xs[i]! * sigmoid(xs[i]!), 1e-30);
      const gelu = b.gelu_tanh(x).toFloat32();
      // For x << 0 gelu's relative error grows with |u| (u itself is rounded to float before the
      // exp, as in any f32 implementation), so: relative on |x| <= 3, absolute elsewhere.
      let geluRel = 0,
        geluAbs = 0;
      for (let i = 0; i < n; i++) {
        const v = xs[i]!,
          w = geluTanh(v),
          e = Math.abs(gelu[i]! - w);
        if (Math.abs(v) <= 3) geluRel = Math.max(geluRel, e / Math.max(Math.abs(w), 1e-30));
        geluAbs = Math.max(geluAbs, e / Math.max(1, Math.abs(v)));
      }
      // Measured (all three ISAs, this grid, vs float64): tanh 1.26 ulp, silu 1.37-1.41 ulp,
      // gelu_tanh 6.9-7.0 ulp relative on |x| <= 3 and 0.97 ulp·max(1,|x|) absolute.
      expect(tanhErr / eps).toBeLessThan(2);
      expect(siluErr / eps).toBeLessThan(2);
      expect(geluRel / eps).toBeLessThan(8);
      expect(geluAbs / eps).toBeLessThan(2);
      // exact values at the ends of the range
      const ends = b.tanh(b.fromArray([0, -0, 1e-30, 100, -100, Infinity, -Infinity], [7], 'f32')).toFloat32();
      expect(Array.from(ends)).toEqual([0, -0, Math.fround(1e-30), 1, -1, 1, -1]);
      const sl = b.silu(b.fromArray([-200, 200, -Infinity], [3], 'f32')).toFloat32();
      expect(Math.abs(sl[0]!)).toBeLessThan(1e-30);
      expect(sl[1]).toBe(200);
      expect(Number.isNaN(b.silu(b.fromArray([NaN], [1], 'f32')).toFloat32()[0])).toBe(true);
    });

    it('bf16 stores round to nearest even and keep NaN', () => {
      use();
      // f32 bit patterns: exactly halfway between two bf16 values (ties to even both ways),
      // just above halfway, the largest finite that rounds to inf, NaN.
      const bits = new Uint32Array([0x3f808000, 0x3f818000, 0x3f808001, 0x7f7fffff, 0x7fc00001, 0xff800000]);
      const f = new Float32Array(bits.buffer);
      const want = new Uint32Array([0x3f800000, 0x3f820000, 0x3f810000, 0x7f800000, 0, 0xff800000]);
      // The f32 -> bf16 cast kernel does the rounding (the input tensor is f32).
      const got = new Uint32Array(b.cast(b.fromArray(f, [f.length], 'f32'), 'bf16').toFloat32().buffer);
      for (let i = 0; i < want.length; i++) {
        if (i === 4) expect(Number.isNaN(new Float32Array(got.buffer)[i])).toBe(true);
        else expect(got[i]!.toString(16)).toBe(want[i]!.toString(16));
      }
    });

    for (const dt of ['f32', 'bf16'] as const) {
      it(`long rows across chunks and work items (${dt})`, () => {
        use();
        b.scope(() => {
          // 1-D: one row of 70001 elements (several kGrain items, a chunk tail).
          const n = 70001;
          const a = rand(b, [n], dt, 1),
            c = rand(b, [n], dt, 2);
          expectClose(
            'gluMul gelu 1-D',
            b.gluMul(a.t, c.t, 'gelu_tanh').toFloat32(),
            Float64Array.from(a.v, (v, i) => v * geluTanh(c.v[i]!)),
            dt,
          );
          expectClose(
            'silu 1-D',
            b.silu(a.t).toFloat32(),
            Float64Array.from(a.v, (v) => v * sigmoid(v)),
            dt,
          );
          expectClose('cast', b.cast(a.t, dt === 'f32' ? 'bf16' : 'f32').toFloat32(), a.v, 'bf16');
          // (3, 20000) with a (3, 1) operand: inner stride 0, rows of more than one item.
          const r = rand(b, [3, 1], dt, 3),
            m = rand(b, [3, 20000], dt, 4);
          expectClose(
            'mul by a per-row scalar',
            b.mul(m.t, r.t).toFloat32(),
            Float64Array.from(m.v, (v, i) => v * r.v[Math.floor(i / 20000)]!),
            dt,
          );
          // modulate/addGated at (2, 5, 2500) with (2, 1, 2500) rows: chunk tails inside a row.
          const C = 2500;
          const x = rand(b, [2, 5, C], dt, 5),
            sh = rand(b, [2, 1, C], dt, 6),
            sc = rand(b, [2, 1, C], dt, 7);
          const bi = (i: number): number => Math.floor(i / (5 * C)) * C + (i % C);
          expectClose(
            'modulate',
            b.modulate(x.t, sh.t, sc.t).toFloat32(),
            Float64Array.from(x.v, (v, i) => v * (1 + sc.v[bi(i)]!) + sh.v[bi(i)]!),
            dt,
          );
          expectClose(
            'addGated',
            b.addGated(x.t, sh.t, sc.t).toFloat32(),
            Float64Array.from(x.v, (v, i) => v + sh.v[bi(i)]! * sc.v[bi(i)]!),
            dt,
          );
          // norms with C = 2500 (> one chunk, with a tail), offset and bias.
          const w = rand(b, [C], dt, 8),
            bias = rand(b, [C], dt, 9);
          const rows = 10;
          const xn = rand(b, [rows, C], dt, 10, 3);
          const ln = new Float64Array(rows * C),
            rms = new Float64Array(rows * C);
          for (let rr = 0; rr < rows; rr++) {
            let mean = 0,
              ss = 0;
            for (let j = 0; j < C; j++) {
              mean += xn.v[rr * C + j]!;
              ss += xn.v[rr * C + j]! ** 2;
            }
            mean /= C;
            let v = 0;
            for (let j = 0; j < C; j++) v += (xn.v[rr * C + j]! - mean) ** 2;
            const inv = 1 / Math.sqrt(v / C + 1e-6),
              rinv = 1 / Math.sqrt(ss / C + 1e-6);
            for (let j = 0; j < C; j++) {
              ln[rr * C + j] = (xn.v[rr * C + j]! - mean) * inv * w.v[j]! + bias.v[j]!;
              rms[rr * C + j] = xn.v[rr * C + j]! * rinv * (w.v[j]! + 1) + bias.v[j]!;
            }
          }
          expectClose('layernorm', b.layernorm(xn.t, w.t, bias.t, 1e-6).toFloat32(), ln, dt);
          expectClose('rmsnorm', b.rmsnorm(xn.t, w.t, bias.t, 1e-6, 1).toFloat32(), rms, dt);
          // rmsnormAct (no offset): its own per-ISA clone; ReLU of the norm, plus x as the residual
          const rmsAct = new Float64Array(rows * C);
          for (let rr = 0; rr < rows; rr++) {
            let ss = 0;
            for (let j = 0; j < C; j++) ss += xn.v[rr * C + j]! ** 2;
            const rinv = 1 / Math.sqrt(ss / C + 1e-6);
            for (let j = 0; j < C; j++) rmsAct[rr * C + j] = Math.max(xn.v[rr * C + j]! * rinv * w.v[j]! + bias.v[j]!, 0) + xn.v[rr * C + j]!;
          }
          expectClose('rmsnormAct', b.rmsnormAct(xn.t, w.t, bias.t, 1e-6, 'relu', xn.t).toFloat32(), rmsAct, dt);
          // upsamplePhasesNhwc with C = 1100 (> one chunk): strided shortcut (repeat 2) and the
          // general path (repeat 8: 4·1100 / 550)
          for (const Cx of [2200, 550]) {
            const y = rand(b, [1, 3, 4, 4 * 1100], dt, 11),
              sx = rand(b, [1, 2, 3, Cx], dt, 12);
            expectClose(`upsamplePhasesNhwc Cx ${Cx}`, b.upsamplePhasesNhwc(y.t, sx.t).toFloat32(), R.upsamplePhasesNhwc(y.v, 1, 2, 3, 1100, sx.v, Cx), dt);
          }
        });
      });
    }

    for (const dt of ['f32', 'bf16'] as const) {
      it(`attention with wide heads: Dv = 64 + 16 + 8, odd query count (${dt})`, () => {
        use();
        b.scope(() => {
          const cases = [
            // Gemma-like: causal, window, soft-cap, (B, 1, Lq, Lk) bias; Lq = Lk = 37 (odd).
            { B: 1, Hq: 4, Hkv: 2, Lq: 37, Lk: 37, D: 88, Dv: 88, causal: true, window: 20, softcap: 5, bshape: [1, 1, 37, 37] },
            // Sana cross-attention-like: (B, Lk) bias, 150 keys (three 64-key chunks with a tail).
            { B: 2, Hq: 2, Hkv: 2, Lq: 45, Lk: 150, D: 72, Dv: 72, causal: false, window: 0, softcap: 0, bshape: [2, 150] },
          ];
          for (const c of cases) {
            const q = rand(b, [c.B, c.Hq, c.Lq, c.D], dt, 41),
              k = rand(b, [c.B, c.Hkv, c.Lk, c.D], dt, 42),
              v = rand(b, [c.B, c.Hkv, c.Lk, c.Dv], dt, 43);
            const bias = rand(b, c.bshape, 'f32', 44);
            const scale = 1 / Math.sqrt(c.D);
            const got = b.attention(q.t, k.t, v.t, { scale, bias: bias.t, causal: c.causal, window: c.window || undefined, softcap: c.softcap || undefined });
            const want = R.attention(q.v, k.v, v.v, [c.B, c.Hq, c.Lq, c.D], c.Hkv, c.Lk, c.Dv, {
              scale,
              softcap: c.softcap,
              causal: c.causal,
              window: c.window,
              bias: bias.v,
              biasShape: c.bshape,
            });
            expectClose(`attention ${c.causal ? 'causal' : 'cross'}`, got.toFloat32(), want, dt);
          }
          // Key padding: batch 0 masks its last 100 of 150 keys with -1e30 (those tiles are
          // skipped), batch 1 masks every key (softmax uniform over all keys, none skipped).
          const q = rand(b, [2, 2, 9, 40], dt, 51),
            k = rand(b, [2, 2, 150, 40], dt, 52),
            v = rand(b, [2, 2, 150, 40], dt, 53);
          const bv = Float32Array.from({ length: 300 }, (_, i) => (i < 50 ? 0.1 * (i % 7) : -1e30));
          const bias = b.fromArray(bv, [2, 150], 'f32');
          const got = b.attention(q.t, k.t, v.t, { scale: 0.2, bias });
          const want = R.attention(q.v, k.v, v.v, [2, 2, 9, 40], 2, 150, 40, { scale: 0.2, bias: Float64Array.from(bv), biasShape: [2, 150] });
          expectClose('attention with key padding', got.toFloat32(), want, dt);
        });
      });
      it(`attention's output rounding: bf16 ties to even and NaN kept, f32 exact, D tails (${dt})`, () => {
        use();
        b.scope(() => {
          // Two keys with the same key vector: p = 1 each, l = 2, out = (v1 + v2) / 2, exact in
          // f32 for bf16 values, so what reaches the output tile is known. Column pairs
          // (1 + 2^-7, 1 + 2^-6): the mean 1 + 3·2^-8 is a bf16 tie that rounds up to even;
          // (1, 1 + 2^-7): the tie 1 + 2^-8 rounds down; NaN in one value stays NaN.
          for (const D of [16, 20, 72]) {
            const [B, Lq, Lk, H] = [1, 5, 2, 2];
            const q = rand(b, [B, Lq, H * D], dt, 70 + D, 0.5);
            const kvv = new Float32Array(B * Lk * 2 * H * D);
            const want = new Float32Array(B * Lq * H * D);
            for (let h = 0; h < H; h++)
              for (let d = 0; d < D; d++) {
                const pair = d % 3 === 0 ? [1 + 2 ** -7, 1 + 2 ** -6] : d % 3 === 1 ? [1, 1 + 2 ** -7] : [d === 2 && h === 1 ? NaN : 0.5, 0.75];
                for (let j = 0; j < Lk; j++) {
                  kvv[(j * 2 + 0) * H * D + h * D + d] = 0.25; // the same key for both
                  kvv[(j * 2 + 1) * H * D + h * D + d] = pair[j]!;
                }
                const mean = (pair[0]! + pair[1]!) / 2;
                const exact = dt === 'bf16' ? (d % 3 === 0 ? 1 + 2 ** -6 : d % 3 === 1 ? 1 : mean) : mean;
                for (let i = 0; i < Lq; i++) want[i * H * D + h * D + d] = exact;
              }
            const kv = b.fromArray(kvv, [B, Lk, 2 * H * D], dt);
            const got = b.attentionTokens(q.t, kv, H, { scale: D ** -0.5 }).toFloat32();
            for (let i = 0; i < want.length; i++) {
              if (Number.isNaN(want[i]!)) expect(Number.isNaN(got[i]!), `D=${D} element ${i}: NaN`).toBe(true);
              else expect(got[i], `D=${D} element ${i}`).toBe(Math.fround(want[i]!));
            }
          }
        });
      });
      it(`attentionTokens (16/48/80-float tiles, padded caption) and linearAttentionTokens (8/4/2/1-row tiles) (${dt})`, () => {
        use();
        b.scope(() => {
          // Sana cross shape cut down: 3 heads of 72, 45 queries, 150 keys, visible 40 / 1.
          const [B, Lq, Lk, H, D] = [2, 45, 150, 3, 72];
          const q = rand(b, [B, Lq, H * D], dt, 61),
            kv = rand(b, [B, Lk, 2 * H * D], dt, 62);
          const bv = Float32Array.from({ length: B * Lk }, (_, i) => (i % Lk < (i < Lk ? 40 : 1) ? 0 : -10000));
          const scale = D ** -0.5;
          for (const bias of [undefined, bv]) {
            const got = b.attentionTokens(q.t, kv.t, H, { scale, bias: bias && b.fromArray(bias, [B, Lk], 'f32') });
            expectClose('attentionTokens', got.toFloat32(), R.attentionTokens(q.v, kv.v, B, Lq, Lk, H, D, scale, bias && Float64Array.from(bias)), dt);
          }
          // 2 × 37 tokens (8-row tiles and a 4 + 1 tail), head dims 32 (Sana) and 20 (Dp 32).
          for (const d of [32, 20]) {
            const qkv = rand(b, [2, 37, 3 * 3 * d], dt, 63);
            expectClose(
              'linearAttentionTokens',
              b.linearAttentionTokens(qkv.t, 3, 1e-6).toFloat32(),
              R.linearAttentionTokens(qkv.v, 2, 37, 3, d, 1e-6, true),
              dt,
              2,
            );
          }
        });
      });
    }
  });
}

// bf16 attentionTokens on AVX512-BF16 CPUs keeps its k|v as bf16 pairs multiplied with vdpbf16ps
// (attention.cpp, KvCache::pairs) instead of f32 tiles: odd key counts (a pair whose second key
// does not exist), soft ends at odd keys, query rows 1-3 past the 4-row tiles, head dims whose
// value rows cross the 5-vector column blocks (D = 96: 80 + 16), against float64 and against the
// f32-tile kernels of the same machine (SANA_CPU_ISA=avx2); the kept tiles take half the bytes.
describe.skipIf(!buildInfo().bf16Dot)('bf16 attentionTokens on bf16 pair tiles', () => {
  it('matches float64 and the f32 tiles; odd keys and soft ends; kept tiles half the size', () => {
    for (const [Lk, D, vis] of [
      [131, 72, [77, 3]],
      [67, 20, [67, 1]],
      [200, 96, [129, 64]],
      [1, 16, [1, 1]],
    ] as const) {
      b.scope(() => {
        const [B, Lq, H] = [2, 7, 3];
        const q = rand(b, [B, Lq, H * D], 'bf16', Lk + D, 1);
        const kv = rand(b, [B, Lk, 2 * H * D], 'bf16', Lk + D + 1, 1);
        const mask = Float32Array.from({ length: B * Lk }, (_, j) => (j % Lk < vis[Math.floor(j / Lk)]! ? 0 : -10000));
        const bias = b.fromArray(mask, [B, Lk], 'f32');
        const scale = D ** -0.5;
        const want = R.attentionTokens(q.v, kv.v, B, Lq, Lk, H, D, scale, Float64Array.from(mask));
        delete process.env.SANA_CPU_ISA;
        const got = b.attentionTokens(q.t, kv.t, H, { scale, bias }).toFloat32();
        expectClose(`pairs Lk=${Lk} D=${D}`, got, want, 'bf16');
        process.env.SANA_CPU_ISA = 'avx2';
        const f32Tiles = b.attentionTokens(q.t, b.fromArray(kv.t.toFloat32(), [B, Lk, 2 * H * D], 'bf16'), H, { scale, bias }).toFloat32();
        delete process.env.SANA_CPU_ISA;
        expectClose(`pairs vs f32 tiles Lk=${Lk} D=${D}`, got, Float64Array.from(f32Tiles), 'bf16');
      });
    }
    // Memory: every chunk converted (no bias), per (b, chunk) H · (D·64 + 64·Dvp) bf16 values.
    const [B, Lk, H, D] = [2, 130, 2, 72];
    const kv = rand(b, [B, Lk, 2 * H * D], 'bf16', 5, 1);
    const q = rand(b, [B, 4, H * D], 'bf16', 6, 1);
    const before = b.memory().allocated;
    const out = b.attentionTokens(q.t, kv.t, H, { scale: 0.1 });
    const kept = b.memory().allocated - before - out.nbytes;
    const chunks = Math.ceil(Lk / 64);
    expect(kept).toBe(B * chunks * H * (D * 64 + 64 * 80) * 2 + B * H * Lk * 4); // tiles + key norms (f32)
    out.dispose();
    kv.t.dispose();
    q.t.dispose();
  });
});
