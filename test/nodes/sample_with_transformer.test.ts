// sampleWithTransformer (the FlowDPMSampler loop on a transformer the caller built, used by
// bench/pipeline.bench.ts) against the node path through the model cache, on the tiny model.
import { beforeAll, describe, expect, it } from 'vitest';
import { getBackend } from '../../native/index.ts';
import { loadSanaTransformer } from '../../nodes/models/sana_dit/load.ts';
import { randn } from '../../nodes/models/noise.ts';
import { emptyLatent } from '../../nodes/sana/empty_latent.ts';
import { sampleWithTransformer, type SampleOptions } from '../../nodes/models/sample.ts';
import { sample } from '../../nodes/sana/flow_dpm_sampler.ts';
import { SanaDiT } from '../../nodes/sana/sana_dit.ts';
import type { Conditioning, SanaModelRef } from '../../nodes/sana/types.ts';
import { TINY, repoModelsDir, testServices } from './helpers.ts';

const services = testServices();

/** (1, L, D) embeddings of N(0, 1) with the first `real` tokens unmasked. */
function conditioning(seed: number, L: number, D: number, real: number): Conditioning {
  const mask = new Float32Array(L);
  mask.fill(1, 0, real);
  return { embeds: randn(seed, [1, L, D]), mask, shape: [1, L, D], text: [`seed ${seed}`] };
}

const opts: SampleOptions = { seed: 5, steps: 3, cfg: 4.5, flowShift: 0, sampler: 'dpmpp_2m', denoise: 1 };

describe('sampleWithTransformer', { timeout: 300_000 }, () => {
  let ref: SanaModelRef;
  beforeAll(async () => {
    repoModelsDir();
    const r = (await SanaDiT.run(
      { ckpt_name: TINY, dtype: 'f32', device: 'cpu' },
      {
        nodeId: '1',
        promptId: 'p',
        signal: new AbortController().signal,
        services,
        extraData: {},
        progress() {},
        sendBinaryPreview() {},
        throwIfInterrupted() {},
      },
    )) as unknown;
    ref = (Array.isArray(r) ? r : (r as { result: unknown[] }).result)[0] as SanaModelRef;
  });

  it('gives the node path its exact latents and steps, on a transformer the caller holds', async () => {
    const pos = conditioning(1, 12, ref.captionChannels, 9);
    const neg = conditioning(2, 12, ref.captionChannels, 1);
    const latent = emptyLatent(256, 256, 1);
    const viaNode: number[] = [];
    const expected = await sample(services, ref, pos, neg, latent, opts, (step) => viaNode.push(step));

    const backend = getBackend('cpu');
    const net = await loadSanaTransformer(ref.path, backend, ref.dtype);
    try {
      const steps: number[] = [];
      const got = await sampleWithTransformer(net, backend, ref, pos, neg, latent, opts, (step, total, x0, x) => {
        expect(total).toBe(3);
        expect(x0.length).toBe(x.length);
        steps.push(step);
      });
      expect(steps).toEqual([1, 2, 3]);
      expect(viaNode).toEqual(steps);
      expect(got.shape).toEqual(latent.shape);
      expect(got.samples).toEqual(expected.samples);
      // A different seed must move the result, or the comparison above proves nothing.
      const other = await sampleWithTransformer(net, backend, ref, pos, neg, latent, { ...opts, seed: 6 }, () => {});
      expect(other.samples).not.toEqual(got.samples);
    } finally {
      net.dispose();
    }
  });

  it('names the transformer when the conditioning does not fit it', async () => {
    const backend = getBackend('cpu');
    const net = await loadSanaTransformer(ref.path, backend, ref.dtype);
    try {
      const wide = conditioning(3, 12, ref.captionChannels + 8, 4);
      await expect(sampleWithTransformer(net, backend, ref, wide, wide, emptyLatent(256, 256, 1), opts, () => {}, 'bench')).rejects.toThrow(
        `bench: positive conditioning is ${ref.captionChannels + 8} wide but the transformer (${ref.numLayers} blocks) takes text embeddings of width ${ref.captionChannels}`,
      );
    } finally {
      net.dispose();
    }
  });
});
