// SCMScheduler (Sana-Sprint, trigflow) against shared/fixtures/golden/sprint/scheduler: the
// schedule of set_timesteps(N, max_timesteps, intermediate_timesteps) and a closed loop of steps
// with fresh noise from the seeded CPU generator, every parameter read from each file's metadata.
import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readFixture } from '../../nodes/models/golden/fixture.ts';
import { runScmSchedulerGolden } from '../../nodes/models/golden/sprint.ts';
import { MT19937, randn, randnFrom } from '../../nodes/models/noise.ts';
import {
  parseScmSchedulerConfig, readScmSchedulerConfig, scmFlowTime, scmModelInput, scmModelOutput, SCMScheduler, scmTimesteps, sprintGuidance,
} from '../../nodes/models/scm_scheduler.ts';
import { golden } from '../fixtures.ts';

const DIR = golden('sprint', 'scheduler');
const FILES = readdirSync(DIR).filter((f) => /^steps\d+\.safetensors$/.test(f)).sort();
const f32 = Math.fround;

const maxAbs = (a: Float32Array, b: Float32Array): number => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

describe('SCMScheduler config', () => {
  it('reads the fixture config and refuses other parameterisations', () => {
    expect(readScmSchedulerConfig(DIR)).toEqual({ numTrainTimesteps: 1000, predictionType: 'trigflow', sigmaData: 0.5 });
    expect(() => parseScmSchedulerConfig({ prediction_type: 'v_prediction' }, 'c.json')).toThrow(/c\.json: prediction_type "v_prediction"/);
    expect(() => parseScmSchedulerConfig({ _class_name: 'DPMSolverMultistepScheduler' }, 'c.json')).toThrow(/SCMScheduler/);
  });

  it('schedules: 2 steps with an intermediate time, evenly spaced otherwise, argument checks', () => {
    const cfg = readScmSchedulerConfig(DIR);
    expect(Array.from(scmTimesteps(2, cfg))).toEqual([f32(1.5708), f32(1.3), 0]);
    expect(() => scmTimesteps(3, cfg, { intermediateTimesteps: 1.3 })).toThrow(/exactly 2 steps/);
    expect(() => scmTimesteps(2, cfg, { timesteps: [1, 0.5, 0], maxTimesteps: 1 })).toThrow(/not both/);
    expect(Array.from(scmTimesteps(2, cfg, { timesteps: [1, 0.5, 0] }))).toEqual([1, 0.5, 0]);
    const lin = scmTimesteps(4, cfg, { intermediateTimesteps: null });
    expect(lin.length).toBe(5);
    expect(lin[4]).toBe(0);
  });
});

describe('golden: sprint/scheduler (the golden runner stage)', () => {
  it('every steps file: schedule and fed steps exact, the synthetic closed loop within 1e-6', async () => {
    const r = await runScmSchedulerGolden({ dir: resolve(DIR, '../..') });
    expect(FILES.length).toBeGreaterThanOrEqual(3);
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    // per file: timesteps + steps × (denoised, latents) fed + steps × (model output, latents) closed
    const steps = FILES.map((f) => Number(readFixture(resolve(DIR, f)).metadata.num_inference_steps));
    expect(r.checks.length).toBe(steps.reduce((a, n) => a + 1 + 4 * n, 0));
  });

  it('the seeded generator matters: another seed fails the fed steps', async () => {
    const fx = readFixture(resolve(DIR, FILES.at(-1)!));
    const sched = new SCMScheduler(readScmSchedulerConfig(DIR));
    const n = Number(fx.metadata.num_inference_steps);
    sched.setTimesteps(n, { maxTimesteps: Number(fx.metadata.max_timesteps), intermediateTimesteps: fx.metadata.intermediate_timesteps === 'None' ? null : Number(fx.metadata.intermediate_timesteps) });
    const gen = new MT19937(BigInt(fx.metadata.generator_seed!) + 1n);
    let x = fx.get('latents_0').data;
    let differs = false;
    for (let i = 0; i < n; i++) {
      x = sched.step(fx.get(`model_output_${i}`).data, x, gen).prevSample;
      if (i < n - 1) differs ||= maxAbs(x, fx.get(`latents_${i + 1}`).data) > 0;
    }
    expect(n > 1 ? differs : true).toBe(true);
  });
});

describe('noise continuation and Sprint scaling', () => {
  it('randnFrom continues one generator like successive torch.randn calls', () => {
    // Both samplers: the scalar one (< 16 values) keeps its spare value in the generator.
    for (const sizes of [[96, 96], [5, 3, 8], [7, 40, 2]]) {
      const gen = new MT19937(77);
      const parts = sizes.map((n) => randnFrom(gen, [n]));
      const again = new MT19937(77);
      sizes.forEach((n, k) => expect(Array.from(randnFrom(again, [n]))).toEqual(Array.from(parts[k]!)));
      expect(Array.from(parts[0]!)).toEqual(Array.from(randn(77, [sizes[0]!])));
    }
    // The scalar sampler's spare value: [3] then [1] on one generator = the first 4 of one [4] draw.
    const g = new MT19937(5);
    const joined = [...randnFrom(g, [3]), ...randnFrom(g, [1])];
    expect(joined).toEqual(Array.from(randn(5, [4])));
  });

  it('flow time, input scaling and output scaling invert each other', () => {
    expect(scmFlowTime(0)).toBe(0);
    expect(scmFlowTime(Math.PI / 4)).toBeCloseTo(0.5, 6);
    expect(sprintGuidance(4.5, 0.1)).toBe(f32(f32(4.5) * f32(0.1)));
    // With a perfect flow model (out = noise − x0 on the flow line), the scheduler's model output
    // gives back x0 through x0 = cos t·x − sin t·v.
    const t = 1.1, sd = 0.5, x0 = Float32Array.from([0.3, -0.2]), nz = Float32Array.from([0.8, 1.1]);
    const xt = x0.map((v, i) => Math.cos(t) * v + Math.sin(t) * sd * nz[i]!);
    const { input, s } = scmModelInput(xt, t, sd);
    const flowOut = x0.map((v, i) => nz[i]! - v / sd);
    const mo = scmModelOutput(flowOut, input, s, sd);
    xt.forEach((x, i) => expect(Math.cos(t) * x - Math.sin(t) * mo[i]!).toBeCloseTo(x0[i]!, 5));
  });
});
