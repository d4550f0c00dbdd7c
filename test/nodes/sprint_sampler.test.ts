// The Sana-Sprint sampler node on the shipped tiny Sprint pipeline: the node path (model cache,
// text upload, progress) gives exactly the model-level loop of nodes/models/scm_scheduler.ts
// (itself golden-tested against diffusers' SanaSprintPipeline), img2img follows
// SanaSprintImg2ImgPipeline's strength rule, and the wrong model / sampler pairs are refused.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { NodeContext } from '../../engine/index.ts';
import { getBackend } from '../../native/index.ts';
import { randn } from '../../nodes/models/noise.ts';
import { loadSanaTransformer } from '../../nodes/models/sana_dit/load.ts';
import { readScmSchedulerConfig, sampleScm, scmStartStep } from '../../nodes/models/scm_scheduler.ts';
import { emptyLatent } from '../../nodes/sana/empty_latent.ts';
import { sample } from '../../nodes/sana/flow_dpm_sampler.ts';
import { sanaModelRef } from '../../nodes/sana/sana_dit.ts';
import { ScmModelSampling } from '../../nodes/sana/scm_model_sampling.ts';
import { sprintSampleWithTransformer, SPRINT_DEFAULTS, type SprintOptions } from '../../nodes/models/sample.ts';
import { sprintSample } from '../../nodes/sana/scm_sampler.ts';
import type { Conditioning, Latent, SanaModelRef } from '../../nodes/sana/types.ts';
import { makeTinySprintModel } from '../../scripts/make-tiny-models.ts';
import { REPO, TINY, TINY_SPRINT, repoModelsDir, testServices } from './helpers.ts';

const services = testServices();

function conditioning(seed: number, L: number, D: number, real: number): Conditioning {
  const mask = new Float32Array(L);
  mask.fill(1, 0, real);
  return { embeds: randn(seed, [1, L, D]), mask, shape: [1, L, D], text: [`seed ${seed}`] };
}

const opts: SprintOptions = { seed: 7n, steps: 2, guidance: 4.5, maxTimesteps: SPRINT_DEFAULTS.maxTimesteps, intermediateTimesteps: 1.3, denoise: 1 };

