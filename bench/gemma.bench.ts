// Gemma-2-2B text encoder on the CPU backend: the real config (26 layers, hidden 2304, 8/4
// heads of 256, intermediate 9216) with random weights, on the two sequences Sana encodes per
// prompt: the uncond 300 tokens and the cond 300 + CHI (L_all = n_chi + 298) tokens.
//   npm run bench -- gemma
// Rows per dtype and length: seconds, TFLOP, TFLOP/s, the matmul floor (the seven projections as
// separate GEMMs, alone) and forward / floor, and the load average. The vocabulary is cut to 4096 rows (the
// lookup is the only thing it affects; the real table would cost 1.2 GB of bf16 for nothing).
// When free memory cannot hold all 26 layers at a dtype (f32: 8 GB + packed copies), fewer
// layers are built and the time is scaled to 26 (`layers_run` says how many ran); the env
// GEMMA_BENCH_LAYERS / GEMMA_BENCH_DTYPES / GEMMA_BENCH_REPS do the same by hand.
import { freemem, loadavg } from 'node:os';
import * as native from '../native/index.ts';
import type { Backend, DType, Tensor } from '../native/api.ts';
import { buildGemma2, gemma2Flops, gemma2ParamCount, parseGemma2Config, type Gemma2Config, gemma2Layout } from '../nodes/models/gemma2.ts';
import { layoutShapes } from '../nodes/models/layout.ts';
import type { WeightSource } from '../nodes/models/weight_set.ts';
import { tokenizePrompts } from '../nodes/models/prompt.ts';
import { loadGemmaTokenizer } from '../nodes/models/tokenizer.ts';
import type { BenchRow } from './types.ts';
import { matmulCeiling } from './ceiling.ts';

export const GEMMA2_2B_CONFIG = {
  model_type: 'gemma2',
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 26,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  query_pre_attn_scalar: 256,
  rope_theta: 10000.0,
  rms_norm_eps: 1e-6,
  sliding_window: 4096,
  attn_logit_softcapping: 50.0,
  final_logit_softcapping: 30.0,
  hidden_activation: 'gelu_pytorch_tanh',
  vocab_size: 256000,
};
const BENCH_VOCAB = 4096;
/** Timed runs per row (median); a full-size forward is seconds to minutes on the shared 2 cores. */
const REPS = Number(process.env.GEMMA_BENCH_REPS ?? 1);
/** Optional caps for a loaded machine: fewer layers (time scaled to 26) and a dtype subset. */
const MAX_LAYERS = Number(process.env.GEMMA_BENCH_LAYERS ?? 26);
const DTYPES = (process.env.GEMMA_BENCH_DTYPES ?? 'bf16,f32').split(',') as Array<'bf16' | 'f32'>;

