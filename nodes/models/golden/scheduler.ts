// Golden stage `scheduler`: each scheduler/steps*.safetensors trajectory. Everything comes from
// the file's metadata: the config from `scheduler_config` (else scheduler_config.json beside it),
// with `flow_shift` applied over it; the sampler from the config's `_class_name`; the step count
// from `num_inference_steps`; the dummy model `v = a * x + b * float32(t) / 1000` from
// `dummy_model`. Checked: timesteps and sigmas; every step fed the stored model output
// (latents[i+1]); and the closed loop with the dummy model.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSampler, schedulerConfigFromJson } from '../scheduler.ts';
import { parseLenientJson } from '../weights.ts';
import { compareArrays } from './compare.ts';
import { readFixture } from './fixture.ts';
import { FixtureMeta, samplerKindOf } from './meta.ts';
import type { Comparison, GoldenStage, Tolerance } from './types.ts';

// Scheduler math is float32 on the host in both modes; the spec asks for <= 1e-6.
const TOL: Tolerance = { atol: 1e-6, rtol: 1e-6 };
const EXACT: Tolerance = { atol: 0, rtol: 0 };

function files(root: string): string[] {
  const dir = join(root, 'scheduler');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /^steps.*\.safetensors$/.test(f)).sort();
}

const fr = Math.fround;

export const schedulerStage: GoldenStage = {
  name: 'scheduler',
  available: (root) => files(root).length > 0,
  async run(ctx) {
    const out: Comparison[] = [];
    for (const f of files(ctx.root)) {
      const path = join(ctx.root, 'scheduler', f);
      const fx = readFixture(path);
      const meta = FixtureMeta.ofFixture(fx);
      const cfgFile = join(ctx.root, 'scheduler', 'scheduler_config.json');
      let raw: Record<string, unknown>;
      let where: string;
      if (fx.metadata.scheduler_config !== undefined) {
        where = `${path}: scheduler_config`;
        raw = parseLenientJson(fx.metadata.scheduler_config, where) as Record<string, unknown>;
      } else if (existsSync(cfgFile)) {
        where = cfgFile;
        raw = parseLenientJson(readFileSync(cfgFile, 'utf8'), cfgFile) as Record<string, unknown>;
      } else {
        throw new Error(`${path}: no "scheduler_config" in the metadata and no ${cfgFile}`);
      }
      if (meta.has('flow_shift')) {
        const shift = meta.num('flow_shift', 'the schedule shift');
        if (fx.metadata.scheduler_config !== undefined && raw.flow_shift !== undefined && raw.flow_shift !== shift) {
          throw new Error(`${path}: metadata flow_shift ${shift} disagrees with scheduler_config.flow_shift ${String(raw.flow_shift)}`);
        }
        raw = { ...raw, flow_shift: shift };
      }
      const cfg = schedulerConfigFromJson(raw, where);
      const kind = samplerKindOf(raw, where);
      const n = meta.int('num_inference_steps', 'the step count');
      const ts = fx.get('timesteps');
      const lat = fx.get('latents');
      const mo = fx.get('model_outputs');
      const stored = lat.shape[0]! - 1;
      const per = lat.data.length / (stored + 1);
      const shape = lat.shape.slice(1);

      const open = createSampler({ kind, steps: n, config: cfg });
      out.push(compareArrays(`${f}:timesteps`, open.timesteps, ts.data, ts.shape, EXACT));
      out.push(compareArrays(`${f}:sigmas`, open.sigmas, fx.get('sigmas').data, fx.get('sigmas').shape, TOL));
      // Open loop: each step from the stored latents and model output (the steps both have; a
      // different count already failed on timesteps).
      for (let i = 0; i < Math.min(n, stored); i++) {
        const x = lat.data.slice(i * per, (i + 1) * per);
        const next = open.step(mo.data.slice(i * per, (i + 1) * per), x);
        out.push(compareArrays(`${f}:latents[${i + 1}] (step ${i}, stored v)`, next, lat.data.subarray((i + 1) * per, (i + 2) * per), shape, TOL));
      }
      // Closed loop with the dummy model the metadata names.
      const dummy = meta.str('dummy_model', 'the dummy model of the closed loop');
      const m = /^\s*v\s*=\s*([-+\d.e]+)\s*\*\s*x\s*\+\s*([-+\d.e]+)\s*\*\s*float32\(t\)\s*\/\s*1000\s*$/.exec(dummy);
      if (!m) throw new Error(`${path}: metadata dummy_model ${JSON.stringify(dummy)} is not "v = a * x + b * float32(t) / 1000"`);
      const a = fr(Number(m[1]));
      const b = fr(Number(m[2]));
      const closed = createSampler({ kind, steps: n, config: cfg });
      let x: Float32Array = lat.data.slice(0, per);
      let worstV = 0;
      for (let i = 0; i < n; i++) {
        const tt = fr(fr(b * fr(closed.timesteps[i])) / 1000);
        const v = x.map((xi) => fr(fr(a * xi) + tt));
        if (i < stored) {
          const want = mo.data.subarray(i * per, (i + 1) * per);
          for (let k = 0; k < per; k++) worstV = Math.max(worstV, Math.abs(v[k] - want[k]));
        }
        x = closed.step(v, x);
      }
      out.push(compareArrays(`${f}:latents[${n}] (closed loop, ${dummy})`, x, lat.data.subarray(stored * per), shape, { atol: 1e-5, rtol: 1e-5 }));
      out.push({ ...compareArrays(`${f}:model_outputs (closed loop)`, [worstV], [0], [1], { atol: 1e-5, rtol: 0 }) });
    }
    return out;
  },
};