describe('SanaSprintSampler', { timeout: 300_000 }, () => {
  let ref: SanaModelRef;
  let flowRef: SanaModelRef;
  let pos: Conditioning;
  beforeAll(async () => {
    repoModelsDir();
    ref = (await sanaModelRef(services, TINY_SPRINT, 'f32', 'cpu', 'test')).ref;
    flowRef = (await sanaModelRef(services, TINY, 'f32', 'cpu', 'test')).ref;
    pos = conditioning(1, 12, ref.captionChannels, 9);
  });

  it('ships the tiny Sprint pipeline in the diffusers layout', () => {
    const dir = path.join(repoModelsDir(), TINY_SPRINT);
    const idx = JSON.parse(fs.readFileSync(path.join(dir, 'model_index.json'), 'utf8'));
    expect(idx._class_name).toBe('SanaSprintPipeline');
    expect(idx.scheduler).toEqual(['diffusers', 'SCMScheduler']);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'transformer', 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ guidance_embeds: true, guidance_embeds_scale: 0.1, qk_norm: 'rms_norm_across_heads', sample_size: 32 });
    expect(readScmSchedulerConfig(path.join(dir, 'scheduler'))).toEqual({ numTrainTimesteps: 1000, predictionType: 'trigflow', sigmaData: 0.5 });
    for (const f of ['text_encoder/model.safetensors', 'tokenizer/tokenizer.json', 'vae/diffusion_pytorch_model.safetensors'])
      expect(fs.existsSync(path.join(dir, f)), f).toBe(true);
    expect(ref).toMatchObject({ guidanceEmbeds: true, guidanceEmbedsScale: 0.1, sampleSize: 32 });
    // Idempotent: a second run finds its stamp and writes nothing.
    expect(makeTinySprintModel(path.join(REPO, 'models')).generated).toBe(false);
  });

  it('gives the model-level SCM loop its exact latents, one progress call per step', async () => {
    const latent = emptyLatent(256, 192, 1);
    const seen: Array<[number, number]> = [];
    const got = await sprintSample(services, ref, pos, latent, opts, (step, total, x0) => {
      expect(x0.length).toBe(latent.samples.length);
      seen.push([step, total]);
    });
    expect(seen).toEqual([
      [1, 2],
      [2, 2],
    ]);
    expect(got.shape).toEqual(latent.shape);

    const backend = getBackend('cpu');
    const net = await loadSanaTransformer(ref.path, backend, 'f32');
    try {
      const want = await sampleScm(
        (input, s, g) => {
          const out = net.forward({ data: input, shape: latent.shape }, [s], { data: pos.embeds, shape: pos.shape }, pos.mask, { guidance: [g] });
          try {
            return out.toFloat32();
          } finally {
            out.dispose();
          }
        },
        readScmSchedulerConfig(path.join(path.dirname(ref.path), 'scheduler')),
        { shape: latent.shape, steps: 2, seed: 7n, guidanceScale: 4.5, guidanceEmbedsScale: 0.1, maxTimesteps: 1.5708, intermediateTimesteps: 1.3 },
      );
      expect(got.samples).toEqual(want.latents);
      const held = await sprintSampleWithTransformer(net, backend, ref, pos, latent, opts, () => {});
      expect(held.samples).toEqual(want.latents);
      // The guidance, the seed and the schedule each move the result.
      for (const o of [{ guidance: 1 }, { seed: 8n }, { intermediateTimesteps: null }, { steps: 1 }] as Partial<SprintOptions>[]) {
        const other = await sprintSampleWithTransformer(net, backend, ref, pos, latent, { ...opts, ...o }, () => {});
        expect(
          other.samples,
          JSON.stringify(o, (_k, v) => (typeof v === 'bigint' ? String(v) : v)),
        ).not.toEqual(want.latents);
      }
    } finally {
      net.dispose();
    }
  });

  it('denoise < 1 is SanaSprintImg2ImgPipeline: strength picks the start step, the image is noised to that time', async () => {
    // get_timesteps: t_start = int(max(N − min(N·strength, N), 0)).
    expect([
      scmStartStep(2, 1),
      scmStartStep(2, 0.6),
      scmStartStep(2, 0.5),
      scmStartStep(2, 0.3),
      scmStartStep(4, 0.5),
      scmStartStep(4, 0.74),
      scmStartStep(4, 0.2),
    ]).toEqual([0, 0, 1, 1, 2, 1, 3]);
    expect(() => scmStartStep(2, 0)).toThrow(/strength/);
    const image: Latent = { samples: randn(3, [1, 32, 6, 8]), shape: [1, 32, 6, 8] };
    const steps: Array<[number, number]> = [];
    const half = await sprintSample(services, ref, pos, image, { ...opts, denoise: 0.5 }, (s, t) => steps.push([s, t]));
    expect(steps).toEqual([[1, 1]]);
    // One step from t = 1.3: x = cos t·(img·σd) + sin t·(z·σd), then x0 = cos t·x − sin t·v.
    const backend = getBackend('cpu');
    const net = await loadSanaTransformer(ref.path, backend, 'f32');
    try {
      const cfg = readScmSchedulerConfig(path.join(path.dirname(ref.path), 'scheduler'));
      const want = await sampleScm(
        (input, s, g) => {
          const out = net.forward({ data: input, shape: image.shape }, [s], { data: pos.embeds, shape: pos.shape }, pos.mask, { guidance: [g] });
          try {
            return out.toFloat32();
          } finally {
            out.dispose();
          }
        },
        cfg,
        {
          shape: image.shape,
          steps: 2,
          seed: 7n,
          guidanceScale: 4.5,
          guidanceEmbedsScale: 0.1,
          maxTimesteps: 1.5708,
          intermediateTimesteps: 1.3,
          imageLatents: image.samples,
          startStep: 1,
        },
        (r) => expect(r.t).toBe(Math.fround(1.3)),
      );
      expect(half.samples).toEqual(want.latents);
    } finally {
      net.dispose();
    }
    // From the image, a low strength stays closer to it than text-to-image does.
    const full = await sprintSample(services, ref, pos, image, opts, () => {});
    const dist = (a: Float32Array) => a.reduce((s, v, i) => s + (v - image.samples[i]!) ** 2, 0);
    const low = await sprintSample(services, ref, pos, image, { ...opts, steps: 4, denoise: 0.25 }, () => {});
    expect(dist(low.samples)).toBeLessThan(dist(full.samples));
  });

  it('stops between steps when progress throws (an interrupt)', async () => {
    const latent = emptyLatent(128, 128, 1);
    let calls = 0;
    await expect(
      sprintSample(services, ref, pos, latent, { ...opts, steps: 4, intermediateTimesteps: null }, () => {
        calls++;
        throw new Error('interrupted');
      }),
    ).rejects.toThrow('interrupted');
    expect(calls).toBe(1);
  });

  it('refuses a non-Sprint model, and FlowDPMSampler / ScmModelSampling refuse the wrong model', async () => {
    const latent = emptyLatent(128, 128, 1);
    await expect(sprintSample(services, flowRef, pos, latent, opts, () => {})).rejects.toThrow(
      /^SanaSprintSampler input model: .*not a Sana-Sprint checkpoint/,
    );
    await expect(
      sample(services, ref, pos, pos, latent, { seed: 1, steps: 2, cfg: 4.5, flowShift: 0, sampler: 'flow_euler', denoise: 1 }, () => {}),
    ).rejects.toThrow(/^FlowDPMSampler input model: .*Sana-Sprint.*SanaSprintSampler/);
    const masked: Latent = { ...latent, noiseMask: { data: new Float32Array(16).fill(1), shape: [1, 4, 4] } };
    await expect(sprintSample(services, ref, pos, masked, opts, () => {})).rejects.toThrow(/^SanaSprintSampler input latent: .*noise mask/);
    const ctx = {} as NodeContext;
    expect(() => ScmModelSampling.run({ model: flowRef, cfg_scale: 4.5, zsnr: false }, ctx)).toThrow(/^ScmModelSampling input model: .*not a Sana-Sprint/);
    const [patched] = ScmModelSampling.run({ model: ref, cfg_scale: 3, zsnr: true }, ctx) as [SanaModelRef];
    expect(patched).toMatchObject({ ...ref, scm: { guidanceScale: 3 } });
    expect(ref.scm).toBeUndefined();
  });
});
