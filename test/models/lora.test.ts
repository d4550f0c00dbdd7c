// LoRA for the Sana transformer: key parsing (diffusers/PEFT and kohya), alpha/rank scaling, the
// f32 merge against a float64 reference, refusals naming the first bad key, and the patched model
// on the shipped tiny transformer: its forward equals a model built from merged weights written to
// a new checkpoint, stacking equals merging both, and the base model is left unchanged.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as native from '../../native/index.ts';
import type { Backend, DType, SafetensorsEntry, Tensor } from '../../native/api.ts';
import {
  kohyaModuleMap, loadLoraPatched, mergedWeights, parseLora, type LoraSource,
} from '../../nodes/models/lora.ts';
import { expectedTransformerTensors } from '../../nodes/models/sana_dit/layout.ts';
import { loadSanaTransformer } from '../../nodes/models/sana_dit/load.ts';
import type { SanaTransformer } from '../../nodes/models/sana_dit/model.ts';
import type { WeightSource } from '../../nodes/models/weight_set.ts';
import { randn } from '../native/harness.ts';
import { repoModelsDir } from '../nodes/helpers.ts';

const backend = native.getBackend('cpu');
const HEAVY_MS = 300_000;

/** An in-memory safetensors-like source of f32 host arrays (in insertion order, like a header). */
function memSource(tensors: Array<[string, number[], Float32Array]>, metadata: Record<string, string> = {}): LoraSource & WeightSource {
  const m = new Map(tensors.map(([n, s, d]) => [n, { s, d }]));
  return {
    metadata,
    keys: () => [...m.keys()],
    has: (n) => m.has(n),
    entry: (n): SafetensorsEntry => {
      const t = m.get(n);
      if (!t) throw new Error(`no tensor ${n}`);
      return { name: n, dtype: 'F32', shape: t.s, file: 'mem' };
    },
    load: (n: string, bk: Backend, dtype?: DType): Tensor => {
      const t = m.get(n);
      if (!t) throw new Error(`no tensor ${n}`);
      return bk.fromArray(t.d, t.s, dtype ?? 'f32');
    },
  };
}

const prod = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** W + Σ s·(B·A) in float64. */
function refMerge(W: Float32Array, out: number, n: number, terms: Array<{ A: Float32Array; B: Float32Array; r: number; s: number }>): Float64Array {
  const res = Float64Array.from(W);
  for (const { A, B, r, s } of terms) {
    for (let o = 0; o < out; o++) {
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let k = 0; k < r; k++) acc += B[o * r + k]! * A[k * n + j]!;
        res[o * n + j]! += s * acc;
      }
    }
  }
  return res;
}

function maxRelErr(got: Float32Array, want: Float64Array): number {
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  let e = 0;
  for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got[i]! - want[i]!));
  return e / Math.max(1, scale);
}

