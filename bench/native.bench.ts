// Native CPU backend throughput: matmul (linear) on Sana's shapes in f32 and bf16, as GFLOP/s
// and as a fraction of the fp32 FMA peak measured in the same run; the same f32 matmul through
// onnxruntime-node as a peer (ONNX model bytes built by hand); 3×3 and depthwise conv.
//   node --import tsx bench/native.bench.ts        (or through bench/run.ts)
import { performance } from 'node:perf_hooks';
import { buildInfo, cpuThreads, fmaPeakGflops, getBackend } from '../native/index.ts';
import type { Backend, DType, Tensor } from '../native/api.ts';
import type { BenchMeasurement } from './types.ts';

type NativeBenchRow = BenchMeasurement;

/** Best wall time of `fn` (seconds) over at least `minReps` runs and about `budget` seconds. */
async function best(fn: () => void | Promise<void>, minReps = 3, budget = 0.5): Promise<number> {
  await fn(); // warm-up: weight packing, primitive creation
  let bestT = Infinity,
    spent = 0,
    reps = 0;
  while (reps < minReps || (spent < budget && reps < 20)) {
    const t0 = performance.now();
    await fn();
    const dt = (performance.now() - t0) / 1e3;
    bestT = Math.min(bestT, dt);
    spent += dt;
    reps++;
  }
  return bestT;
}

function randomTensor(b: Backend, shape: number[], dt: DType, seed: number): Tensor {
  const n = shape.reduce((a, c) => a * c, 1);
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    a[i] = (s / 4294967296 - 0.5) * 0.1;
  }
  return b.fromArray(a, shape, dt);
}

// --- ONNX MatMul model as raw protobuf bytes -------------------------------------------------
function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v) byte |= 0x80;
    out.push(byte);
  } while (v);
  return out;
}
const key = (field: number, wire: number): number[] => varint((field << 3) | wire);
const bytesField = (field: number, data: Uint8Array | number[]): number[] => [...key(field, 2), ...varint(data.length), ...data];
const strField = (field: number, s: string): number[] => bytesField(field, [...Buffer.from(s, 'utf8')]);
const intField = (field: number, n: number): number[] => [...key(field, 0), ...varint(n)];
function valueInfo(name: string, dims: number[]): number[] {
  const shape = dims.flatMap((d) => bytesField(1, intField(1, d))); // TensorShapeProto.dim
  const tensorType = [...intField(1, 1), ...bytesField(2, shape)]; // elem_type FLOAT, shape
  return [...strField(1, name), ...bytesField(2, bytesField(1, tensorType))]; // name, type.tensor_type
}
/** Y (M, N) = A (M, K) · B (K, N), B a constant initializer. */
export function onnxMatMulModel(M: number, K: number, N: number, weights: Float32Array): Uint8Array {
  const node = [...strField(1, 'A'), ...strField(1, 'B'), ...strField(2, 'Y'), ...strField(4, 'MatMul')];
  const init = [
    ...intField(1, K),
    ...intField(1, N),
    ...intField(2, 1),
    ...strField(8, 'B'),
    ...bytesField(9, new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength)),
  ];
  const graph = [
    ...bytesField(1, node),
    ...strField(2, 'mm'),
    ...bytesField(5, init),
    ...bytesField(11, valueInfo('A', [M, K])),
    ...bytesField(12, valueInfo('Y', [M, N])),
  ];
  const opset = [...strField(1, ''), ...intField(2, 17)];
  return Uint8Array.from([...intField(1, 8), ...bytesField(8, opset), ...bytesField(7, graph)]);
}

