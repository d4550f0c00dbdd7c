// SanaTransformer2DModel: config parsing and refusal, loader shape checks on the real 600M/1600M key
// lists, host-side embeddings, guidance math, the golden fixtures (f32 and bf16), and tiny
// random-weight models in the real layouts (sharded, with PE, non-square grids, PAG slices).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as native from '../../native/index.ts';
import type { SafetensorsEntry } from '../../native/api.ts';
import { runTransformerGolden } from '../../nodes/models/golden/transformer.ts';
import { readFixture } from '../../nodes/models/golden/fixture.ts';
import { parseSanaTransformerConfig, type SanaTransformerConfig } from '../../nodes/models/sana_dit/config.ts';
import { sincosPosEmbed, timestepSinusoid } from '../../nodes/models/sana_dit/embeddings.ts';
import { combineGuidance, guidanceLayout, pagScaleAt } from '../../nodes/models/sana_dit/guidance.ts';
import { expectedTransformerTensors, validateTransformerTensors } from '../../nodes/models/sana_dit/layout.ts';
import { loadSanaTransformer } from '../../nodes/models/sana_dit/load.ts';
import { GOLDEN } from '../fixtures.ts';

// Model runs on the shared 2-core machine can take minutes under load.
const HEAVY_MS = 300_000;
const backend = native.getBackend('cpu');

const REAL_600M = {
  _class_name: 'SanaTransformer2DModel', attention_bias: false, attention_head_dim: 32, caption_channels: 2304,
  cross_attention_dim: 1152, cross_attention_head_dim: 72, dropout: 0.0, in_channels: 32, interpolation_scale: null,
  mlp_ratio: 2.5, norm_elementwise_affine: false, norm_eps: 1e-6, num_attention_heads: 36, num_cross_attention_heads: 16,
  num_layers: 28, out_channels: 32, patch_size: 1, sample_size: 32,
};
const REAL_1600M_4K = {
  ...REAL_600M, cross_attention_dim: 2240, cross_attention_head_dim: 112, num_attention_heads: 70, num_cross_attention_heads: 20,
  num_layers: 20, sample_size: 128, interpolation_scale: 2.0,
};

/** A key list with shapes, as a checkpoint header would give it, without any data. */
function headerSource(m: Map<string, number[]>): { keys(): string[]; entry(n: string): SafetensorsEntry } {
  return {
    keys: () => [...m.keys()],
    entry: (n) => {
      const s = m.get(n);
      if (!s) throw new Error(`no ${n}`);
      return { name: n, dtype: 'BF16', shape: s, file: 'diffusion_pytorch_model.safetensors' };
    },
  };
}

const count = (m: Map<string, number[]>): number => [...m.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);

describe('config', () => {
  it('parses the fixture config and derives widths', () => {
    const cfg = parseSanaTransformerConfig({ ...REAL_600M });
    expect(cfg.innerDim).toBe(1152);
    expect(cfg.ffnHidden).toBe(2880);
    expect(cfg.interpolationScale).toBeNull();
    const cfg4k = parseSanaTransformerConfig({ ...REAL_1600M_4K });
    expect(cfg4k.innerDim).toBe(2240);
    expect(cfg4k.ffnHidden).toBe(5600);
    expect(cfg4k.interpolationScale).toBe(2);
  });

  it('refuses unknown q/k norms and foreign classes, naming the file (SANA 1.5 / Sprint: test/models/sana15.test.ts)', () => {
    expect(() => parseSanaTransformerConfig({ ...REAL_600M, qk_norm: 'layer_norm' }, '/m/transformer/config.json'))
      .toThrow(/\/m\/transformer\/config\.json: qk_norm "layer_norm" is not supported/);
    expect(() => parseSanaTransformerConfig({ ...REAL_600M, guidance_embeds: 'yes' }, 'x/config.json')).toThrow(/x\/config\.json: guidance_embeds must be true or false/);
    expect(() => parseSanaTransformerConfig({ ...REAL_600M, _class_name: 'FluxTransformer2DModel' }, 'c.json')).toThrow(/c\.json: _class_name/);
    expect(() => parseSanaTransformerConfig({ ...REAL_600M, cross_attention_dim: 2304 }, 'c.json')).toThrow(/cross_attention_dim 2304/);
  });
});