describe('merge against a float64 reference', () => {
  it('linear and conv targets, diffusers and kohya keys, alpha/rank and strength', () => {
    let worst = 0;
    fc.assert(
      fc.property(
        fc.record({
          out: fc.integer({ min: 1, max: 24 }),
          inp: fc.integer({ min: 1, max: 24 }),
          kernel: fc.constantFrom(0, 1, 3), // 0: linear (out, in); k: conv (out, in, k, k)
          rank: fc.integer({ min: 1, max: 6 }),
          alpha: fc.option(fc.double({ min: 0.5, max: 16, noNaN: true }), { nil: undefined }),
          strength: fc.double({ min: -10, max: 10, noNaN: true }),
          kohya: fc.boolean(),
          seed: fc.integer({ min: 1, max: 1e6 }),
        }),
        ({ out, inp, kernel, rank, alpha, strength, kohya, seed }) => {
          const wShape = kernel === 0 ? [out, inp] : [out, inp, kernel, kernel];
          const aShape = kernel === 0 ? [rank, inp] : [rank, inp, kernel, kernel];
          const bShape = kernel === 0 ? [out, rank] : [out, rank, 1, 1];
          const n = prod(wShape) / out;
          const target = 'transformer_blocks.0.ff.conv_x';
          const W = randn(seed, prod(wShape));
          const A = randn(seed + 1, prod(aShape), 0.5);
          const B = randn(seed + 2, prod(bShape), 0.5);
          const model = memSource([[`${target}.weight`, wShape, W], ['transformer_blocks.0.ff.conv_x.bias', [out], new Float32Array(out)]]);
          const stem = kohya ? `lora_unet_${target.replace(/\./g, '_')}` : `transformer.${target}`;
          const [dn, up] = kohya ? ['lora_down', 'lora_up'] : ['lora_A', 'lora_B'];
          const lora = memSource([
            [`${stem}.${dn}.weight`, aShape, A],
            [`${stem}.${up}.weight`, bShape, B],
            ...(alpha !== undefined ? [[`${stem}.alpha`, [], Float32Array.of(alpha)] as [string, number[], Float32Array]] : []),
          ]);
          const shapes = new Map([...model.keys()].map((k) => [k, model.entry(k).shape]));
          const plan = parseLora(lora, shapes, { backend, where: 'test' });
          expect(plan.format).toBe(kohya ? 'kohya' : 'diffusers');
          expect(plan.terms).toHaveLength(1);
          const a = Math.fround(alpha ?? rank);
          expect(plan.terms[0]!.scale).toBeCloseTo(a / rank, 12);
          const { source, changed } = mergedWeights(model, [{ plan, src: lora, strength, name: 'l' }]);
          // Strength 0 is no patch at all.
          expect([...changed]).toEqual(strength === 0 ? [] : [`${target}.weight`]);
          const t = source.load(`${target}.weight`, backend, 'f32');
          expect(t.shape).toEqual(wShape);
          const got = t.toFloat32();
          t.dispose();
          const want = refMerge(W, out, n, [{ A, B, r: rank, s: strength * (a / rank) }]);
          const err = maxRelErr(got, want);
          worst = Math.max(worst, err);
          expect(err).toBeLessThan(2e-5);
          // Untouched tensors pass through as stored.
          const bias = source.load('transformer_blocks.0.ff.conv_x.bias', backend, 'f32');
          expect(bias.toFloat32()).toEqual(new Float32Array(out));
          bias.dispose();
        },
      ),
      { numRuns: 60, seed: 4242 },
    );
    console.log(`[lora] merge vs float64: worst relative error ${worst.toExponential(2)}`);
  });

  it('metadata alphas: PEFT lora_adapter_metadata (prefixed, with alpha_pattern), rsLoRA and kohya ss_network_alpha', () => {
    const shapes = new Map<string, number[]>([['a.to_q.weight', [4, 4]], ['a.to_k.weight', [4, 4]]]);
    const pair = (stem: string, r: number): Array<[string, number[], Float32Array]> => [
      [`${stem}.lora_A.weight`, [r, 4], randn(1, r * 4)], [`${stem}.lora_B.weight`, [4, r], randn(2, 4 * r)],
    ];
    const meta = { lora_adapter_metadata: JSON.stringify({ 'transformer.r': 2, 'transformer.lora_alpha': 8, 'transformer.alpha_pattern': { to_k: 1 }, 'text_encoder.lora_alpha': 99 }) };
    const plan = parseLora(memSource([...pair('transformer.a.to_q', 2), ...pair('transformer.a.to_k', 2)], meta), shapes, { backend, where: 't' });
    expect(plan.terms.map((t) => [t.target, t.scale])).toEqual([['a.to_q.weight', 4], ['a.to_k.weight', 0.5]]);
    const rs = parseLora(memSource(pair('a.to_q', 4), { lora_adapter_metadata: JSON.stringify({ lora_alpha: 8, use_rslora: true }) }), shapes, { backend, where: 't' });
    expect(rs.terms[0]!.scale).toBe(4);
    const ko = parseLora(memSource([
      ['lora_unet_a_to_q.lora_down.weight', [2, 4], randn(3, 8)], ['lora_unet_a_to_q.lora_up.weight', [4, 2], randn(4, 8)],
    ], { ss_network_alpha: '1' }), shapes, { backend, where: 't' });
    expect(ko.terms[0]!.scale).toBe(0.5);
    // No alpha anywhere: diffusers' rule for Sana, alpha = rank.
    expect(parseLora(memSource(pair('a.to_q', 3)), shapes, { backend, where: 't' }).terms[0]!.scale).toBe(1);
  });
});

