// Native CPU backend: the non-GEMM ops at Sana-600M / Gemma-2-2B shapes, f32 and bf16.
// Element-wise / norm / cast rows report ms (median, best) and GB/s (at the best time) of tensor
// bytes read + written; attention rows report ms and GFLOP/s (at the best time) (2·Lq·Lk·(D+Dv) per head, causal counted in full).
//   npm run bench -- ops          (SANA_OPS_BENCH_REPS=N changes the runs per case, default 5)
import { performance } from 'node:perf_hooks';
import os from 'node:os';
import { buildInfo, cpuThreads, getBackend } from '../native/index.ts';
import type { Backend, DType, Tensor } from '../native/api.ts';
import type { BenchMultiRow } from './types.ts';

const REPS = Number(process.env.SANA_OPS_BENCH_REPS ?? 5);

/**
 * Median and best wall time of `fn` in ms over REPS runs after one warm-up. On the shared 2-core
 * machine the median often lands on a scheduler quantum (a descheduled OpenMP thread holds the
 * barrier ~4-8 ms), so `best_ms` is the number to compare between builds.
 */
function median(fn: () => void): { ms: number; best_ms: number } {
  fn();
  const ts: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return { ms: ts[ts.length >> 1]!, best_ms: ts[0]! };
}

function randomTensor(b: Backend, shape: number[], dt: DType, seed: number, scale = 1): Tensor {
  const n = shape.reduce((a, c) => a * c, 1);
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    a[i] = (s / 4294967296 - 0.5) * 4 * scale;
  }
  return b.fromArray(a, shape, dt);
}

const bytesOf = (shape: number[], dt: DType): number => shape.reduce((a, c) => a * c, 1) * (dt === 'f32' ? 4 : 2);

