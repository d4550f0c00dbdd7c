// Flow DPM-Solver++ 2M and Flow Euler against the diffusers fixtures and the spec's tables.
import { describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import {
  createSampler, dpmFlowSchedule, eulerFlowSchedule, noiseLatent, partialSchedule, readSchedulerConfig,
  SANA_SCHEDULER_DEFAULTS, schedulerConfigFromJson,
} from '../../nodes/models/scheduler.ts';
import { readFixture } from '../../nodes/models/golden/fixture.ts';
import { parseLenientJson } from '../../nodes/models/weights.ts';
import { golden, haveGolden } from '../fixtures.ts';

const DIR = golden('scheduler');
const cfg = (shift: number) => ({ ...SANA_SCHEDULER_DEFAULTS, flowShift: shift });

describe('schedules (shared/spec/sana.md §6.2, §6.7 tables)', () => {
  it('DPM flow sigmas and integer timesteps for shift 3, 4, 6 at 20 steps', () => {
    const tables: Record<number, { t: number[]; s0: number; s19: number }> = {
      3: { t: [999, 982, 963, 944, 922, 899, 874, 847, 817, 785, 749, 710, 666, 617, 562, 499, 428, 345, 249, 136], s0: 0.999666, s19: 0.13624 },
      4: { t: [999, 986, 972, 957, 940, 922, 902, 881, 856, 829, 799, 765, 726, 682, 631, 571, 499, 413, 307, 173], s0: 0.99975, s19: 0.173762 },
      6: { t: [999, 991, 981, 971, 959, 947, 933, 917, 899, 879, 856, 830, 799, 763, 719, 666, 599, 513, 399, 239], s0: 0.999833, s19: 0.239808 },
    };
    for (const [shift, want] of Object.entries(tables)) {
      const s = dpmFlowSchedule(20, cfg(Number(shift)));
      expect(s.timesteps).toEqual(want.t);
      expect(s.sigmas.length).toBe(21);
      expect(s.sigmas[0]).toBeCloseTo(want.s0, 6);
      expect(s.sigmas[19]).toBeCloseTo(want.s19, 6);
      expect(s.sigmas[20]).toBe(0);
    }
  });

  it('Flow Euler sigmas with the double shift', () => {
    const want = [1.0, 0.981875, 0.962386, 0.941373, 0.918652, 0.894003, 0.867172, 0.837855, 0.805689, 0.770239,
      0.730974, 0.687244, 0.63824, 0.582948, 0.520074, 0.447944, 0.364352, 0.26633, 0.149787, 0.008929, 0];
    const s = eulerFlowSchedule(20, cfg(3));
    expect(s.sigmas.length).toBe(21);
    want.forEach((w, i) => expect(s.sigmas[i]).toBeCloseTo(w, 6));
    expect(s.timesteps[0]).toBe(1000);
    expect(Number.isInteger(s.timesteps[5])).toBe(false);
  });

  it('partial denoise keeps the tail of the longer schedule', () => {
    const full = dpmFlowSchedule(40, cfg(3));
    const part = partialSchedule((n) => dpmFlowSchedule(n, cfg(3)), 20, 0.5);
    expect(Array.from(part.sigmas)).toEqual(Array.from(full.sigmas.slice(20)));
    expect(part.timesteps).toEqual(full.timesteps.slice(20));
    expect(() => partialSchedule((n) => dpmFlowSchedule(n), 10, 0)).toThrow(/denoise/);
    const s = createSampler({ steps: 10, denoise: 0.5 });
    expect(s.timesteps.length).toBe(10);
    expect(s.sigmas[0]).toBeLessThan(0.9);
  });

  it('noiseLatent is the flow forward process', () => {
    const x = noiseLatent(Float32Array.from([1, 2]), Float32Array.from([0, 4]), 0.25);
    expect(Array.from(x)).toEqual([0.75, 2.5]);
  });
});

describe('flow euler sampler', () => {
  it('steps x + (σ_next − σ)·v and ends at σ = 0', () => {
    const s = createSampler({ kind: 'flow_euler', steps: 4 });
    // With v = noise − x0 held fixed, Euler on the straight flow path lands exactly on x0.
    let x: Float32Array = Float32Array.from([1, -2]); // pure noise at σ_0 = 1 with x0 = 0
    const v = Float32Array.from([1, -2]);
    for (let i = 0; i < 4; i++) x = s.step(v, x);
    expect(Math.abs(x[0])).toBeLessThan(1e-6);
    expect(Math.abs(x[1])).toBeLessThan(1e-6);
  });
});

describe('scheduler config', () => {
  it('parses the real file with -Infinity and rejects unsupported settings', () => {
    const c = readSchedulerConfig(DIR);
    expect(c).toEqual(SANA_SCHEDULER_DEFAULTS);
    expect(parseLenientJson('{"a": -Infinity, "b": "x-Infinity", "c": [NaN, Infinity]}', 't')).toEqual({ a: -Infinity, b: 'x-Infinity', c: [NaN, Infinity] });
    expect(() => parseLenientJson('{"a": }', 'cfg.json')).toThrow(/cfg.json/);
    expect(() => schedulerConfigFromJson({ _class_name: 'DPMSolverMultistepScheduler', prediction_type: 'epsilon', use_flow_sigmas: true })).toThrow(/prediction_type/);
    expect(() => schedulerConfigFromJson({ _class_name: 'DDIMScheduler' })).toThrow(/DDIMScheduler/);
  });
});

describe.skipIf(!haveGolden('scheduler'))('DPM-Solver++ 2M vs diffusers trajectories', () => {
  for (const file of ['steps20.safetensors', 'steps7.safetensors']) {
    it(file, () => {
      const fx = readFixture(resolve(DIR, file));
      const config = schedulerConfigFromJson(parseLenientJson(fx.metadata.scheduler_config, file) as Record<string, unknown>);
      const n = Number(fx.metadata.num_inference_steps);
      const sampler = createSampler({ steps: n, config });
      expect(sampler.timesteps).toEqual(Array.from(fx.get('timesteps').data));
      expect(Array.from(sampler.sigmas)).toEqual(Array.from(fx.get('sigmas').data));
      const lat = fx.get('latents');
      const mo = fx.get('model_outputs');
      const per = lat.data.length / (n + 1);
      let x: Float32Array = lat.data.slice(0, per);
      let maxErr = 0;
      for (let i = 0; i < n; i++) {
        const want = mo.data.subarray(i * per, (i + 1) * per);
        // The dummy model of the fixture, in float32: v = 0.1·x + float32(t)/1000.
        const tt = Math.fround(Math.fround(sampler.timesteps[i]) / 1000);
        const v = x.map((xi) => Math.fround(Math.fround(0.1 * xi) + tt));
        for (let k = 0; k < per; k++) expect(Math.abs(v[k] - want[k])).toBeLessThanOrEqual(1e-6);
        // Feed the reference output so each step is checked in isolation of the dummy model.
        x = sampler.step(want.slice(), x);
        const ref = lat.data.subarray((i + 1) * per, (i + 2) * per);
        for (let k = 0; k < per; k++) maxErr = Math.max(maxErr, Math.abs(x[k] - ref[k]));
        x = ref.slice();
      }
      expect(maxErr).toBeLessThanOrEqual(1e-6);
      expect(() => sampler.step(x, x)).toThrow(/after the last/);
    });
  }
});