describe('refusals name the first key that does not fit', () => {
  const D = 8;
  const shapes = new Map<string, number[]>([
    ['transformer_blocks.0.attn1.to_q.weight', [D, D]],
    ['transformer_blocks.0.ff.conv_inverted.weight', [4 * D, D, 1, 1]],
    ['caption_norm.weight', [D]],
  ]);
  const good: Array<[string, number[], Float32Array]> = [
    ['transformer.transformer_blocks.0.attn1.to_q.lora_A.weight', [2, D], randn(1, 2 * D)],
    ['transformer.transformer_blocks.0.attn1.to_q.lora_B.weight', [D, 2], randn(2, 2 * D)],
  ];
  const parse = (t: Array<[string, number[], Float32Array]>): unknown => parseLora(memSource(t), shapes, { backend, where: 'SanaLoraLoader input lora_name' });

  it('unknown target', () => {
    expect(() => parse([...good,
      ['transformer.transformer_blocks.7.attn1.to_q.lora_A.weight', [2, D], randn(3, 2 * D)],
      ['transformer.transformer_blocks.9.attn1.to_q.lora_A.weight', [2, D], randn(3, 2 * D)],
    ])).toThrow(/SanaLoraLoader input lora_name: LoRA key "transformer\.transformer_blocks\.7\.attn1\.to_q\.lora_A\.weight" targets "transformer_blocks\.7\.attn1\.to_q", which is not a weight of this model/);
    expect(() => parse([['transformer.caption_norm.lora_A.weight', [2, D], randn(3, 2 * D)]])).toThrow(/caption_norm.weight has rank 1/);
    expect(() => parse([['lora_unet_transformer_blocks_0_attn9_to_q.lora_down.weight', [2, D], randn(3, 2 * D)]])).toThrow(/"lora_unet_transformer_blocks_0_attn9_to_q\.lora_down\.weight" targets "transformer_blocks_0_attn9_to_q"/);
    expect(() => parse([['transformer.transformer_blocks.0.attn1.to_q.weight', [D, D], randn(3, D * D)]])).toThrow(/is not a LoRA tensor/);
  });

  it('wrong shapes, with both shapes named', () => {
    expect(() => parse([
      ['transformer.transformer_blocks.0.ff.conv_inverted.lora_A.weight', [2, D + 1, 1, 1], randn(3, 2 * (D + 1))],
      ['transformer.transformer_blocks.0.attn1.to_q.lora_B.weight', [D + 1, 2], randn(3, 2 * (D + 1))],
    ])).toThrow(/"transformer\.transformer_blocks\.0\.ff\.conv_inverted\.lora_A\.weight" has shape \[2, 9, 1, 1\], which does not fit transformer_blocks\.0\.ff\.conv_inverted\.weight \[32, 8, 1, 1\]/);
    expect(() => parse([good[0]!, ['transformer.transformer_blocks.0.attn1.to_q.lora_B.weight', [D, 3], randn(3, 3 * D)]])).toThrow(/has rank 3 but its down \(A\) matrix .* has rank 2/);
    expect(() => parse([good[0]!])).toThrow(/has no up \(lora_B\) partner/);
  });

  it('ambiguous kohya names are refused when used', () => {
    const m = kohyaModuleMap(['a.b_c', 'a_b.c', 'x.y']);
    expect(m.get('a_b_c')).toBeNull();
    expect(m.get('x_y')).toBe('x.y');
    const amb = new Map<string, number[]>([['a.b_c.weight', [2, 2]], ['a_b.c.weight', [2, 2]]]);
    expect(() => parseLora(memSource([['lora_unet_a_b_c.lora_down.weight', [1, 2], randn(1, 2)]]), amb, { backend, where: 't' })).toThrow(/ambiguous/);
  });
});