describe('loader shape checks on the real key lists (no weights allocated)', () => {
  it('600M: 548 tensors, 591,747,872 parameters (spec Appendix B)', () => {
    const cfg = parseSanaTransformerConfig({ ...REAL_600M });
    const m = expectedTransformerTensors(cfg);
    expect(m.size).toBe(548);
    expect(count(m)).toBe(591_747_872);
    expect(() => validateTransformerTensors(cfg, headerSource(m), 'real600m')).not.toThrow();
  });

  it('1600M (every resolution has the same tensors): 396 tensors, 1,604,462,752 parameters', () => {
    const cfg = parseSanaTransformerConfig({ ...REAL_1600M_4K });
    const m = expectedTransformerTensors(cfg);
    expect(m.size).toBe(396);
    expect(count(m)).toBe(1_604_462_752);
  });

  it('names the tensor, file and shapes on a mismatch; detects SANA-1.5 and missing tensors', () => {
    const cfg = parseSanaTransformerConfig({ ...REAL_600M });
    const bad = expectedTransformerTensors(cfg);
    bad.set('transformer_blocks.3.ff.conv_point.weight', [1152, 2881, 1, 1]);
    expect(() => validateTransformerTensors(cfg, headerSource(bad), 'ckpt'))
      .toThrow(/transformer_blocks\.3\.ff\.conv_point\.weight has shape \[1152,2881,1,1\] \(file diffusion_pytorch_model\.safetensors\), config implies \[1152,2880,1,1\]/);
    const v15 = expectedTransformerTensors(cfg);
    v15.set('transformer_blocks.0.attn1.norm_q.weight', [1152]);
    expect(() => validateTransformerTensors(cfg, headerSource(v15), 'ckpt')).toThrow(/SANA-1\.5 checkpoint/);
    const missing = expectedTransformerTensors(cfg);
    missing.delete('caption_norm.weight');
    expect(() => validateTransformerTensors(cfg, headerSource(missing), 'ckpt')).toThrow(/missing caption_norm\.weight \[1152\]/);
    // a 1600M checkpoint under a 600M config
    const big = expectedTransformerTensors(parseSanaTransformerConfig({ ...REAL_1600M_4K }));
    expect(() => validateTransformerTensors(cfg, headerSource(big), 'ckpt')).toThrow(/do not match its config/);
  });
});

describe('host-side embeddings', () => {
  it('timestep sinusoid is [cos, sin] of t·10000^(-k/128)', () => {
    const e = timestepSinusoid([0, 500]);
    expect(e.length).toBe(512);
    for (let k = 0; k < 128; k++) {
      expect(e[k]).toBe(1);
      expect(e[128 + k]).toBe(0);
      const arg = 500 * Math.exp((-Math.log(10000) * k) / 128);
      expect(Math.abs(e[256 + k]! - Math.cos(arg))).toBeLessThan(5e-5);
      expect(Math.abs(e[384 + k]! - Math.sin(arg))).toBeLessThan(5e-5);
    }
  });

  it('2-D sin-cos PE puts the column in the first half and the row in the second', () => {
    // D = 8: E = 4 dims per axis, ω = [1, 1/100]; base = grid size, scale 1 → positions = indices
    const pe = sincosPosEmbed(8, 2, 3, 2, 1);
    expect(pe.length).toBe(6 * 8);
    const tok = (r: number, c: number): number[] => Array.from(pe.subarray((r * 3 + c) * 8, (r * 3 + c + 1) * 8));
    const want = (r: number, c: number): number[] => {
      // grid values: c / (w / base) and r / (h / base) with base 2: w = 3 → c·2/3, h = 2 → r
      const x = Math.fround(c / Math.fround(3 / 2)), y = r;
      return [Math.sin(x), Math.sin(x / 100), Math.cos(x), Math.cos(x / 100), Math.sin(y), Math.sin(y / 100), Math.cos(y), Math.cos(y / 100)];
    };
    for (const [r, c] of [[0, 0], [1, 2], [0, 1]] as const) {
      tok(r, c).forEach((v, i) => expect(v).toBeCloseTo(want(r, c)[i]!, 6));
    }
  });
});

