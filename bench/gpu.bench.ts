// The CUDA backend on a real GPU: the ops at Sana-600M shapes, then one Sana-600M transformer step
// (CFG batch 2, 300 text tokens, bf16, random weights in the real shapes) at 1024².
//   npm run bench:gpu        (= npm run bench -- gpu)
// Skips with a message, returning no rows, when the 'cuda' device is unusable (no GPU, no driver,
// or an addon built without nvcc). Each row gives the time and the fraction of the H100 roofline
// floor of native/cuda/flops.ts (989 TFLOP/s dense bf16, 3.35 TB/s), so a slow kernel stands out.
import * as native from '../native/index.ts';
import type { Backend, Tensor } from '../native/api.ts';
import { H100, SANA_600M, perOpFloorSeconds, sanaStepCosts } from '../native/cuda/flops.ts';
import { parseSanaTransformerConfig } from '../nodes/models/sana_dit/config.ts';
import { expectedTransformerTensors } from '../nodes/models/sana_dit/layout.ts';
import { buildSanaTransformer } from '../nodes/models/sana_dit/model.ts';
import { median, noise, randomWeights, SANA_600M_CONFIG } from './dit.bench.ts';
import type { BenchRow } from './types.ts';

/** Seconds per call of `fn` on the device: every call's kernels finish before the clock stops. */
function timeDevice(b: Backend, fn: () => Tensor, reps: number): number {
  const probe = b.zeros([1]);
  try {
    // A download waits for everything queued before it on the backend's stream.
    const sync = (): void => void probe.toFloat32();
    fn().dispose();
    sync();
    const ts: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = process.hrtime.bigint();
      fn().dispose();
      sync();
      ts.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    return median(ts);
  } finally {
    probe.dispose();
  }
}

interface OpCase {
  name: string;
  flops: number;
  bytes: number;
  make: (b: Backend) => { run: () => Tensor; inputs: Tensor[] };
}

function opCases(): OpCase[] {
  const T = 2048,
    D = 1152,
    F = 2880,
    L = 300;
  const lin = (name: string, M: number, K: number, N: number): OpCase => ({
    name,
    flops: 2 * M * K * N,
    bytes: 2 * (M * K + K * N + M * N),
    make: (b) => {
      const x = b.fromArray(noise(M * K, 1, 5), [M, K], 'bf16'),
        w = b.fromArray(noise(N * K, 0.05, 9), [N, K], 'bf16');
      const bias = b.fromArray(noise(N, 0.1, 3), [N], 'f32');
      return { run: () => b.linear(x, w, bias), inputs: [x, w, bias] };
    },
  });
  return [
    lin('linear attn1.qkv bf16 (2048x1152 · 3456x1152ᵀ)', T, D, 3 * D),
    lin('linear ff.inverted bf16 (2048x1152 · 5760x1152ᵀ)', T, D, 2 * F),
    lin('linear ff.point bf16 (2048x2880 · 1152x2880ᵀ)', T, F, D),
    lin('linear attn1.qkv bf16 at 4096² (32768 tokens)', 16 * T, D, 3 * D),
    {
      name: 'attention cross bf16 (2x16 heads, 1024 x 300, d 72, key bias)',
      flops: 4 * 2 * 16 * 1024 * L * 72,
      bytes: 2 * (2 * 2 * 16 * 1024 * 72 + 2 * 2 * 16 * L * 72),
      make: (b) => {
        const q = b.fromArray(noise(2 * 16 * 1024 * 72, 1, 1), [2, 16, 1024, 72], 'bf16');
        const k = b.fromArray(noise(2 * 16 * L * 72, 1, 2), [2, 16, L, 72], 'bf16');
        const v = b.fromArray(noise(2 * 16 * L * 72, 1, 3), [2, 16, L, 72], 'bf16');
        const bias = b.zeros([2, L]);
        return { run: () => b.attention(q, k, v, { scale: 72 ** -0.5, bias }), inputs: [q, k, v, bias] };
      },
    },
    ...[1024, 16384].map((N): OpCase => ({
      name: `linearAttention f32 (2x36 heads, ${N} tokens, d 32)`,
      flops: 2 * 2 * 2 * 36 * N * 32 * 33,
      bytes: 4 * 4 * 2 * 36 * N * 32,
      make: (b) => {
        const mk = (s: number): Tensor => b.fromArray(noise(2 * 36 * N * 32, 1, s), [2, 36, N, 32], 'f32');
        const q = mk(1),
          k = mk(2),
          v = mk(3);
        return { run: () => b.linearAttention(q, k, v, 1e-15), inputs: [q, k, v] };
      },
    })),
    {
      name: 'conv2d depthwise 3x3 bf16 (2, 5760, 32, 32)',
      flops: 2 * 2 * 5760 * 1024 * 9,
      bytes: 2 * 2 * 2 * 5760 * 1024,
      make: (b) => {
        const x = b.fromArray(noise(2 * 5760 * 1024, 1, 4), [2, 5760, 32, 32], 'bf16');
        const w = b.fromArray(noise(5760 * 9, 0.3, 6), [5760, 1, 3, 3], 'bf16');
        const bias = b.zeros([5760]);
        return { run: () => b.conv2d(x, w, bias, { padding: 1, groups: 5760 }), inputs: [x, w, bias] };
      },
    },
    {
      name: 'layernorm bf16 (2048, 1152)',
      flops: 7 * T * D,
      bytes: 2 * 2 * T * D,
      make: (b) => {
        const x = b.fromArray(noise(T * D, 2, 8), [T, D], 'bf16');
        return { run: () => b.layernorm(x, undefined, undefined, 1e-6), inputs: [x] };
      },
    },
    {
      name: 'modulate bf16 (2, 1024, 1152)',
      flops: 2 * T * D,
      bytes: 2 * 2 * T * D,
      make: (b) => {
        const x = b.fromArray(noise(T * D, 1, 8), [2, 1024, D], 'bf16');
        const sh = b.fromArray(noise(2 * D, 1, 9), [2, 1, D], 'bf16'),
          sc = b.fromArray(noise(2 * D, 1, 10), [2, 1, D], 'bf16');
        return { run: () => b.modulate(x, sh, sc), inputs: [x, sh, sc] };
      },
    },
  ];
}