// ------------------------------------------------------------------------------------------------
// The patched model on the shipped tiny transformer

const TINY = path.join(repoModelsDir(), 'sana', 'Sana_Tiny_diffusers', 'transformer');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-lora-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

type HostLora = Map<string, { A: Float32Array; B: Float32Array; r: number; aShape: number[]; bShape: number[] }>;

/** A random LoRA over the given model tensors, written as diffusers or kohya keys. */
function makeLora(file: string, shapes: Map<string, number[]>, targets: string[], rank: number, seed: number, form: 'diffusers' | 'kohya', alpha?: number): HostLora {
  const host: HostLora = new Map();
  const tensors: Array<{ name: string; shape: number[]; dtype: 'F32'; data: Float32Array }> = [];
  targets.forEach((t, i) => {
    const W = shapes.get(t)!;
    const aShape = [rank, ...W.slice(1)];
    const bShape = W.length === 2 ? [W[0]!, rank] : [W[0]!, rank, ...W.slice(2).map(() => 1)];
    const A = randn(seed + 2 * i, prod(aShape), 0.3);
    const B = randn(seed + 2 * i + 1, prod(bShape), 0.3);
    host.set(t, { A, B, r: rank, aShape, bShape });
    const mod = t.slice(0, -'.weight'.length);
    if (form === 'diffusers') {
      tensors.push({ name: `transformer.${mod}.lora_A.weight`, shape: aShape, dtype: 'F32', data: A });
      tensors.push({ name: `transformer.${mod}.lora_B.weight`, shape: bShape, dtype: 'F32', data: B });
    } else {
      const k = `lora_unet_${mod.replace(/\./g, '_')}`;
      tensors.push({ name: `${k}.lora_down.weight`, shape: aShape, dtype: 'F32', data: A });
      tensors.push({ name: `${k}.lora_up.weight`, shape: bShape, dtype: 'F32', data: B });
      if (alpha !== undefined) tensors.push({ name: `${k}.alpha`, shape: [], dtype: 'F32', data: Float32Array.of(alpha) });
    }
  });
  native.writeSafetensors(file, Object.fromEntries(tensors.map(({ name, ...t }) => [name, t])), { format: 'pt' });
  return host;
}

/** Writes the tiny transformer with the LoRAs merged in float64 (then f32) to a new folder. */
function writeMerged(dir: string, loras: Array<{ host: HostLora; s: number }>): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(TINY, 'config.json'), path.join(dir, 'config.json'));
  const ck = native.openSafetensors(TINY);
  try {
    const tensors = ck.keys().map((name) => {
      const t = ck.load(name, backend, 'f32');
      const W = t.toFloat32();
      t.dispose();
      const shape = ck.entry(name).shape;
      const terms = loras.flatMap(({ host, s }) => {
        const h = host.get(name);
        return h ? [{ A: h.A, B: h.B, r: h.r, s }] : [];
      });
      const data = terms.length ? Float32Array.from(refMerge(W, shape[0]!, W.length / shape[0]!, terms)) : W;
      return { name, shape, dtype: 'F32' as const, data };
    });
    native.writeSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), Object.fromEntries(tensors.map(({ name, ...t }) => [name, t])), { format: 'pt' });
  } finally {
    ck.close();
  }
}