export default async function opsBench(): Promise<BenchMultiRow[]> {
  const b = getBackend('cpu');
  const info = buildInfo();
  const load = os.loadavg()[0]!.toFixed(1);
  const env = `${cpuThreads()} threads, ISA ${info.isa}, load ${load}, median of ${REPS}`;
  const rows: BenchMultiRow[] = [];

  const mem = (name: string, dt: DType, bytes: number, fn: () => Tensor): void => {
    const { ms, best_ms } = median(() => {
      fn().dispose();
    });
    rows.push({ name: `${name}.${dt}`, metrics: { ms, best_ms, gbps: bytes / best_ms / 1e6 }, units: { gbps: 'GB/s' }, notes: env });
  };

  for (const dt of ['f32', 'bf16'] as const) {
    // Sana-600M block: tokens (2, 1024, 1152), adaLN rows (2, 1, 1152).
    const X = [2, 1024, 1152],
      R = [2, 1, 1152];
    const x = randomTensor(b, X, dt, 1),
      y = randomTensor(b, X, dt, 2);
    const sh = randomTensor(b, R, dt, 3),
      sc = randomTensor(b, R, dt, 4);
    const xb = bytesOf(X, dt);
    mem('add.2x1024x1152', dt, 3 * xb, () => b.add(x, y));
    mem('mul.2x1024x1152', dt, 3 * xb, () => b.mul(x, y));
    mem('modulate.2x1024x1152', dt, 2 * xb, () => b.modulate(x, sh, sc));
    mem('addGated.2x1024x1152', dt, 3 * xb, () => b.addGated(x, sh, y));
    mem('layernorm.2x1024x1152', dt, 2 * xb, () => b.layernorm(x, undefined, undefined, 1e-6));
    const w = randomTensor(b, [1152], dt, 5);
    mem('rmsnorm.2x1024x1152', dt, 2 * xb, () => b.rmsnorm(x, w, undefined, 1e-6));
    mem('gelu_tanh.2x1024x1152', dt, 2 * xb, () => b.gelu_tanh(x));
    [x, y, sh, sc, w].forEach((t) => t.dispose());

    // Sana GLUMBConv: (2, 2·2880, 32, 32) after the depthwise conv, split into halves.
    const G = [2, 2880, 32, 32];
    const g = randomTensor(b, [2, 5760, 32, 32], dt, 6);
    mem('silu.2x5760x32x32', dt, 2 * bytesOf([2, 5760, 32, 32], dt), () => b.silu(g));
    g.dispose();
    const ga = randomTensor(b, G, dt, 7),
      gb = randomTensor(b, G, dt, 8);
    mem('gluMul_silu.2x2880x32x32', dt, 3 * bytesOf(G, dt), () => b.gluMul(ga, gb, 'silu'));
    ga.dispose();
    gb.dispose();

    // Gemma-2-2B GeGLU gate: (tokens, 9216).
    for (const T of [300, 506]) {
      const a = randomTensor(b, [T, 9216], dt, 9),
        c = randomTensor(b, [T, 9216], dt, 10);
      mem(`gluMul_gelu.${T}x9216`, dt, 3 * bytesOf([T, 9216], dt), () => b.gluMul(a, c, 'gelu_tanh'));
      a.dispose();
      c.dispose();
    }
    const r = randomTensor(b, [506, 2304], dt, 11),
      rw = randomTensor(b, [2304], dt, 12);
    mem('rmsnorm.506x2304', dt, 2 * bytesOf([506, 2304], dt), () => b.rmsnorm(r, rw, undefined, 1e-6, 1));
    r.dispose();
    rw.dispose();
  }
  // cast both ways at the Sana token shape.
  {
    const X = [2, 1024, 1152];
    const f = randomTensor(b, X, 'f32', 13),
      h = randomTensor(b, X, 'bf16', 14);
    mem('cast_to_bf16.2x1024x1152', 'f32', bytesOf(X, 'f32') + bytesOf(X, 'bf16'), () => b.cast(f, 'bf16'));
    mem('cast_to_f32.2x1024x1152', 'bf16', bytesOf(X, 'f32') + bytesOf(X, 'bf16'), () => b.cast(h, 'f32'));
    f.dispose();
    h.dispose();
  }

  const att = (
    name: string,
    dt: DType,
    Bn: number,
    Hq: number,
    Hkv: number,
    Lq: number,
    Lk: number,
    D: number,
    mk: () => Tensor,
    extra: { softcap?: number; causal?: boolean; window?: number; biasShape: number[] },
  ): void => {
    const q = randomTensor(b, [Bn, Hq, Lq, D], dt, 20, 0.5),
      k = randomTensor(b, [Bn, Hkv, Lk, D], dt, 21, 0.5),
      v = randomTensor(b, [Bn, Hkv, Lk, D], dt, 22);
    const bias = mk();
    const { ms, best_ms } = median(() => {
      b.attention(q, k, v, { scale: 1 / Math.sqrt(D), bias, softcap: extra.softcap, causal: extra.causal, window: extra.window }).dispose();
    });
    const flops = 2 * Bn * Hq * Lq * Lk * 2 * D;
    rows.push({ name: `${name}.${dt}`, metrics: { ms, best_ms, gflops: flops / best_ms / 1e6 }, notes: `${env}; bias ${extra.biasShape.join('x')}` });
    [q, k, v, bias].forEach((t) => t.dispose());
  };
  for (const dt of ['f32', 'bf16'] as const) {
    // Gemma-2-2B: 8 q heads, 4 kv heads, head_dim 256, soft-cap 50, explicit causal bias (B,1,L,L).
    for (const L of [300, 506]) {
      const biasShape = [1, 1, L, L];
      const mk = (): Tensor => {
        const m = new Float32Array(L * L);
        for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) m[i * L + j] = j <= i && i - j < 4096 ? 0 : -1e30;
        return b.fromArray(m, biasShape, dt);
      };
      att(`attention.gemma.${L}tok`, dt, 1, 8, 4, L, L, 256, mk, { softcap: 50, causal: true, biasShape });
    }
    // Gemma-2-2B's whole attention step: the former chain from the separate q, k, v outputs (head
    // permutes → rope ×2 → attention with the (1, 1, L, L) bias → permute back) against
    // selfAttentionRope on the fused (B, L, (8 + 2·4)·256) output (RoPE, causal, key mask inside);
    // all keys real, and the cond prompt's 246 real of 506.
    for (const L of [300, 506]) {
      const qkv = randomTensor(b, [1, L, 16 * 256], dt, 25, 0.5);
      const pos = Array.from({ length: L }, (_, i) => i);
      const m = new Float32Array(L * L);
      for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) m[i * L + j] = j <= i ? 0 : -3.4028234663852886e38;
      const bias = b.fromArray(m, [1, 1, L, L], 'f32');
      // the separate q, k, v linears' outputs the former model code started from
      const [qT, kT, vT] = [
        [0, 8],
        [8, 4],
        [12, 4],
      ].map(([lo, H]) => b.slice(qkv, 2, lo * 256, (lo + H) * 256));
      const heads = (x: Tensor, H: number): Tensor => b.permute(b.reshape(x, [1, L, H, 256]), [0, 2, 1, 3]);
      const chain = median(() =>
        b.scope(() => {
          const o = b.attention(b.rope(heads(qT, 8), pos, 10000), b.rope(heads(kT, 4), pos, 10000), heads(vT, 4), { scale: 1 / 16, softcap: 50, bias });
          b.reshape(b.permute(o, [0, 2, 1, 3]), [1, L, 8 * 256]);
        }),
      );
      const flops = 2 * 8 * L * L * 2 * 256;
      rows.push({
        name: `gemma.attn_chain.${L}tok.${dt}`,
        metrics: { ...chain, gflops: flops / chain.best_ms / 1e6 },
        notes: `${env}; permutes, rope ×2, attention, permute`,
      });
      for (const real of L === 506 ? [L, 246] : [L]) {
        const keyMask = Float32Array.from({ length: L }, (_, j) => (j < real ? 1 : 0));
        const r = median(() => {
          b.selfAttentionRope(qkv, { heads: 8, kvHeads: 4, positions: pos, theta: 10000, scale: 1 / 16, softcap: 50, window: 4096, keyMask }).dispose();
        });
        rows.push({
          name: `selfAttentionRope.gemma.${L}tok${real < L ? `.${real}real` : ''}.${dt}`,
          metrics: { ...r, gflops: flops / r.best_ms / 1e6 },
          notes: env,
        });
      }
      [qkv, bias, qT, kT, vT].forEach((t) => t.dispose());
    }
    // Sana cross-attention: B=2, 16 heads × 72, 1024 queries × 300 caption keys, bias (B, 300).
    for (const Lq of [1024, 4096]) {
      const biasShape = [2, 300];
      const mk = (): Tensor => {
        const m = new Float32Array(600);
        for (let i = 0; i < 600; i++) m[i] = i % 300 < 120 ? 0 : -1e30;
        return b.fromArray(m, biasShape, dt);
      };
      att(`attention.sana_cross.${Lq}q`, dt, 2, 16, 16, Lq, 300, 72, mk, { biasShape });
    }
    // The token-major DiT ops at Sana-600M, 1024² (2 × 1024 tokens): cross attention straight from
    // the q and k|v linears (caption of 300 with 40 visible keys, and all 300 visible), the linear
    // attention from to_qkv's output, and to_out with the gated residual epilogue.
    {
      const q = randomTensor(b, [2, 1024, 1152], dt, 23, 0.5),
        kv = randomTensor(b, [2, 300, 2304], dt, 24, 0.5);
      for (const visible of [40, 300]) {
        const m = new Float32Array(600);
        for (let i = 0; i < 600; i++) m[i] = i % 300 < visible ? 0 : -10000;
        const bias = b.fromArray(m, [2, 300], dt);
        const { ms, best_ms } = median(() => {
          b.attentionTokens(q, kv, 16, { scale: 72 ** -0.5, bias }).dispose();
        });
        rows.push({
          name: `attentionTokens.sana_cross.1024q.${visible}of300.${dt}`,
          metrics: { ms, best_ms, gflops: (2 * 2 * 16 * 1024 * 300 * 2 * 72) / best_ms / 1e6 },
          notes: `${env}; GFLOP/s counted on all 300 keys`,
        });
        bias.dispose();
      }
      const qkv = randomTensor(b, [2, 1024, 3456], dt, 25);
      const la = median(() => {
        b.linearAttentionTokens(qkv, 36, 1e-15).dispose();
      });
      rows.push({ name: `linearAttentionTokens.2x1024x36x32.${dt}`, metrics: { ...la, gflops: (2 * 72 * 1024 * 32 * 33 * 2) / la.best_ms / 1e6 }, notes: env });
      const x = randomTensor(b, [2, 1024, 1152], dt, 26),
        res = randomTensor(b, [2, 1024, 1152], dt, 27),
        gate = randomTensor(b, [2, 1, 1152], dt, 28),
        w = randomTensor(b, [1152, 1152], dt, 29, 0.03);
      for (const [name, fn] of [
        ['linear', () => b.linear(x, w).dispose()],
        ['linear+addGated', () => b.scope(() => void b.addGated(res, gate, b.linear(x, w)))],
        ['linearResidual.gated', () => b.linearResidual(x, w, undefined, res, gate).dispose()],
      ] as const) {
        const r = median(fn);
        rows.push({ name: `${name}.2x1024x1152x1152.${dt}`, metrics: { ...r, gflops: (2 * 2048 * 1152 * 1152) / r.best_ms / 1e6 }, notes: env });
      }
      [q, kv, qkv, x, res, gate, w].forEach((t) => t.dispose());
    }
    // Sana linear attention: (2, 36 heads, 1024 tokens, 32 dims).
    const q = randomTensor(b, [2, 36, 1024, 32], dt, 30),
      k = randomTensor(b, [2, 36, 1024, 32], dt, 31),
      v = randomTensor(b, [2, 36, 1024, 32], dt, 32);
    const { ms, best_ms } = median(() => {
      b.linearAttention(q, k, v, 1e-15, true).dispose();
    });
    rows.push({ name: `linearAttention.2x36x1024x32.${dt}`, metrics: { ms, best_ms, gflops: (2 * 72 * 1024 * 32 * 32 * 2 * 2) / best_ms / 1e6 }, notes: env });
    [q, k, v].forEach((t) => t.dispose());
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await opsBench())
    console.log(
      r.name.padEnd(40),
      Object.entries(r.metrics)
        .map(([k, v]) => `${k}=${v.toFixed(2)}`)
        .join(' '),
    );
}
