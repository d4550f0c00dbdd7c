// Golden stage `gemma2`: the tiny Gemma2Model of gemma2/ (config.json + model.safetensors) on
// the ids and mask of each gemma2/io*.safetensors, comparing the raw embedding lookup, every
// decoder layer's output, the final norm and last_hidden_state.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadGemma2 } from '../gemma2.ts';
import { compareArrays } from './compare.ts';
import { readFixture, type FixtureTensor } from './fixture.ts';
import type { Comparison, GoldenStage } from './types.ts';

function ioFiles(root: string): string[] {
  const dir = join(root, 'gemma2');
  if (!existsSync(join(dir, 'config.json'))) return [];
  return readdirSync(dir).filter((f) => /^io.*\.safetensors$/.test(f)).sort();
}

/** (B, L) float tensor of integers -> rows of numbers. */
export function rowsOf(t: FixtureTensor, what: string): number[][] {
  if (t.shape.length !== 2) throw new Error(`${what}: expected a (B, L) tensor, got [${t.shape.join(', ')}]`);
  const [B, L] = t.shape;
  return Array.from({ length: B }, (_, b) => Array.from(t.data.subarray(b * L, (b + 1) * L), (v) => {
    if (!Number.isInteger(v)) throw new Error(`${what}: value ${v} is not an integer`);
    return v;
  }));
}

export const gemma2Stage: GoldenStage = {
  name: 'gemma2',
  available: (root) => ioFiles(root).length > 0,
  async run(ctx) {
    const dir = join(ctx.root, 'gemma2');
    const backend = await ctx.backend();
    const model = await loadGemma2(dir, backend, ctx.dtype, { native: await ctx.native() });
    const out: Comparison[] = [];
    try {
      for (const f of ioFiles(ctx.root)) {
        const fx = readFixture(join(dir, f));
        const ids = rowsOf(fx.get('input_ids'), `${f}:input_ids`);
        const mask = rowsOf(fx.get('attention_mask'), `${f}:attention_mask`);
        const got = new Map<string, Float32Array>();
        const hidden = model.encode(ids, mask, (name, t) => got.set(`intermediate.${name}`, t.toFloat32()));
        try {
          got.set('last_hidden_state', hidden.toFloat32());
        } finally {
          hidden.dispose();
        }
        for (const [name, want] of fx.tensors) {
          if (name === 'input_ids' || name === 'attention_mask') continue;
          const g = got.get(name);
          if (!g) {
            out.push({ name: `${f}:${name}`, shape: want.shape, maxAbs: NaN, maxRel: NaN, ratio: Infinity, tolerance: ctx.tolerance, ok: false, note: 'not produced by the model' });
            continue;
          }
          out.push(compareArrays(`${f}:${name}`, g, want.data, want.shape, ctx.tolerance));
        }
      }
    } finally {
      model.dispose();
    }
    return out;
  },
};
