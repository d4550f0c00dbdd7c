// Sana-600M transformer on the CPU backend with random weights in the real shapes.
//   npm run bench -- dit
// Rows: one CFG forward (batch 2, 300 text tokens) at 512² and 1024² in bf16 and f32 (time, FLOPs,
// TFLOP/s, peak backend memory); the same forward's linear layers timed alone in the same dtype
// (the "matmul floor", issue 12 target: forward ≤ 1.3× it); `.step`: a sampling step on text prepared
// once (what the samplers run; its floor `matmul_floor_step` leaves out the text GEMMs); bf16 time
// per sampling step vs resolution 256² → 2048², with its GEMMs' own per-token floor (linear
// attention: time per token should stay about flat); `ceiling.*`: a plain 2048³ matmul at the
// start and the end of the run (bench/ceiling.ts). Times are medians of SANA_BENCH_DIT_REPS runs
// (default 5) after a warm-up, extrapolated to 28 blocks from a 4-block and a 1-block model
// (SANA_BENCH_DIT_LAYERS=28 times the whole depth; see LAYERS_RUN).
import * as native from '../native/index.ts';
import type { Backend, DType, Tensor } from '../native/api.ts';
import { parseSanaTransformerConfig, type SanaTransformerConfig } from '../nodes/models/sana_dit/config.ts';
import { expectedTransformerTensors } from '../nodes/models/sana_dit/layout.ts';
import { buildSanaTransformer, type PreparedText } from '../nodes/models/sana_dit/model.ts';
import type { WeightSource } from '../nodes/models/weight_set.ts';
import type { BenchRow } from './types.ts';
import { matmulCeiling } from './ceiling.ts';

export const SANA_600M_CONFIG = {
  _class_name: 'SanaTransformer2DModel',
  attention_bias: false,
  attention_head_dim: 32,
  caption_channels: 2304,
  cross_attention_dim: 1152,
  cross_attention_head_dim: 72,
  in_channels: 32,
  interpolation_scale: null,
  mlp_ratio: 2.5,
  norm_elementwise_affine: false,
  norm_eps: 1e-6,
  num_attention_heads: 36,
  num_cross_attention_heads: 16,
  num_layers: 28,
  out_channels: 32,
  patch_size: 1,
  sample_size: 32,
};

/** Uniform noise from xorshift32, scaled by `amp`. */
export function noise(n: number, amp: number, seed = 7): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    a[i] = ((s / 4294967296) * 2 - 1) * amp;
  }
  return a;
}

/**
 * Random weights for a key list without a file: every tensor is a prefix of one shared noise
 * buffer, uploaded with fromArray and scaled to a 1/√fan-in range (keeps 28 random blocks finite
 * and away from denormals, which would distort CPU timings).
 */
