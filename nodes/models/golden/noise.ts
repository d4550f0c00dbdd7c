// Golden stage `noise`: every caseN of noise/randn.safetensors (seed and shape in the metadata)
// must be reproduced bit for bit by randn(); dtype and device do not apply (host float32).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { randn } from '../noise.ts';
import { compareExact } from './compare.ts';
import { readFixture } from './fixture.ts';
import type { Comparison, GoldenStage } from './types.ts';

const FILE = 'noise/randn.safetensors';

export const noiseStage: GoldenStage = {
  name: 'noise',
  available: (root) => existsSync(join(root, FILE)),
  async run(ctx) {
    const fx = readFixture(join(ctx.root, FILE));
    const out: Comparison[] = [];
    for (const [key, desc] of Object.entries(fx.metadata)) {
      if (!/^case\d+$/.test(key)) continue;
      const m = /seed=(-?\d+)\s+shape=\[([\d,\s]*)\]/.exec(desc);
      if (!m) throw new Error(`${FILE}: metadata ${key} = ${JSON.stringify(desc)} is not "seed=… shape=[…]"`);
      const shape = m[2].split(',').filter((s) => s.trim() !== '').map((s) => Number(s.trim()));
      const want = fx.get(`${key}.values`);
      const got = randn(BigInt(m[1]), shape);
      const name = `${FILE}:${key} (seed ${m[1]}, [${shape.join(', ')}])`;
      // randn fills numel values whatever the shape, so a metadata shape that merely has the
      // stored tensor's numel would pass on the values alone.
      if (shape.join() !== want.shape.join()) {
        out.push({ name, shape: want.shape, maxAbs: NaN, maxRel: NaN, ratio: Infinity, tolerance: { atol: 0, rtol: 0 }, ok: false, note: `metadata shape [${shape.join(', ')}] != stored ${key}.values [${want.shape.join(', ')}]` });
        continue;
      }
      out.push(compareExact(name, got, want.data, want.shape));
    }
    if (out.length === 0) throw new Error(`${FILE}: no caseN entries in the metadata`);
    return out;
  },
};