describe('guidance', () => {
  it('layouts match shared/spec/sana.md §7.1', () => {
    expect(guidanceLayout('cfg+pag', 2)).toEqual({ copies: 3, text: ['uncond', 'cond', 'cond'], pagSlice: [4, 6] });
    expect(guidanceLayout('pag', 1)).toEqual({ copies: 2, text: ['cond', 'cond'], pagSlice: [1, 2] });
    expect(guidanceLayout('cfg', 1).pagSlice).toBeUndefined();
    expect(pagScaleAt(3, 0, 999)).toBe(3);
    expect(pagScaleAt(3, 0.01, 800)).toBe(1);
    expect(pagScaleAt(3, 0.1, 0)).toBe(0);
  });

  it('CFG 4.5 + PAG 2.0 reproduces every step of the pipeline fixture', () => {
    const fx = readFixture(join(GOLDEN, 'pipeline/io.safetensors'));
    for (let s = 0; s < 4; s++) {
      const got = combineGuidance(fx.get(`step${s}.transformer_output`).data, 'cfg+pag', { cfg: 4.5, pag: 2.0 });
      const want = fx.get(`step${s}.guided_output`).data;
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      expect(worst).toBeLessThan(2e-6);
    }
  });

  it('CFG, PAG-only and none use their own formulas', () => {
    const out = Float32Array.from([1, 2, 3, 5, 10, 20]);
    expect(Array.from(combineGuidance(out, 'cfg', { cfg: 2 }))).toEqual([1 + 2 * (5 - 1), 2 + 2 * (10 - 2), 3 + 2 * (20 - 3)]);
    expect(Array.from(combineGuidance(out, 'pag', { pag: 3 }))).toEqual([1 + 3 * (1 - 5), 2 + 3 * (2 - 10), 3 + 3 * (3 - 20)]);
    expect(Array.from(combineGuidance(out.subarray(0, 3), 'none', {}))).toEqual([1, 2, 3]);
    expect(() => combineGuidance(out.subarray(0, 4), 'cfg+pag', {})).toThrow(/not a multiple of 3/);
  });
});

describe('golden fixtures', () => {
  it('f32: io, io_pag (+ output_without_pag) and every intermediate within 1e-4', async () => {
    const r = await runTransformerGolden({ backend, native, dtype: 'f32', dir: GOLDEN });
    const bad = r.checks.filter((c) => !c.ok);
    expect(bad).toEqual([]);
    expect(r.checks.length).toBeGreaterThanOrEqual(3 + 2 * 8);
  }, HEAVY_MS);

  it('bf16 and f16: within the stated bounds', async () => {
    for (const dtype of ['bf16', 'f16'] as const) {
      const r = await runTransformerGolden({ backend, native, dtype, dir: GOLDEN });
      expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    }
  }, HEAVY_MS);
});

// ------------------------------------------------------------------------------------------------
// Tiny random models with the real key names

let seed = 12345;
function rand(n: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    a[i] = ((seed / 4294967296) * 2 - 1) * scale;
  }
  return a;
}