export function randomWeights(shapes: Map<string, number[]>): WeightSource {
  const numel = (s: number[]): number => s.reduce((a, b) => a * b, 1);
  const buf = noise(Math.max(...[...shapes.values()].map(numel)), Math.sqrt(3));
  return {
    keys: () => [...shapes.keys()],
    has: (n) => shapes.has(n),
    entry: (n) => {
      const shape = shapes.get(n);
      if (!shape) throw new Error(`random weights: no tensor ${n}`);
      return { name: n, dtype: 'F32', shape, file: '<random>' };
    },
    load: (n: string, backend: Backend, dtype?: DType): Tensor => {
      const shape = shapes.get(n)!;
      const fanIn = shape.length > 1 ? numel(shape) / shape[0]! : 1;
      const scale = /norm|scale_shift|bias/.test(n) ? 0.1 : 1 / Math.sqrt(fanIn);
      return backend.fromArray(
        buf.subarray(0, numel(shape)).map((v) => v * scale),
        shape,
        dtype ?? 'f32',
      );
    },
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Seconds per call: one warm-up (weight packing, allocator), then the median of `reps`. */
export function timeIt(fn: () => void, reps: number, warmup = 1): number {
  for (let i = 0; i < warmup; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    ts.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return median(ts);
}

/** GEMMs on the text alone: a sampling step on prepared text (SanaTransformer.step) skips them. */
export const TEXT_GEMMS = new Set(['attn2.kv', 'caption.1', 'caption.2']);

/** The linear layers of one forward as (M, K, N, count): x (M, K) · Wᵀ (N, K). */
export function ditGemms(c: SanaTransformerConfig, B: number, N: number, L: number): Array<[string, number, number, number, number]> {
  const D = c.innerDim,
    F = c.ffnHidden,
    X = c.numCrossHeads * c.crossHeadDim,
    T = B * N,
    nl = c.numLayers;
  return [
    ['attn1.qkv', T, D, 3 * D, nl],
    ['attn1.out', T, D, D, nl],
    ['attn2.q', T, D, X, nl],
    ['attn2.kv', B * L, D, 2 * X, nl],
    ['attn2.out', T, X, D, nl],
    ['ff.inverted', T, D, 2 * F, nl],
    ['ff.point', T, F, D, nl],
    ['caption.1', B * L, c.captionChannels, D, 1],
    ['caption.2', B * L, D, D, 1],
    ['patch', T, c.inChannels, D, 1],
    ['proj_out', T, D, c.outChannels, 1],
  ];
}

/** FLOPs of one forward (multiply-add = 2): linears, both attentions, the depthwise conv. */
export function ditFlops(c: SanaTransformerConfig, B: number, N: number, L: number, perStep = false): number {
  const gemm = ditGemms(c, B, N, L).reduce((s, [name, M, K, Nn, k]) => (perStep && TEXT_GEMMS.has(name) ? s : s + 2 * M * K * Nn * k), 0);
  const D = c.innerDim,
    d = c.headDim,
    X = c.numCrossHeads * c.crossHeadDim,
    F = c.ffnHidden;
  const linAttn = 2 * 2 * B * N * D * (d + 1); // Σ v kᵀ and its product with q, per head (d+1 with the ones row)
  const cross = 2 * 2 * B * N * L * X; // q·kᵀ and P·v
  const dw = 2 * B * N * 2 * F * 9;
  return gemm + c.numLayers * (linAttn + cross + dw);
}

const MB = 1 / (1024 * 1024);

/**
 * Blocks actually built: every block has the same cost, so a forward of the full 28 is timed as
 * top + 28 · block from two models built from the same weights, one with `SANA_BENCH_DIT_LAYERS`
 * blocks (default 4, at least 2) and one with 1: block = (t_L − t_1) / (L − 1), top = t_1 − block.
 * (Scaling t_L by 28 / L, as this bench did before, counted the once-per-forward layers — timestep
 * MLP, caption projection of 2 × 300 tokens, patch embedding, output — 28 / L times: at L = 2 a
 * tenth of the 512² forward.) Rows say `layers_run`. Peak activation memory does not depend on
 * the depth (block inputs are freed).
 */
const LAYERS_RUN = Math.max(2, Math.min(28, Number(process.env.SANA_BENCH_DIT_LAYERS ?? 4)));
/** Timed runs per case (median; after one warm-up): a single run scattered by ±30% on the shared
 *  2-core machine. SANA_BENCH_DIT_REPS overrides. */
const REPS = Math.max(1, Number(process.env.SANA_BENCH_DIT_REPS ?? 5));

/** 28-block time (or bytes) from the L-block and 1-block measurements. */
const extrapolate = (tL: number, t1: number): number => (LAYERS_RUN === 28 ? tL : tL + ((28 - LAYERS_RUN) * (tL - t1)) / (LAYERS_RUN - 1));

export default async function ditBench(): Promise<BenchRow[]> {
  const backend = native.getBackend('cpu');
  const full = parseSanaTransformerConfig(SANA_600M_CONFIG, 'Sana_600M (bench)');
  const cfg = parseSanaTransformerConfig({ ...SANA_600M_CONFIG, num_layers: LAYERS_RUN }, `Sana_600M, ${LAYERS_RUN} blocks (bench)`);
  const cfg1 = parseSanaTransformerConfig({ ...SANA_600M_CONFIG, num_layers: 1 }, 'Sana_600M, 1 block (bench)');
  const src = randomWeights(expectedTransformerTensors(cfg));
  const rows: BenchRow[] = matmulCeiling(backend, 'start');
  const B = 2,
    L = 300;
  const text = noise(B * L * cfg.captionChannels, 1, 11);
  const mask = new Float32Array(B * L).fill(0);
  for (let b = 0; b < B; b++) for (let j = 0; j < (b === 0 ? 1 : 40); j++) mask[b * L + j] = 1; // uncond: BOS only
  const forward = (model: ReturnType<typeof buildSanaTransformer>, side: number): (() => void) => {
    const h = side / 32;
    const x = noise(B * 32 * h * h, 1, 3);
    return () => {
      model.forward({ data: x, shape: [B, 32, h, h] }, [500, 500], { data: text, shape: [B, L, cfg.captionChannels] }, mask).dispose();
    };
  };
  // A long prompt as the pipeline encodes it: only its real tokens (a complex-human-instruction
  // prompt, 232), the negative prompt padded to that length (BOS only). Every key chunk of the
  // positive row is real, so cross attention converts them all.
  const Llong = 232;
  const textLong = noise(B * Llong * cfg.captionChannels, 1, 12);
  const maskLong = new Float32Array(B * Llong).fill(0);
  for (let j = 0; j < Llong; j++) maskLong[Llong + j] = 1;
  maskLong[0] = 1;
  /** A sampling step: the forward on text prepared once (what the samplers run per step). */
  const step = (model: ReturnType<typeof buildSanaTransformer>, side: number, prepared: Map<object, PreparedText>, long = false): (() => void) => {
    const h = side / 32;
    const x = noise(B * 32 * h * h, 1, 3);
    let p = prepared.get(model);
    if (!p) {
      p = long
        ? model.prepareText({ data: textLong, shape: [B, Llong, cfg.captionChannels] }, maskLong)
        : model.prepareText({ data: text, shape: [B, L, cfg.captionChannels] }, mask);
      prepared.set(model, p);
    }
    const ready = p;
    return () => {
      model.step({ data: x, shape: [B, 32, h, h] }, [500, 500], ready).dispose();
    };
  };
  /** Seconds of the forward's linears alone (at the rate the backend reaches for them). */
  const matmulFloor = (N: number, perStep: boolean, dtype: DType): { seconds: number; flops: number } => {
    let mm = 0,
      mmFlops = 0;
    for (const [name, M, K, Nn, count] of ditGemms(full, B, N, L)) {
      if (perStep && TEXT_GEMMS.has(name)) continue;
      const xs = backend.fromArray(noise(M * K, 1, 5), [M, K], dtype);
      const w = backend.fromArray(noise(Nn * K, 0.05, 9), [Nn, K], dtype);
      try {
        mm += count * timeIt(() => backend.linear(xs, w).dispose(), REPS);
        mmFlops += 2 * M * K * Nn * count;
      } finally {
        xs.dispose();
        w.dispose();
      }
    }
    return { seconds: mm, flops: mmFlops };
  };
  /** Median seconds of the L-block and the 1-block forward, each after one warm-up (at least
   *  SANA_BENCH_DIT_REPS runs, more for short cases); the profile
   *  gets the L-block runs under `stage` (warm-ups excluded). Not interleaved: alternating the two
   *  models made the L-block forward ~10% slower (measured at 512², bf16). */
  const timeBoth = (fL: () => void, f1: () => void, stage: string): [number, number] => {
    const runs = (f: () => void, name: string): number => {
      f();
      // Short cases get more runs: a 256² step is ~0.3 s, so 5 runs were 1.5 s of samples for a
      // row whose block time is the difference of two medians (the per-token target's row). At
      // least ~2 s of timed runs per case, at most 40.
      const ts: number[] = [];
      let reps = REPS;
      for (let i = 0; i < reps; i++) {
        native.profiler.stage(name);
        const t0 = process.hrtime.bigint();
        f();
        ts.push(Number(process.hrtime.bigint() - t0) / 1e9);
        native.profiler.endStage();
        if (i === 0) reps = Math.min(40, Math.max(REPS, Math.ceil(2 / ts[0]!)));
      }
      return median(ts);
    };
    return [runs(fL, stage), runs(f1, `${stage} (1 block)`)];
  };

  for (const dtype of ['bf16', 'f32'] as const) {
    const model = buildSanaTransformer(cfg, src, backend, dtype, 'random weights');
    // same values: every random tensor is a prefix of one noise buffer of the largest tensor's size
    const one = buildSanaTransformer(cfg1, randomWeights(expectedTransformerTensors(cfg1)), backend, dtype, 'random weights');
    try {
      for (const side of [512, 1024]) {
        const N = (side / 32) ** 2;
        // Both models warm (weights packed, primitives made) before the peak is reset: the peak is
        // the forward's activations, not a first call's packing.
        forward(model, side)();
        forward(one, side)();
        backend.resetPeak();
        const base = backend.memory().allocated;
        const [tL, t1] = timeBoth(forward(model, side), forward(one, side), `dit600m.cfg.${side}.${dtype}`);
        const t = extrapolate(tL, t1);
        const peak = backend.memory().peak - base;
        const flops = ditFlops(full, B, N, L);
        rows.push({
          name: `dit600m.cfg.${side}.${dtype}`,
          metrics: {
            seconds: t,
            tflop: flops / 1e12,
            tflops: flops / t / 1e12,
            peak_act_mb: peak * MB,
            weights_mb: extrapolate(model.bytes, one.bytes) * MB,
            layers_run: cfg.numLayers,
            block_ms: ((tL - t1) / (LAYERS_RUN - 1)) * 1e3,
          },
        });
        // A sampling step on prepared text: the caption projection and the 28 k|v GEMMs run once
        // per prompt, not per step.
        const prepared = new Map<object, PreparedText>();
        let ts: number;
        try {
          const [sL, s1] = timeBoth(step(model, side, prepared), step(one, side, prepared), `dit600m.cfg.${side}.${dtype}.step`);
          ts = extrapolate(sL, s1);
        } finally {
          for (const p of prepared.values()) p.dispose();
        }
        rows.push({
          name: `dit600m.cfg.${side}.${dtype}.step`,
          metrics: { seconds: ts, tflops: ditFlops(full, B, N, L, true) / ts / 1e12, step_over_forward: ts / t },
        });
        // the matmul floor: the same linears, alone, at the rate the backend reaches for them
        native.profiler.stage(`dit600m.cfg.${side}.${dtype}.matmul_floor`);
        const mm = matmulFloor(N, false, dtype);
        native.profiler.endStage();
        rows.push({
          name: `dit600m.cfg.${side}.${dtype}.matmul_floor`,
          metrics: { seconds: mm.seconds, tflops: mm.flops / mm.seconds / 1e12, forward_over_floor: t / mm.seconds },
        });
        const ms = matmulFloor(N, true, dtype);
        rows.push({
          name: `dit600m.cfg.${side}.${dtype}.matmul_floor_step`,
          metrics: { seconds: ms.seconds, tflops: ms.flops / ms.seconds / 1e12, step_over_floor: ts / ms.seconds },
        });
      }
      if (dtype === 'bf16') {
        // Per-token cost vs resolution, per sampling step (prepared text: what a sampler repeats).
        const prepared = new Map<object, PreparedText>();
        try {
          for (const side of [256, 512, 1024, 2048]) {
            const N = (side / 32) ** 2;
            const t = extrapolate(...timeBoth(step(model, side, prepared), step(one, side, prepared), `dit600m.cfg.res${side}.bf16`));
            // Per-token cost of the step's GEMMs alone at this size: separates what small GEMMs
            // cost (fewer rows per weight byte) from what the other ops cost.
            const floor = matmulFloor(N, true, 'bf16').seconds;
            rows.push({
              name: `dit600m.cfg.res${side}.bf16`,
              metrics: {
                seconds: t,
                tokens: N,
                us_per_token: (t / (B * N)) * 1e6,
                floor_us_per_token: (floor / (B * N)) * 1e6,
                step_over_floor: t / floor,
                tflops: ditFlops(full, B, N, L, true) / t / 1e12,
                layers_run: cfg.numLayers,
              },
              notes: 'sampling step on prepared text',
            });
          }
        } finally {
          for (const p of prepared.values()) p.dispose();
        }
        const preparedLong = new Map<object, PreparedText>();
        try {
          for (const side of [256, 1024]) {
            const N = (side / 32) ** 2;
            const t = extrapolate(
              ...timeBoth(step(model, side, preparedLong, true), step(one, side, preparedLong, true), `dit600m.cfg.res${side}.bf16.long_prompt`),
            );
            rows.push({
              name: `dit600m.cfg.res${side}.bf16.long_prompt`,
              metrics: {
                seconds: t,
                tokens: N,
                us_per_token: (t / (B * N)) * 1e6,
                tflops: ditFlops(full, B, N, Llong, true) / t / 1e12,
                layers_run: cfg.numLayers,
              },
              notes: `sampling step, ${Llong}-token prompt (all real) and an empty negative prompt`,
            });
          }
        } finally {
          for (const p of preparedLong.values()) p.dispose();
        }
      }
    } finally {
      model.dispose();
      one.dispose();
    }
  }
  rows.push(...matmulCeiling(backend, 'end'));
  return rows;
}