export default async function gpuBench(): Promise<BenchRow[]> {
  const cuda = native.devices().find((d) => d.name === 'cuda');
  if (!cuda || !cuda.available) {
    console.log(`[bench:gpu] skipped: ${cuda ? cuda.reason : "this addon was built without the 'cuda' backend (nvcc not found)"}`);
    return [];
  }
  const b = native.getBackend('cuda');
  const gpu = String(cuda.info.gpu ?? 'GPU');
  const rows: BenchRow[] = [];
  for (const c of opCases()) {
    const { run, inputs } = c.make(b);
    try {
      const t = timeDevice(b, run, 10);
      const floor = Math.max(c.flops / H100.flops, c.bytes / H100.bytesPerS);
      rows.push({
        name: `cuda ${c.name}`,
        metrics: { ms: t * 1e3, tflops: c.flops / t / 1e12, gb_per_s: c.bytes / t / 1e9, of_h100_floor: floor / t },
        units: { gb_per_s: 'GB/s', of_h100_floor: '×' },
        notes: gpu,
      });
    } finally {
      for (const x of inputs) x.dispose();
    }
  }

  // One Sana-600M step at 1024² (the unit of the published latency: 20 of them plus text encoder
  // and decoder in 0.9 s on an A100).
  const cfg = parseSanaTransformerConfig(SANA_600M_CONFIG, 'Sana_600M (bench:gpu)');
  const model = buildSanaTransformer(cfg, randomWeights(expectedTransformerTensors(cfg)), b, 'bf16', 'random weights');
  try {
    const B = 2,
      L = 300,
      h = 32;
    const x = noise(B * 32 * h * h, 1, 3),
      text = noise(B * L * cfg.captionChannels, 1, 11);
    const mask = new Float32Array(B * L);
    for (let i = 0; i < B; i++) for (let j = 0; j < (i === 0 ? 1 : 40); j++) mask[i * L + j] = 1;
    const t = timeDevice(b, () => model.forward({ data: x, shape: [B, 32, h, h] }, [500, 500], { data: text, shape: [B, L, cfg.captionChannels] }, mask), 5);
    const floor = perOpFloorSeconds(sanaStepCosts(SANA_600M, { image: 1024 }), H100);
    rows.push({
      name: 'cuda Sana-600M step 1024² bf16 (CFG batch 2)',
      metrics: { ms: t * 1e3, steps20_s: 20 * t, of_h100_floor: floor / t },
      units: { steps20_s: 's', of_h100_floor: '×' },
      notes: `${gpu}; floor = unfused per-op roofline ${(floor * 1e3).toFixed(2)} ms`,
    });
  } finally {
    model.dispose();
  }
  return rows;
}