describe('patched tiny transformer', () => {
  let base: SanaTransformer;
  let shapes: Map<string, number[]>;
  const targetsOf = (i: number): string[] => [
    `transformer_blocks.${i}.attn1.to_q.weight`, `transformer_blocks.${i}.attn1.to_k.weight`, `transformer_blocks.${i}.attn1.to_v.weight`,
    `transformer_blocks.${i}.attn1.to_out.0.weight`, `transformer_blocks.${i}.attn2.to_q.weight`, `transformer_blocks.${i}.attn2.to_k.weight`,
    `transformer_blocks.${i}.attn2.to_out.0.weight`, `transformer_blocks.${i}.ff.conv_inverted.weight`, `transformer_blocks.${i}.ff.conv_point.weight`,
    `transformer_blocks.${i}.ff.conv_depth.weight`,
  ];
  let inputs: { x: { data: Float32Array; shape: number[] }; emb: { data: Float32Array; shape: number[] }; mask: Float32Array };
  const run = (m: SanaTransformer, pag = false): Float32Array => {
    const o = m.forward(inputs.x, [500, 500], inputs.emb, inputs.mask, pag ? { pagLayers: new Set([1]), pagSlice: [1, 2] } : {});
    const r = o.toFloat32();
    o.dispose();
    return r;
  };

  beforeAll(async () => {
    base = await loadSanaTransformer(TINY, backend, 'f32');
    shapes = expectedTransformerTensors(base.config);
    const C = base.config.inChannels, L = 6, Cc = base.config.captionChannels;
    inputs = {
      x: { data: randn(11, 2 * C * 4 * 4), shape: [2, C, 4, 4] },
      emb: { data: randn(12, 2 * L * Cc), shape: [2, L, Cc] },
      mask: Float32Array.from({ length: 2 * L }, (_, i) => (i % L < 4 ? 1 : 0)),
    };
  }, HEAVY_MS);
  afterAll(() => base?.dispose());

  const maxAbs = (a: Float32Array, b: Float32Array): number => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
  const maxOf = (a: Float32Array): number => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

  it('forward equals a model built from the merged weights; base unchanged; PAG on top', { timeout: HEAVY_MS }, async () => {
    const before = run(base);
    const file = path.join(tmp, 'one.safetensors');
    const host = makeLora(file, shapes, [...targetsOf(0), ...targetsOf(3), 'caption_projection.linear_1.weight', 'proj_out.weight', 'patch_embed.proj.weight'], 4, 100, 'diffusers');
    const patched = loadLoraPatched(base, TINY, [{ name: 'one', path: file, strength: 0.7 }], backend, native);
    expect(patched.bytes).toBeGreaterThan(0);
    expect(patched.bytes).toBeLessThan(base.bytes);
    const got = run(patched);
    writeMerged(path.join(tmp, 'merged1'), [{ host, s: 0.7 }]);
    const ref = await loadSanaTransformer(path.join(tmp, 'merged1'), backend, 'f32');
    const want = run(ref);
    const err = maxAbs(got, want) / Math.max(1, maxOf(want));
    console.log(`[lora] tiny patched forward vs merged checkpoint: max rel err ${err.toExponential(2)}; LoRA moved the output by ${maxAbs(got, before).toFixed(3)}`);
    expect(err).toBeLessThan(1e-5);
    expect(maxAbs(got, before)).toBeGreaterThan(1e-2);
    // PAG on the patched model matches PAG on the merged one.
    expect(maxAbs(run(patched, true), run(ref, true)) / Math.max(1, maxOf(want))).toBeLessThan(1e-5);
    ref.dispose();
    // The base model still gives its own output, bit for bit.
    expect(run(base)).toEqual(before);
    patched.dispose();
    expect(run(base)).toEqual(before);
  });

  it('stacking two LoRAs (diffusers + kohya with alpha) equals merging both', { timeout: HEAVY_MS }, async () => {
    const f1 = path.join(tmp, 'a.safetensors'), f2 = path.join(tmp, 'b.safetensors');
    const h1 = makeLora(f1, shapes, targetsOf(1), 2, 300, 'diffusers');
    const h2 = makeLora(f2, shapes, [...targetsOf(1).slice(0, 4), ...targetsOf(2)], 3, 400, 'kohya', 6);
    const patched = loadLoraPatched(base, TINY, [{ name: 'a', path: f1, strength: 1 }, { name: 'b', path: f2, strength: -0.5 }], backend, native);
    writeMerged(path.join(tmp, 'merged2'), [{ host: h1, s: 1 }, { host: h2, s: -0.5 * (6 / 3) }]);
    const ref = await loadSanaTransformer(path.join(tmp, 'merged2'), backend, 'f32');
    const want = run(ref);
    const err = maxAbs(run(patched), want) / Math.max(1, maxOf(want));
    console.log(`[lora] two stacked LoRAs vs merged checkpoint: max rel err ${err.toExponential(2)}`);
    expect(err).toBeLessThan(1e-5);
    ref.dispose();
    patched.dispose();
  });

  it('a patched model refuses to run once its base is gone', { timeout: HEAVY_MS }, async () => {
    const own = await loadSanaTransformer(TINY, backend, 'f32');
    const file = path.join(tmp, 'c.safetensors');
    makeLora(file, shapes, targetsOf(0).slice(0, 1), 2, 500, 'diffusers');
    const patched = loadLoraPatched(own, TINY, [{ name: 'c', path: file, strength: 1 }], backend, native);
    own.dispose();
    expect(() => run(patched)).toThrow(/base model was disposed/);
    patched.dispose();
  });

  it('bf16 models get the f32 merge rounded once', { timeout: HEAVY_MS }, async () => {
    const file = path.join(tmp, 'd.safetensors');
    const host = makeLora(file, shapes, ['transformer_blocks.0.attn1.to_q.weight'], 4, 600, 'diffusers');
    const ck = native.openSafetensors(TINY);
    try {
      const plan = parseLora(native.openSafetensors(file), shapes, { backend, where: 't' });
      const lsrc = native.openSafetensors(file);
      const { source } = mergedWeights(ck, [{ plan, src: lsrc, strength: 2, name: 'd' }]);
      const t = source.load('transformer_blocks.0.attn1.to_q.weight', backend, 'bf16');
      expect(t.dtype).toBe('bf16');
      const W = ck.load('transformer_blocks.0.attn1.to_q.weight', backend, 'f32');
      const D = W.shape[0]!;
      const want = refMerge(W.toFloat32(), D, D, [{ ...host.get('transformer_blocks.0.attn1.to_q.weight')!, s: 2 }]);
      const want16 = backend.fromArray(Float32Array.from(want), [D, D], 'bf16').toFloat32();
      const got = t.toFloat32();
      // Within one bf16 rounding of the exact value (ties may land on either side of f32 noise).
      expect(maxRelErr(got, Float64Array.from(want16))).toBeLessThan(1e-2);
      [t, W].forEach((x) => x.dispose());
      lsrc.close();
    } finally {
      ck.close();
    }
  });
});

describe('shipped tiny LoRAs', () => {
  it('fit their transformers (Sana 1.0 and, when present, Sprint)', async () => {
    const { makeTinyLoras, TINY_LORAS } = await import('../../scripts/make-tiny-models.ts');
    const { checkLoraFile } = await import('../../nodes/models/lora.ts');
    const { readTransformerConfig } = await import('../../nodes/models/sana_dit/config.ts');
    const models = repoModelsDir();
    makeTinyLoras(models);
    let checked = 0;
    for (const { file, pipeline } of TINY_LORAS) {
      const tr = path.join(models, 'sana', pipeline, 'transformer');
      if (!fs.existsSync(tr)) continue;
      const plan = checkLoraFile(path.join(models, 'loras', file), readTransformerConfig(tr), backend, native, file);
      const cfg = readTransformerConfig(tr);
      expect(plan.format).toBe('diffusers');
      expect(plan.terms).toHaveLength(cfg.numLayers * 10);
      expect(plan.terms.every((t) => t.rank === 4 && t.scale === 1)).toBe(true);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(1);
  });
});