/** xorshift32 uniform noise in [-amp, amp). */
function noise(n: number, amp: number, seed: number): Float32Array {
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

/** Random weights of the config's shapes: prefixes of one noise buffer, scaled to 1/√fan-in. */
function randomGemmaWeights(cfg: Gemma2Config): WeightSource {
  const shapes = layoutShapes(gemma2Layout(cfg));
  const biggest = Math.max(cfg.intermediateSize * cfg.hiddenSize, cfg.vocabSize * cfg.hiddenSize);
  const buf = noise(biggest, Math.sqrt(3), 17);
  return {
    keys: () => [...shapes.keys()],
    has: (key) => shapes.has(key),
    entry: (key) => ({ name: key, dtype: 'F32', shape: shapes.get(key)!, file: '<random>' }),
    load(key: string, backend: Backend, dtype?: DType): Tensor {
      const shape = shapes.get(key);
      if (!shape) throw new Error(`random weights: no Gemma weight ${key}`);
      const n = shape.reduce((a, b) => a * b, 1);
      // RMSNorm offsets near 0 (Gemma's 1 + w), projections ~ 1/√fan-in, embedding rows ~ 1.
      const scale = key.includes('norm') ? 0.05 : key.startsWith('embed') ? 0.02 : 1 / Math.sqrt(shape[shape.length - 1]);
      return backend.fromArray(
        buf.subarray(0, n).map((v) => v * scale),
        shape,
        dtype ?? 'f32',
      );
    },
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Seconds of one layer's seven projection GEMMs at L tokens (weights packed by a first call). */
function matmulFloor(backend: Backend, c: Gemma2Config, L: number, dtype: DType): number {
  const D = c.hiddenSize,
    q = c.numHeads * c.headDim,
    kv = c.numKvHeads * c.headDim,
    F = c.intermediateSize;
  // [K, N] per projection: q, k, v, o, gate, up, down
  const shapes: Array<[number, number]> = [
    [D, q],
    [D, kv],
    [D, kv],
    [q, D],
    [D, F],
    [D, F],
    [F, D],
  ];
  let total = 0;
  for (const [K, N] of shapes) {
    const x = backend.fromArray(noise(L * K, 1, 5), [L, K], dtype);
    const w = backend.fromArray(noise(N * K, 1 / Math.sqrt(K), 9), [N, K], dtype);
    try {
      backend.linear(x, w).dispose();
      const ts: number[] = [];
      for (let r = 0; r < Math.max(3, REPS); r++) {
        const t0 = process.hrtime.bigint();
        backend.linear(x, w).dispose();
        ts.push(Number(process.hrtime.bigint() - t0) / 1e9);
      }
      total += median(ts);
    } finally {
      x.dispose();
      w.dispose();
    }
  }
  return total;
}

export default async function gemmaBench(): Promise<BenchRow[]> {
  const backend = native.getBackend('cpu');
  const full = parseGemma2Config(GEMMA2_2B_CONFIG, 'gemma-2-2b (bench)');
  const tok = loadGemmaTokenizer();
  const lengthAll = tokenizePrompts(tok, ['a small red cube on a wooden table'], {}).lengthAll; // 300 + CHI
  const rows: BenchRow[] = matmulCeiling(backend, 'start');
  for (const dtype of DTYPES) {
    if (dtype !== 'bf16' && dtype !== 'f32') throw new Error(`gemma bench: GEMMA_BENCH_DTYPES has ${String(dtype)} (bf16, f32)`);
    const bytesPerLayer = (gemma2ParamCount({ ...full, numLayers: 1, vocabSize: 0 }) - full.hiddenSize) * (dtype === 'f32' ? 4 : 2);
    // Weights plus one packed copy, with 3 GB left for activations and everyone else.
    const fits = Math.floor((freemem() - 3e9) / (2 * bytesPerLayer));
    const layers = Math.max(1, Math.min(full.numLayers, MAX_LAYERS, fits));
    const cfg: Gemma2Config = { ...full, numLayers: layers, slidingLayers: full.slidingLayers.slice(0, layers), vocabSize: BENCH_VOCAB };
    const model = buildGemma2(cfg, randomGemmaWeights(cfg), backend, dtype);
    try {
      // Warm-up on a short sequence: packs every weight and settles the allocator cheaply.
      model.encode([Array.from({ length: 16 }, (_, j) => (j === 0 ? 2 : j))], [Array(16).fill(1)]).dispose();
      // What stays allocated once every weight is packed (the originals of packed linears freed).
      const residentMb = backend.memory().allocated / 1e6;
      for (const [label, L] of [
        ['uncond', 300],
        ['cond_chi', lengthAll],
      ] as const) {
        const ids = [Array.from({ length: L }, (_, j) => (j === 0 ? 2 : (j * 7919) % BENCH_VOCAB))];
        const real = label === 'uncond' ? 1 : lengthAll - 300 + 40; // BOS only / CHI + a 40-token prompt
        const mask = [Array.from({ length: L }, (_, j) => (j < real ? 1 : 0))];
        const run = (): void => model.encode(ids, mask).dispose();
        const ts: number[] = [];
        backend.resetPeak();
        native.profiler.stage(`gemma2-2b.${label}.L${L}.${dtype}`);
        for (let r = 0; r < REPS; r++) {
          const t0 = process.hrtime.bigint();
          run();
          ts.push(Number(process.hrtime.bigint() - t0) / 1e9);
        }
        const measured = median(ts);
        const seconds = measured * (full.numLayers / layers);
        const flops = gemma2Flops(full, 1, L);
        native.profiler.endStage();
        // The matmul floor: one layer's seven projections (q, k, v, o, gate, up, down as separate
        // GEMMs, whatever the model fuses) alone at this length, times 26. A fixed yardstick, so
        // forward / floor compares model-code changes (GEMM fusion included) on one scale.
        native.profiler.stage(`gemma2-2b.${label}.L${L}.${dtype}.matmul_floor`);
        const floor = matmulFloor(backend, full, L, dtype) * full.numLayers;
        native.profiler.endStage();
        rows.push({
          name: `gemma2-2b.${label}.L${L}.${dtype}`,
          metrics: {
            seconds,
            matmul_floor_s: floor,
            forward_over_floor: seconds / floor,
            tflop: flops / 1e12,
            tflops: flops / seconds / 1e12,
            tokens: L,
            layers_run: layers,
            weights_mb: (model.bytes / 1e6) * (full.numLayers / layers),
            resident_mb: residentMb * (full.numLayers / layers),
            peak_backend_mb: (backend.memory().peak / 1e6) * (full.numLayers / layers),
            load1: loadavg()[0],
          },
          notes: `random weights, vocab ${BENCH_VOCAB}, batch 1, median of ${REPS}, ${layers}/${full.numLayers} layers run (time scaled to ${full.numLayers})`,
        });
      }
    } finally {
      model.dispose();
    }
  }
  rows.push(...matmulCeiling(backend, 'end'));
  return rows;
}
