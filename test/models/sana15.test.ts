// SANA 1.5 and Sana-Sprint transformer options (qk_norm "rms_norm_across_heads", guidance_embeds):
// config parsing, expected tensors and parameter counts of the published configs, and the golden
// fixtures shared/fixtures/golden/{sana15,sprint}/transformer with every captured module output
// compared (f32 within 1e-4, bf16 within a measured bound).
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as native from '../../native/index.ts';
import type { DType } from '../../native/api.ts';
import { F32_TOL, runTransformerGolden, TRANSFORMER_BF16_TOL, type GoldenCheck, type Tolerance } from '../../nodes/models/golden/transformer.ts';
import { parseSanaTransformerConfig, readTransformerConfig } from '../../nodes/models/sana_dit/config.ts';
import { expectedTransformerTensors, validateTransformerTensors } from '../../nodes/models/sana_dit/layout.ts';
import { loadSanaTransformer } from '../../nodes/models/sana_dit/load.ts';
import { GOLDEN } from '../fixtures.ts';

const HEAVY_MS = 300_000;
const backend = native.getBackend('cpu');

/**
 * bf16 (weights and activations rounded to 8 mantissa bits, two blocks): the Sana 1.0 DiT's bound.
 * Measured on the CPU backend (printed by the tests): sana15 worst |Δ| 0.051, worst ratio 0.38;
 * sprint worst |Δ| 0.092, worst ratio 0.59 (f32: |Δ| ≤ 7.9e-6 and 3.8e-6).
 */
const BF16_TOL: Tolerance = TRANSFORMER_BF16_TOL;

// diffusers scripts/convert_sana_to_diffusers.py: transformer_kwargs + model_kwargs per model type.
const BASE = {
  _class_name: 'SanaTransformer2DModel', in_channels: 32, out_channels: 32, caption_channels: 2304, mlp_ratio: 2.5,
  attention_bias: false, sample_size: 32, patch_size: 1, norm_elementwise_affine: false, norm_eps: 1e-6, interpolation_scale: null,
};
const W600 = { num_attention_heads: 36, attention_head_dim: 32, num_cross_attention_heads: 16, cross_attention_head_dim: 72, cross_attention_dim: 1152, num_layers: 28 };
const W1600 = { num_attention_heads: 70, attention_head_dim: 32, num_cross_attention_heads: 20, cross_attention_head_dim: 112, cross_attention_dim: 2240, num_layers: 20 };
const QK = { qk_norm: 'rms_norm_across_heads' };
const SPRINT = { ...QK, guidance_embeds: true, guidance_embeds_scale: 0.1 };

const BLOCK_1600M = 77_920_640;

const count = (m: Map<string, number[]>): number => [...m.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);

