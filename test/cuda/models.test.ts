// Whole models on the CUDA device under test ('cuda-emu' in CI, 'cuda' with `npm run test:gpu`):
// - the golden fixtures of the reference implementation (diffusers/transformers) for the Sana
//   transformer, the DC-AE decoder and Gemma-2, stage by stage, as the CPU backend is checked in
//   test/models (the whole-pipeline fixture on a GPU only);
// - on a real GPU only: a Sana-600M-shaped transformer (28 blocks, random weights) at 512², the
//   device against the CPU backend (too large for the emulation).
import { describe, expect, it } from 'vitest';
import * as native from '../../native/index.ts';
import type { Tensor } from '../../native/api.ts';
import { runDcaeGolden } from '../../nodes/models/golden/dcae.ts';
import { runGolden } from '../../nodes/models/golden/run.ts';
import { runTransformerGolden } from '../../nodes/models/golden/transformer.ts';
import { parseSanaTransformerConfig } from '../../nodes/models/sana_dit/config.ts';
import { expectedTransformerTensors } from '../../nodes/models/sana_dit/layout.ts';
import { buildSanaTransformer } from '../../nodes/models/sana_dit/model.ts';
import { noise, randomWeights, SANA_600M_CONFIG } from '../../bench/dit.bench.ts';
import { deviceUnderTest } from './device.ts';
import { GOLDEN } from '../fixtures.ts';

const { device, backend: dev, cpu, skipReason } = deviceUnderTest();

describe.skipIf(!dev)(`models on '${device}'${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    it(`Sana transformer golden fixtures, ${dtype}`, async () => {
      const r = await runTransformerGolden({ backend: dev!, native, dtype, dir: GOLDEN });
      expect(r.checks.filter((c) => !c.ok)).toEqual([]);
      expect(r.checks.length).toBeGreaterThan(10);
    }, 600_000);
  }

  for (const dtype of ['f32', 'bf16'] as const) {
    it(`Gemma-2 text encoder golden fixtures (softcap, GQA, sliding window, RoPE), ${dtype}`, async () => {
      const r = await runGolden({ root: GOLDEN, dtype, device, only: ['gemma2'] });
      expect(r.stages.map((s) => s.error ?? s.comparisons.filter((c) => !c.ok).map((c) => c.name))).toEqual([[]]);
      expect(r.ok).toBe(true);
    }, 600_000);
  }

  // The whole text-to-image pipeline fixture; on the emulation it takes ~25 s on this 2-core box,
  // and its parts are covered above, so CI runs it on a GPU only.
  it.skipIf(device !== 'cuda')(
    'whole pipeline golden fixture, f32',
    async () => {
      const r = await runGolden({ root: GOLDEN, dtype: 'f32', device, only: ['pipeline'] });
      expect(r.stages.map((s) => s.error ?? s.comparisons.filter((c) => !c.ok).map((c) => c.name))).toEqual([[]]);
      expect(r.ok).toBe(true);
    },
    600_000,
  );

  it('DC-AE decoder golden fixtures, f32', async () => {
    const r = await runDcaeGolden({ backend: dev!, native, dtype: 'f32', dir: GOLDEN });
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
  }, 600_000);

  it.skipIf(device !== 'cuda')(
    'Sana-600M (28 blocks, random weights) at 512², bf16: device vs CPU',
    () => {
      const cfg = parseSanaTransformerConfig(SANA_600M_CONFIG, 'Sana_600M (test:gpu)');
      const src = randomWeights(expectedTransformerTensors(cfg));
      const B = 2,
        L = 300,
        h = 16;
      const x = noise(B * 32 * h * h, 1, 3),
        text = noise(B * L * cfg.captionChannels, 1, 11);
      const mask = new Float32Array(B * L);
      for (let b = 0; b < B; b++) for (let j = 0; j < (b === 0 ? 1 : 40); j++) mask[b * L + j] = 1;
      const run = (bk: typeof cpu): Float32Array => {
        const model = buildSanaTransformer(cfg, src, bk, 'bf16', 'random weights');
        try {
          const out: Tensor = model.forward({ data: x, shape: [B, 32, h, h] }, [500, 500], { data: text, shape: [B, L, cfg.captionChannels] }, mask);
          try {
            return out.toFloat32();
          } finally {
            out.dispose();
          }
        } finally {
          model.dispose();
        }
      };
      const ref = run(cpu),
        got = run(dev!);
      let num = 0,
        den = 0;
      for (let i = 0; i < ref.length; i++) {
        num += (got[i]! - ref[i]!) ** 2;
        den += ref[i]! ** 2;
      }
      const rel = Math.sqrt(num / den);
      console.log(`[test:gpu] Sana-600M 512² bf16: relative RMS difference device vs CPU = ${rel.toExponential(2)}`);
      expect(rel).toBeLessThan(3e-2);
    },
    600_000,
  );
});
