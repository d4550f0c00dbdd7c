// Golden stage `scheduler`: each scheduler/steps*.safetensors trajectory. The config comes from
// the file's `scheduler_config` metadata (else scheduler_config.json beside it). Checked:
// timesteps and sigmas; every step fed the stored model output (latents[i+1]); and, when the
// metadata's dummy model is `v = a * x + b * float32(t) / 1000`, the closed loop too.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createSampler, readSchedulerConfig, schedulerConfigFromJson, type FlowSchedulerConfig } from '../scheduler.ts';
import { parseLenientJson } from '../weights.ts';
import { compareArrays } from './compare.ts';
import { readFixture } from './fixture.ts';
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
      const cfg: FlowSchedulerConfig = fx.metadata.scheduler_config
        ? schedulerConfigFromJson(parseLenientJson(fx.metadata.scheduler_config, `${f} metadata`) as Record<string, unknown>, `${f} metadata`)
        : readSchedulerConfig(join(ctx.root, 'scheduler'));
      const ts = fx.get('timesteps');
      const n = ts.data.length;
      const lat = fx.get('latents');
      const mo = fx.get('model_outputs');
      const per = lat.data.length / (n + 1);
      const shape = lat.shape.slice(1);

      const open = createSampler({ steps: n, config: cfg });
      out.push(compareArrays(`${f}:timesteps`, open.timesteps, ts.data, ts.shape, EXACT));
      out.push(compareArrays(`${f}:sigmas`, open.sigmas, fx.get('sigmas').data, [n + 1], TOL));
      // Open loop: each step from the stored latents and model output.
      for (let i = 0; i < n; i++) {
        const x = lat.data.slice(i * per, (i + 1) * per);
        const next = open.step(mo.data.slice(i * per, (i + 1) * per), x);
        out.push(compareArrays(`${f}:latents[${i + 1}] (step ${i}, stored v)`, next, lat.data.subarray((i + 1) * per, (i + 2) * per), shape, TOL));
      }
      // Closed loop with the dummy model, when the metadata names one we can read.
      const m = /v\s*=\s*([-\d.e]+)\s*\*\s*x\s*\+\s*([-\d.e]+)\s*\*\s*float32\(t\)\s*\/\s*1000/.exec(fx.metadata.dummy_model ?? '');
      if (m) {
        const a = fr(Number(m[1]));
        const b = fr(Number(m[2]));
        const closed = createSampler({ steps: n, config: cfg });
        let x: Float32Array = lat.data.slice(0, per);
        let worstV = 0;
        for (let i = 0; i < n; i++) {
          const tt = fr(fr(b * fr(closed.timesteps[i])) / 1000);
          const v = x.map((xi) => fr(fr(a * xi) + tt));
          const want = mo.data.subarray(i * per, (i + 1) * per);
          for (let k = 0; k < per; k++) worstV = Math.max(worstV, Math.abs(v[k] - want[k]));
          x = closed.step(v, x);
        }
        out.push(compareArrays(`${f}:latents[${n}] (closed loop, ${fx.metadata.dummy_model})`, x, lat.data.subarray(n * per), shape, { atol: 1e-5, rtol: 1e-5 }));
        out.push({ ...compareArrays(`${f}:model_outputs (closed loop)`, [worstV], [0], [1], { atol: 1e-5, rtol: 0 }) });
      }
    }
    return out;
  },
};