async function onnxPeer(rows: NativeBenchRow[], shapes: Array<[number, number, number]>, peak: number, threads: number): Promise<void> {
  let ort: typeof import('onnxruntime-node');
  try {
    ort = await import('onnxruntime-node');
  } catch (e) {
    rows.push({ name: 'onnxruntime.matmul', metric: 'skipped', value: 0, unit: '', notes: `onnxruntime-node not loadable: ${(e as Error).message}` });
    return;
  }
  for (const [M, K, N] of shapes) {
    const w = new Float32Array(K * N).map((_, i) => ((i * 2654435761) % 1000) / 1e4 - 0.05);
    const session = await ort.InferenceSession.create(onnxMatMulModel(M, K, N, w), { intraOpNumThreads: threads, interOpNumThreads: 1 });
    const a = new ort.Tensor('float32', new Float32Array(M * K).fill(0.01), [M, K]);
    const t = await best(async () => {
      await session.run({ A: a });
    });
    const gf = (2 * M * K * N) / t / 1e9;
    rows.push({
      name: `onnxruntime.matmul.f32.${M}x${K}x${N}`,
      metric: 'gflops',
      value: gf,
      unit: 'GFLOP/s',
      notes: `${((gf / peak) * 100).toFixed(0)}% of fp32 FMA peak`,
    });
    await session.release();
  }
}

export default async function nativeBench(): Promise<NativeBenchRow[]> {
  const b = getBackend('cpu');
  const info = buildInfo();
  const threads = cpuThreads();
  const rows: NativeBenchRow[] = [];
  const peak = fmaPeakGflops(300);
  rows.push({ name: 'cpu.fma_peak.f32', metric: 'gflops', value: peak, unit: 'GFLOP/s', notes: `${threads} threads, ISA ${info.isa}, GEMM ${info.gemm}` });

  // Sana 600M/1.6B linear shapes: q/k/v/out 1152→1152, FFN 1152→2880 and 2880→1152, caption 2304→1152.
  const kn: Array<[number, number]> = [
    [1152, 1152],
    [1152, 2880],
    [2880, 1152],
    [2304, 1152],
  ];
  for (const dt of ['f32', 'bf16'] as const) {
    for (const T of [256, 1024, 4096]) {
      for (const [K, N] of kn) {
        const x = randomTensor(b, [T, K], dt, 1),
          w = randomTensor(b, [N, K], dt, 2);
        const t = await best(() => {
          b.linear(x, w).dispose();
        });
        const gf = (2 * T * K * N) / t / 1e9;
        rows.push({
          name: `linear.${dt}.${T}x${K}->${N}`,
          metric: 'gflops',
          value: gf,
          unit: 'GFLOP/s',
          notes: `${((gf / peak) * 100).toFixed(0)}% of fp32 FMA peak, ${(t * 1e3).toFixed(2)} ms`,
        });
        x.dispose();
        w.dispose();
      }
    }
  }
  await onnxPeer(
    rows,
    [
      [1024, 1152, 1152],
      [1024, 1152, 2880],
      [4096, 1152, 2880],
    ],
    peak,
    threads,
  );

  // DC-AE style 3×3 conv and Sana GLUMBConv's depthwise 3×3 (5760 channels at 32×32 tokens).
  const convs: Array<{ name: string; B: number; Cin: number; Cout: number; H: number; groups: number }> = [
    { name: 'conv3x3.512c.64x64', B: 1, Cin: 512, Cout: 512, H: 64, groups: 1 },
    { name: 'conv3x3.128c.256x256', B: 1, Cin: 128, Cout: 128, H: 256, groups: 1 },
    { name: 'dwconv3x3.5760c.32x32', B: 1, Cin: 5760, Cout: 5760, H: 32, groups: 5760 },
  ];
  for (const dt of ['f32', 'bf16'] as const) {
    for (const c of convs) {
      const x = randomTensor(b, [c.B, c.Cin, c.H, c.H], dt, 3),
        w = randomTensor(b, [c.Cout, c.Cin / c.groups, 3, 3], dt, 4);
      const t = await best(
        () => {
          b.conv2d(x, w, undefined, { padding: 1, groups: c.groups }).dispose();
        },
        2,
        0.5,
      );
      const flops = 2 * c.B * c.Cout * (c.Cin / c.groups) * 9 * c.H * c.H;
      rows.push({ name: `${c.name}.${dt}`, metric: 'gflops', value: flops / t / 1e9, unit: 'GFLOP/s', notes: `${(t * 1e3).toFixed(2)} ms` });
      x.dispose();
      w.dispose();
    }
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await nativeBench();
  for (const r of rows) console.log(`${r.name.padEnd(34)} ${r.value.toFixed(1).padStart(9)} ${r.unit.padEnd(8)} ${r.notes ?? ''}`);
}
