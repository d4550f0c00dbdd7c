// The on-paper cost model of native/cuda/flops.ts: parameter counts must match the checkpoints
// exactly (spec Appendix B, and the tiny golden transformer's safetensors), so the FLOP and byte
// counts built from the same dims count every layer.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  H100,
  SANA_1600M,
  SANA_600M,
  floorSeconds,
  perOpFloorSeconds,
  sanaDimsFromConfig,
  sanaParamCount,
  sanaStepCosts,
  summarize,
} from '../../native/cuda/flops.ts';
import { golden } from '../fixtures.ts';

function safetensorsNumel(path: string): number {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { shape?: number[] }>;
  let total = 0;
  for (const [k, v] of Object.entries(header)) if (k !== '__metadata__') total += (v.shape ?? []).reduce((a, b) => a * b, 1);
  return total;
}

describe('Sana cost model', () => {
  it('counts exactly the published parameters (spec Appendix B)', () => {
    expect(sanaParamCount(SANA_600M)).toBe(591_747_872);
    expect(sanaParamCount(SANA_1600M)).toBe(1_604_462_752);
  });

  it('reads dims from a diffusers config and matches the tiny golden checkpoint', () => {
    const cfg = JSON.parse(readFileSync(golden('transformer', 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(sanaParamCount(sanaDimsFromConfig(cfg))).toBe(safetensorsNumel(golden('transformer', 'model.safetensors')));
    expect(() => sanaDimsFromConfig({ ...cfg, num_layers: undefined })).toThrow(/num_layers/);
  });

  it('scales the image-token GEMMs by the token count', () => {
    const imageGemm = (image: number) =>
      sanaStepCosts(SANA_600M, { image })
        .filter((o) => o.kind === 'gemm' && !/caption|time_embed|attn2 to_k\/to_v/.test(o.name))
        .reduce((s, o) => s + o.flops * o.count, 0);
    expect(imageGemm(4096) / imageGemm(1024)).toBeCloseTo(16, 6);
    // The per-block weights that touch image tokens (all but attn2 to_k/to_v and the tiny depthwise
    // kernel) cost 2 flops per weight per token, 2 x 1024 tokens in the CFG batch.
    const { D, F, layers } = SANA_600M;
    const imageWeights = layers * (4 * D * D + 2 * D * D + 2 * D * F + F * D);
    const s = summarize(sanaStepCosts(SANA_600M, { image: 1024 }), SANA_600M);
    expect(imageGemm(1024) / (2 * 2048 * imageWeights)).toBeCloseTo(1, 2);
    expect(s.flops).toBeGreaterThan(s.gemmFlops + s.attentionFlops);
  });

  it('gives a floor no lower than compute or traffic alone', () => {
    const ops = sanaStepCosts(SANA_1600M, { image: 4096 });
    const s = summarize(ops, SANA_1600M);
    const f = floorSeconds(s, H100);
    expect(f.floor).toBe(Math.max(f.compute, f.memory));
    expect(perOpFloorSeconds(ops, H100)).toBeGreaterThanOrEqual(f.floor);
    expect(() => sanaStepCosts(SANA_600M, { image: 1000 })).toThrow(/multiple of 32/);
  });
});