describe('SANA 1.5 / Sprint config and tensors', () => {
  it('reads qk_norm, guidance_embeds and guidance_embeds_scale', () => {
    const v15 = readTransformerConfig(resolve(GOLDEN, 'sana15/transformer'));
    expect([v15.qkNorm, v15.guidanceEmbeds]).toEqual(['rms_norm_across_heads', false]);
    const sp = readTransformerConfig(resolve(GOLDEN, 'sprint/transformer'));
    expect([sp.qkNorm, sp.guidanceEmbeds, sp.guidanceEmbedsScale]).toEqual(['rms_norm_across_heads', true, 0.1]);
    const v10 = parseSanaTransformerConfig({ ...BASE, ...W600 });
    expect([v10.qkNorm, v10.guidanceEmbeds]).toEqual([null, false]);
  });

  it('the fixture checkpoints hold exactly the expected tensors', () => {
    for (const sub of ['sana15/transformer', 'sprint/transformer']) {
      const dir = resolve(GOLDEN, sub);
      const ck = native.openSafetensors(resolve(dir, 'model.safetensors'));
      try {
        const cfg = readTransformerConfig(dir);
        expect(() => validateTransformerTensors(cfg, ck, sub)).not.toThrow();
        expect(new Set(ck.keys())).toEqual(new Set(expectedTransformerTensors(cfg).keys()));
        // a SANA 1.5 checkpoint under a 1.0 config, and a Sprint checkpoint without guidance_embeds
        expect(() => validateTransformerTensors({ ...cfg, qkNorm: null, guidanceEmbeds: false }, ck, sub)).toThrow(/SANA-1\.5 checkpoint, but config\.json has no qk_norm/);
        if (cfg.guidanceEmbeds) {
          expect(() => validateTransformerTensors({ ...cfg, guidanceEmbeds: false }, ck, sub)).toThrow(/Sana-Sprint checkpoint, but config\.json has no guidance_embeds/);
        }
      } finally {
        ck.close();
      }
    }
  });

  // Each count is the Sana 1.0 count of the same width (spec Appendix B: 591,747,872 / 1,604,462,752)
  // plus 4·D per block for the q/k norms (D = cross width here) and, for Sprint, a second
  // 256 → D → D MLP: 256·D + D + D² + D.
  it.each([
    ['SANA1.5 1.6B (SanaMS1.5_1600M_P1_D20)', { ...BASE, ...W1600, ...QK }, 396 + 80, 1_604_462_752 + 20 * 4 * 2240],
    ['SANA1.5 4.8B (SanaMS1.5_4800M_P1_D60)', { ...BASE, ...W1600, num_layers: 60, ...QK }, 16 + 60 * 23, 1_604_462_752 + 40 * BLOCK_1600M + 60 * 4 * 2240],
    ['Sana-Sprint 0.6B (SanaSprint_600M_P1_D28)', { ...BASE, ...W600, ...SPRINT }, 548 + 112 + 4, 591_747_872 + 28 * 4 * 1152 + 256 * 1152 + 1152 + 1152 * 1152 + 1152],
    ['Sana-Sprint 1.6B (SanaSprint_1600M_P1_D20)', { ...BASE, ...W1600, ...SPRINT }, 396 + 80 + 4, 1_604_462_752 + 20 * 4 * 2240 + 256 * 2240 + 2240 + 2240 * 2240 + 2240],
  ])('%s: tensor and parameter counts', (_name, raw, tensors, params) => {
    const m = expectedTransformerTensors(parseSanaTransformerConfig(raw));
    expect(m.size).toBe(tensors);
    expect(count(m)).toBe(params);
  });

  it('a 1600M-wide block holds 77,920,640 parameters (the 4.8B model is the 1.6B one with 40 more)', () => {
    // attn1 4D² + D, attn2 4D² + 4D, GLUMBConv 2FD + 2F + 18F + 2F + FD, scale_shift_table 6D (D 2240, F 5600)
    const D = 2240, F = 5600;
    expect(4 * D * D + D + 4 * D * D + 4 * D + 2 * F * D + 2 * F + 18 * F + 2 * F + F * D + 6 * D).toBe(BLOCK_1600M);
    const per = (n: number): number => count(expectedTransformerTensors(parseSanaTransformerConfig({ ...BASE, ...W1600, num_layers: n })));
    expect(per(21) - per(20)).toBe(BLOCK_1600M);
  });
});

/** The golden runner's transformer stage on a family folder: every io file, every `intermediate.*`. */
async function runGolden(sub: string, dtype: DType, tol: Tolerance): Promise<GoldenCheck[]> {
  const r = await runTransformerGolden({ backend, native, dtype, dir: resolve(GOLDEN, sub.split('/')[0]!) });
  expect(r.tolerance).toEqual(tol);
  return r.checks;
}

const summary = (label: string, checks: GoldenCheck[]): string =>
  `${label}: ${checks.length} checks, worst |Δ| ${Math.max(...checks.map((c) => c.maxAbs)).toExponential(2)}, worst ratio ${Math.max(...checks.map((c) => c.worst)).toFixed(3)}`;

describe('golden: sana15/transformer and sprint/transformer', () => {
  for (const sub of ['sana15/transformer', 'sprint/transformer']) {
    it(`${sub} f32: output and every intermediate within 1e-4`, async () => {
      const checks = await runGolden(sub, 'f32', F32_TOL);
      console.log(summary(`${sub} f32`, checks));
      expect(checks.filter((c) => !c.ok)).toEqual([]);
      // 9 captured module outputs + output
      expect(checks.length).toBe(10);
    }, HEAVY_MS);

    it(`${sub} bf16: within the stated bound`, async () => {
      const checks = await runGolden(sub, 'bf16', BF16_TOL);
      console.log(summary(`${sub} bf16`, checks));
      expect(checks.filter((c) => !c.ok)).toEqual([]);
      expect(checks.length).toBe(10);
    }, HEAVY_MS);
  }

  it('Sprint refuses a forward without guidance; a 1.0-style model refuses one with it', async () => {
    const sp = await loadSanaTransformer(resolve(GOLDEN, 'sprint/transformer'), backend, 'f32', { native });
    const v15 = await loadSanaTransformer(resolve(GOLDEN, 'sana15/transformer'), backend, 'f32', { native });
    try {
      const x = { data: new Float32Array(8 * 2 * 2), shape: [1, 8, 2, 2] };
      const y = { data: new Float32Array(3 * 24), shape: [1, 3, 24] };
      const m = new Float32Array([1, 1, 0]);
      expect(() => sp.forward(x, [0.5], y, m)).toThrow(/guidance_embeds = true.*pass opts\.guidance/);
      expect(() => v15.forward(x, [500], y, m, { guidance: [0.45] })).toThrow(/no guidance embedding/);
      const out = sp.forward(x, [0.5], y, m, { guidance: [0.45] });
      expect(out.shape).toEqual([1, 8, 2, 2]);
      out.dispose();
    } finally {
      sp.dispose();
      v15.dispose();
    }
  }, HEAVY_MS);
});
