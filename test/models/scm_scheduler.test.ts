// SCMScheduler (Sana-Sprint, trigflow) against shared/fixtures/golden/sprint/scheduler: the
// schedule of set_timesteps(N, max_timesteps, intermediate_timesteps) and a closed loop of steps
// with fresh noise from the seeded CPU generator, every parameter read from each file's metadata.
import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readFixture, type FixtureFile } from '../../nodes/models/golden/fixture.ts';
import { MT19937, randn, randnFrom } from '../../nodes/models/noise.ts';
import {
  parseScmSchedulerConfig, readScmSchedulerConfig, scmFlowTime, scmModelInput, scmModelOutput, SCMScheduler, scmTimesteps, sprintGuidance,
} from '../../nodes/models/scm_scheduler.ts';

const DIR = resolve(import.meta.dirname, '../../../shared/fixtures/golden/sprint/scheduler');
const FILES = readdirSync(DIR).filter((f) => /^steps\d+\.safetensors$/.test(f)).sort();
const f32 = Math.fround;

const maxAbs = (a: Float32Array, b: Float32Array): number => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

/** set_timesteps arguments from a file's metadata ("None" = not given). */
function scheduleOf(fx: FixtureFile): { steps: number; maxTimesteps: number; intermediateTimesteps: number | null; seed: bigint } {
  const md = fx.metadata;
  const num = (k: string): number => {
    const v = Number(md[k]);
    if (md[k] === undefined || !Number.isFinite(v)) throw new Error(`${fx.path}: metadata ${k} = ${JSON.stringify(md[k])}`);
    return v;
  };
  return {
    steps: num('num_inference_steps'),
    maxTimesteps: num('max_timesteps'),
    intermediateTimesteps: md.intermediate_timesteps === 'None' ? null : num('intermediate_timesteps'),
    seed: BigInt(md.generator_seed!),
  };
}

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

describe('golden: sprint/scheduler', () => {
  it('finds the step files', () => expect(FILES.length).toBeGreaterThanOrEqual(3));

  for (const file of FILES) {
    it(`${file}: timesteps exact, every step's sample and x0 exact (fed the fixture's model outputs)`, () => {
      const fx = readFixture(resolve(DIR, file));
      const sc = scheduleOf(fx);
      const sched = new SCMScheduler(readScmSchedulerConfig(DIR));
      sched.setTimesteps(sc.steps, { maxTimesteps: sc.maxTimesteps, intermediateTimesteps: sc.intermediateTimesteps });
      expect(Array.from(sched.timesteps)).toEqual(Array.from(fx.get('timesteps').data));
      const gen = new MT19937(sc.seed);
      let x = fx.get('latents_0').data;
      for (let i = 0; i < sc.steps; i++) {
        const r = sched.step(fx.get(`model_output_${i}`).data, x, gen);
        expect(maxAbs(r.denoised, fx.get(`denoised_${i}`).data), `${file} denoised_${i}`).toBe(0);
        expect(maxAbs(r.prevSample, fx.get(`latents_${i + 1}`).data), `${file} latents_${i + 1}`).toBe(0);
        x = r.prevSample;
      }
      expect(() => sched.step(x, x, gen)).toThrow(/already taken/);
    });

    it(`${file}: the closed loop with the file's synthetic model v = 0.3·x − 0.7·sin(t)`, () => {
      const fx = readFixture(resolve(DIR, file));
      const sc = scheduleOf(fx);
      const sched = new SCMScheduler(readScmSchedulerConfig(DIR));
      sched.setTimesteps(sc.steps, { maxTimesteps: sc.maxTimesteps, intermediateTimesteps: sc.intermediateTimesteps });
      const gen = new MT19937(sc.seed);
      let x = fx.get('latents_0').data;
      for (let i = 0; i < sc.steps; i++) {
        const st = f32(Math.sin(sched.timesteps[i]!)), b = f32(0.7 * st);
        const v = x.map((xi) => f32(f32(0.3 * xi) - b));
        expect(maxAbs(v, fx.get(`model_output_${i}`).data), `${file} model_output_${i}`).toBeLessThanOrEqual(1e-6);
        x = sched.step(v, x, gen).prevSample;
        expect(maxAbs(x, fx.get(`latents_${i + 1}`).data), `${file} latents_${i + 1}`).toBeLessThanOrEqual(1e-6);
      }
    });
  }
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
