// The op profiler: every raw op has a cost model, calls are charged to the open stage with the
// FLOPs and bytes their shapes imply, and nothing is recorded while it is off.
import { afterEach, describe, expect, it } from 'vitest';
import { getBackend, formatProfile, profiler } from '../../native/index.ts';
import { raw } from '../../native/binding.ts';
import { costModelOps } from '../../native/profile.ts';

describe('op profiler', () => {
  afterEach(() => {
    profiler.enable(false);
    profiler.reset();
  });

  it('has a cost model for every raw op of the addon', () => {
    expect(Object.keys(raw().ops).sort()).toEqual(costModelOps().sort());
  });

  it('charges ops to stages with their FLOPs and bytes', () => {
    const b = getBackend('cpu');
    profiler.reset();
    profiler.enable(true);
    profiler.stage('gemm');
    const [M, N, K] = [7, 24, 40];
    const x = b.fromArray(new Float32Array(M * K).fill(0.5), [M, K]);
    const w = b.fromArray(new Float32Array(N * K).fill(0.25), [N, K]);
    b.linear(x, w).dispose();
    b.linear(x, w).dispose();
    profiler.stage('conv');
    const img = b.fromArray(new Float32Array(2 * 8 * 5 * 6).fill(1), [2, 8, 5, 6]);
    const dw = b.fromArray(new Float32Array(8 * 9).fill(0.1), [8, 1, 3, 3]);
    b.conv2d(img, dw, undefined, { padding: 1, groups: 8 }).dispose();
    b.cast(img, 'bf16').dispose();
    b.mul(img, img).dispose();
    profiler.endStage();

    const rep = profiler.report();
    const gemm = rep.find((s) => s.stage === 'gemm')!;
    const lin = gemm.rows.find((r) => r.kind === 'linear.f32')!;
    expect(lin.calls).toBe(2);
    expect(lin.flops).toBe(2 * 2 * M * N * K);
    expect(lin.bytes).toBe(2 * (M * K + N * K + M * N) * 4);
    expect(gemm.ops_ms).toBeLessThanOrEqual(gemm.wall_ms);

    const conv = rep.find((s) => s.stage === 'conv')!;
    const dwRow = conv.rows.find((r) => r.kind === 'conv2d.depthwise.f32')!;
    expect(dwRow.calls).toBe(1);
    expect(dwRow.flops).toBe(2 * 2 * 8 * 5 * 6 * 9);
    const castRow = conv.rows.find((r) => r.kind === 'cast.f32>bf16')!;
    expect(castRow.bytes).toBe(2 * 8 * 5 * 6 * (4 + 2));
    const mulRow = conv.rows.find((r) => r.kind === 'binary.mul')!;
    expect(mulRow.flops).toBe(2 * 8 * 5 * 6);
    expect(mulRow.bytes).toBe(3 * 2 * 8 * 5 * 6 * 4);
    expect(conv.rows.some((r) => r.kind.startsWith('linear'))).toBe(false);

    const text = formatProfile(rep);
    expect(text).toMatch(/profile: gemm/);
    expect(text).toMatch(/linear\.f32\s+2\s/);
    expect(text).toMatch(/conv2d\.depthwise\.f32/);
    for (const t of [x, w, img, dw]) t.dispose();
  });

  it('records nothing while off', () => {
    const b = getBackend('cpu');
    profiler.reset();
    profiler.enable(false);
    profiler.stage('off');
    const x = b.fromArray([1, 2, 3, 4], [2, 2]);
    b.linear(x, x).dispose();
    x.dispose();
    profiler.endStage();
    expect(profiler.report().flatMap((s) => s.rows)).toEqual([]);
  });
});