const tmpDirs: string[] = [];
afterAll(() => tmpDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Writes config.json + random weights as two shards with an index (diffusers layout). */
function writeTinyModel(raw: Record<string, unknown>, dtype: 'F32' | 'BF16' = 'F32'): { dir: string; cfg: SanaTransformerConfig } {
  const cfg = parseSanaTransformerConfig(raw);
  const dir = mkdtempSync(join(tmpdir(), 'sana-dit-'));
  tmpDirs.push(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(raw));
  const shards: Array<Record<string, { dtype: 'F32' | 'BF16'; shape: number[]; data: Float32Array | Uint16Array }>> = [{}, {}];
  const weightMap: Record<string, string> = {};
  let i = 0;
  for (const [name, shape] of expectedTransformerTensors(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length > 1 ? n / shape[0]! : 1;
    const vals = rand(n, name.endsWith('.bias') || name.includes('scale_shift') || name.includes('norm') ? 0.2 : 1 / Math.sqrt(fanIn));
    const data = dtype === 'F32' ? vals : Uint16Array.from(vals, (v) => new Uint32Array(Float32Array.of(v).buffer)[0]! >>> 16);
    const shard = i++ % 2;
    shards[shard]![name] = { dtype, shape, data };
    weightMap[name] = `diffusion_pytorch_model-0000${shard + 1}-of-00002.safetensors`;
  }
  shards.forEach((s, k) => native.writeSafetensors(join(dir, `diffusion_pytorch_model-0000${k + 1}-of-00002.safetensors`), s));
  writeFileSync(join(dir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return { dir, cfg };
}

const TINY_600M_LIKE = { ...REAL_600M, num_attention_heads: 3, attention_head_dim: 8, num_cross_attention_heads: 2, cross_attention_head_dim: 12, cross_attention_dim: 24, caption_channels: 20, num_layers: 3 };
const TINY_1600M_LIKE = { ...REAL_1600M_4K, num_attention_heads: 2, attention_head_dim: 16, num_cross_attention_heads: 4, cross_attention_head_dim: 8, cross_attention_dim: 32, caption_channels: 12, num_layers: 2, in_channels: 4, out_channels: 4, sample_size: 8 };

function inputs(cfg: SanaTransformerConfig, B: number, h: number, w: number, L = 7) {
  const x = { data: rand(B * cfg.inChannels * h * w, 1), shape: [B, cfg.inChannels, h, w] };
  const y = { data: rand(B * L * cfg.captionChannels, 1), shape: [B, L, cfg.captionChannels] };
  const mask = new Float32Array(B * L);
  for (let b = 0; b < B; b++) for (let j = 0; j < L; j++) mask[b * L + j] = j <= b + 1 ? 1 : 0;
  return { x, y, mask };
}

describe('tiny random models in the real layouts', () => {
  it('600M-like and 1600M-4K-like configs load from sharded folders and run on non-square grids', async () => {
    for (const raw of [TINY_600M_LIKE, TINY_1600M_LIKE]) {
      const { dir, cfg } = writeTinyModel(raw);
      const model = await loadSanaTransformer(dir, backend, 'f32', { native });
      try {
        expect(model.bytes).toBe(count(expectedTransformerTensors(cfg)) * 4);
        const { x, y, mask } = inputs(cfg, 2, 3, 5);
        const v = model.forward(x, [999, 136], y, mask);
        expect(v.shape).toEqual([2, cfg.outChannels, 3, 5]);
        expect(v.dtype).toBe('f32');
        const d = v.toFloat32();
        v.dispose();
        expect(d.every(Number.isFinite)).toBe(true);
        expect(Math.max(...d.map(Math.abs))).toBeGreaterThan(1e-3);
      } finally {
        model.dispose();
      }
    }
  }, HEAVY_MS);

  it('frees its packed linears\' originals after their first use (CPU): exactly those, once; later steps and prompts match a model that keeps them', async () => {
    // (LoRA patches borrowing released weights: test/models/lora.test.ts runs on this path too.)
    const { dir, cfg } = writeTinyModel(TINY_600M_LIKE);
    const D = cfg.innerDim, X = cfg.numCrossHeads * cfg.crossHeadDim;
    // Per block, f32: q|k|v (3D×D), attn1 out (D×D), attn2 q (X×D), k|v (2X×D), out (D×X), and the
    // 1×1 convs as linears (2F×D, D×F).
    const F = cfg.ffnHidden;
    const releasable = 4 * cfg.numLayers * (3 * D * D + D * D + X * D + 2 * X * D + D * X + 2 * F * D + D * F);
    const { x, y, mask } = inputs(cfg, 2, 4, 3);
    type Model = Awaited<ReturnType<typeof loadSanaTransformer>>;
    const run = (m: Model, text: ReturnType<Model['prepareText']>): Float32Array => {
      const v = m.step(x, [600, 600], text);
      try { return v.toFloat32(); } finally { v.dispose(); }
    };
    const bind = (t: typeof backend, k: string | symbol): unknown => {
      const v = Reflect.get(t, k, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    };
    let released = 0, releasedBytes = 0;
    const spy = new Proxy(backend, {
      get: (t, k) => k === 'releasePackedSource'
        ? (w: Parameters<typeof t.releasePackedSource>[0]) => { const n = w.nbytes, ok = t.releasePackedSource(w); if (ok) { released++; releasedBytes += n; } return ok; }
        : bind(t, k),
    });
    const keeps = new Proxy(backend, { get: (t, k) => (k === 'releasePackedSource' ? () => false : bind(t, k)) });
    const ref = await loadSanaTransformer(dir, keeps, 'f32', { native });
    let want: Float32Array;
    try {
      const refText = ref.prepareText(y, mask);
      want = run(ref, refText);
      refText.dispose();
    } finally {
      ref.dispose();
    }
    const m = await loadSanaTransformer(dir, spy, 'f32', { native });
    try {
      const text = m.prepareText(y, mask);
      expect(Array.from(run(m, text))).toEqual(Array.from(want));
      expect(released).toBe(7 * cfg.numLayers);
      expect(releasedBytes).toBe(releasable);
      // a second step and a second prompt: nothing more is released, results unchanged
      expect(Array.from(run(m, text))).toEqual(Array.from(want));
      const text2 = m.prepareText(y, mask);
      expect(Array.from(run(m, text2))).toEqual(Array.from(want));
      text.dispose();
      text2.dispose();
      expect(released).toBe(7 * cfg.numLayers);
    } finally {
      m.dispose();
    }
  }, HEAVY_MS);

  it('the sin-cos PE (interpolation_scale) is applied: same weights without it give another output', async () => {
    const withPe = writeTinyModel(TINY_1600M_LIKE);
    const noPe = { ...withPe, dir: mkdtempSync(join(tmpdir(), 'sana-dit-')) };
    tmpDirs.push(noPe.dir);
    // identical weights, config without PE
    const { cpSync } = await import('node:fs');
    cpSync(withPe.dir, noPe.dir, { recursive: true });
    writeFileSync(join(noPe.dir, 'config.json'), JSON.stringify({ ...TINY_1600M_LIKE, interpolation_scale: null }));
    const a = await loadSanaTransformer(withPe.dir, backend, 'f32', { native });
    const b = await loadSanaTransformer(noPe.dir, backend, 'f32', { native });
    try {
      const { x, y, mask } = inputs(withPe.cfg, 1, 4, 4);
      const va = a.forward(x, [500], y, mask), vb = b.forward(x, [500], y, mask);
      const da = va.toFloat32(), db = vb.toFloat32();
      va.dispose(); vb.dispose();
      let diff = 0;
      for (let i = 0; i < da.length; i++) diff = Math.max(diff, Math.abs(da[i]! - db[i]!));
      expect(diff).toBeGreaterThan(1e-3);
    } finally {
      a.dispose(); b.dispose();
    }
  }, HEAVY_MS);

  it('PAG perturbs only its slice and only through the listed blocks; bad PAG arguments are refused', async () => {
    const { dir, cfg } = writeTinyModel(TINY_600M_LIKE);
    const model = await loadSanaTransformer(dir, backend, 'f32', { native });
    try {
      const one = inputs(cfg, 1, 4, 3);
      // batch [u, c, p] of the same latent; text rows: random, cond, cond
      const x = { data: new Float32Array([...one.x.data, ...one.x.data, ...one.x.data]), shape: [3, cfg.inChannels, 4, 3] };
      const y2 = inputs(cfg, 2, 4, 3);
      const L = 7, Cc = cfg.captionChannels;
      const ycond = one.y.data;
      const y = { data: new Float32Array([...y2.y.data.subarray(0, L * Cc), ...ycond, ...ycond]), shape: [3, L, Cc] };
      const mask = new Float32Array([...y2.mask.subarray(0, L), ...one.mask, ...one.mask]);
      const run = (opts: Parameters<typeof model.forward>[4]): Float32Array => {
        const v = model.forward(x, [700], y, mask, opts);
        try { return v.toFloat32(); } finally { v.dispose(); }
      };
      const plain = run({});
      const pag = run({ pagLayers: new Set([1]), pagSlice: [2, 3] });
      const n = plain.length / 3;
      // rows 0 and 1 are untouched, bit for bit
      expect(Array.from(pag.subarray(0, 2 * n))).toEqual(Array.from(plain.subarray(0, 2 * n)));
      // without PAG the perturbed row equals the cond row (same latent and text)
      let same = 0, moved = 0;
      for (let i = 0; i < n; i++) {
        same = Math.max(same, Math.abs(plain[2 * n + i]! - plain[n + i]!));
        moved = Math.max(moved, Math.abs(pag[2 * n + i]! - plain[2 * n + i]!));
      }
      expect(same).toBeLessThan(1e-5);
      expect(moved).toBeGreaterThan(1e-3);
      expect(() => run({ pagLayers: new Set([3]), pagSlice: [2, 3] })).toThrow(/PAG layer 3 is not a block index in 0\.\.2/);
      expect(() => run({ pagLayers: new Set([0]) })).toThrow(/without pagSlice/);
      expect(() => run({ pagLayers: new Set([0]), pagSlice: [2, 4] })).toThrow(/pagSlice \[2, 4\)/);
    } finally {
      model.dispose();
    }
  }, HEAVY_MS);

  it('bf16-stored weights load for bf16 compute and track the f32 result', async () => {
    const { dir, cfg } = writeTinyModel(TINY_600M_LIKE, 'BF16');
    const m32 = await loadSanaTransformer(dir, backend, 'f32', { native });
    const m16 = await loadSanaTransformer(dir, backend, 'bf16', { native });
    try {
      // half the bytes, except the biases: both keep them in f32 (WeightSet.bias); the fused
      // k|v bias of the cross attention is a concatenation and stays in the compute dtype
      let biasBytes = 0;
      for (const [name, shape] of expectedTransformerTensors(cfg))
        if (name.endsWith('.bias') && !/attn2\.to_[kv]\.bias|attn1\.to_[qkv]\.bias/.test(name)) biasBytes += 4 * shape.reduce((a, b) => a * b, 1);
      expect(biasBytes).toBeGreaterThan(0);
      expect(m16.bytes).toBe((m32.bytes - biasBytes) / 2 + biasBytes);
      const { x, y, mask } = inputs(cfg, 2, 4, 4);
      const a = m32.forward(x, [250, 250], y, mask), b = m16.forward(x, [250, 250], y, mask);
      const da = a.toFloat32(), db = b.toFloat32();
      a.dispose(); b.dispose();
      let num = 0, den = 0;
      for (let i = 0; i < da.length; i++) { num += (da[i]! - db[i]!) ** 2; den += da[i]! ** 2; }
      expect(Math.sqrt(num / den)).toBeLessThan(0.05);
    } finally {
      m32.dispose(); m16.dispose();
    }
  }, HEAVY_MS);

  it('prepared text: every step on it equals a fresh forward bit for bit; misuse is refused; dispose frees it', async () => {
    const { dir, cfg } = writeTinyModel(TINY_600M_LIKE);
    const model = await loadSanaTransformer(dir, backend, 'bf16', { native });
    const other = await loadSanaTransformer(dir, backend, 'bf16', { native });
    try {
      const { x, y, mask } = inputs(cfg, 2, 4, 3);
      const host = (t: ReturnType<typeof model.forward>): number[] => {
        try { return Array.from(t.toFloat32()); } finally { t.dispose(); }
      };
      host(model.forward(x, [900, 900], y, mask)); // packs the weights (cached on them) first
      const before = backend.memory().allocated;
      const text = model.prepareText(y, mask);
      expect([text.rows, text.tokens]).toEqual([2, y.shape[1]]);
      expect(text.bytes).toBeGreaterThan(0);
      // Two steps at other timesteps and latents, one with PAG: the prepared k|v serve them all.
      const x2 = { data: x.data.map((v) => v * 0.5 + 0.1), shape: x.shape };
      const pag = { pagLayers: new Set([1]), pagSlice: [1, 2] as [number, number] };
      expect(host(model.step(x, [900, 900], text))).toEqual(host(model.forward(x, [900, 900], y, mask)));
      expect(host(model.step(x2, [300, 300], text, pag))).toEqual(host(model.forward(x2, [300, 300], y, mask, pag)));
      expect(() => other.step(x, [1], text)).toThrow(/prepared by another model/);
      expect(() => model.step({ data: x.data.subarray(0, x.data.length / 2), shape: [1, ...x.shape.slice(1)] }, [1], text)).toThrow(/text embeddings have batch 2, latent batch is 1/);
      text.dispose();
      expect(backend.memory().allocated).toBe(before);
      expect(() => model.step(x, [1], text)).toThrow(/prepared text that was disposed/);
    } finally {
      model.dispose(); other.dispose();
    }
  }, HEAVY_MS);

  it('masked text positions do not reach the output: any values there give the same bits (why the encoder may skip the padding)', async () => {
    const { dir, cfg } = writeTinyModel(TINY_600M_LIKE);
    for (const dtype of ['f32', 'bf16'] as const) {
      const model = await loadSanaTransformer(dir, backend, dtype, { native });
      try {
        const { x, y, mask } = inputs(cfg, 2, 4, 3); // rows keep 2 and 3 of 7 tokens
        const L = y.shape[1]!, Cc = cfg.captionChannels;
        const zeroed = y.data.slice();
        for (let b = 0; b < 2; b++) for (let j = 0; j < L; j++) if (!mask[b * L + j]) zeroed.fill(0, (b * L + j) * Cc, (b * L + j + 1) * Cc);
        const out = (data: Float32Array) => {
          const v = model.forward(x, [600, 600], { data, shape: y.shape }, mask);
          try { return Array.from(v.toFloat32()); } finally { v.dispose(); }
        };
        expect(out(zeroed)).toEqual(out(y.data));
      } finally {
        model.dispose();
      }
    }
  }, HEAVY_MS);

  it('checks inputs against the config', async () => {
    const { dir, cfg } = writeTinyModel(TINY_600M_LIKE);
    const model = await loadSanaTransformer(dir, backend, 'f32', { native });
    try {
      const { x, y, mask } = inputs(cfg, 2, 2, 2);
      expect(() => model.forward(x, [1, 2, 3], y, mask)).toThrow(/3 timesteps for a batch of 2/);
      expect(() => model.forward({ data: x.data, shape: [2, 8, 4, 2] }, [1], y, mask)).toThrow(/latent has 8 channels, config in_channels is 32/);
      expect(() => model.forward(x, [1], y, mask.subarray(0, 5))).toThrow(/attention mask has 5 values/);
    } finally {
      model.dispose();
    }
    expect(() => model.forward(inputs(cfg, 1, 2, 2).x, [1], inputs(cfg, 1, 2, 2).y, inputs(cfg, 1, 2, 2).mask)).toThrow(/after dispose/);
  }, HEAVY_MS);
});
