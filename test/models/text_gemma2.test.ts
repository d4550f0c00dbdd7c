// Gemma-2 encoder: loading layouts (prefix, shards, bf16 variant), config parsing, the node
// entry encodePrompts on a real backend, and input validation. The numeric match itself is the
// golden gemma2 stage (test/models/golden.test.ts).
import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as native from '../../native/index.ts';
import type { Tensor } from '../../native/api.ts';
import { gemma2Flops, gemma2ParamCount, loadGemma2, parseGemma2Config, roundToDType } from '../../nodes/models/gemma2.ts';
import { encodePrompts, realLength, tokenizePrompts } from '../../nodes/models/prompt.ts';
import { loadGemmaTokenizer } from '../../nodes/models/tokenizer.ts';
import { readFixture } from '../../nodes/models/golden/fixture.ts';
import { rowsOf } from '../../nodes/models/golden/gemma2.ts';
import { chooseComputeDType, pickSafetensors, readJsonConfig } from '../../nodes/models/weights.ts';
import { golden, haveGolden } from '../fixtures.ts';

const FIX = golden('gemma2');
const HAVE = haveGolden('gemma2');
const backend = native.getBackend('cpu');

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('Gemma-2 config', () => {
  const base = { model_type: 'gemma2', vocab_size: 64, hidden_size: 24, intermediate_size: 48, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, sliding_window: 4 };

  it('defaults: even layers slide, scale from query_pre_attn_scalar, softcap optional', () => {
    const c = parseGemma2Config({ ...base, query_pre_attn_scalar: 12, attn_logit_softcapping: null });
    expect(c.slidingLayers).toEqual([true, false, true, false]);
    expect(c.queryPreAttnScalar).toBe(12);
    expect(c.attnLogitSoftcapping).toBeUndefined();
  });

  it('honours layer_types and a null sliding window', () => {
    const types = ['full_attention', 'sliding_attention', 'full_attention', 'full_attention'];
    expect(parseGemma2Config({ ...base, layer_types: types }).slidingLayers).toEqual([false, true, false, false]);
    expect(parseGemma2Config({ ...base, sliding_window: null }).slidingLayers).toEqual([false, false, false, false]);
  });

  it('rejects what it cannot run, naming the field', () => {
    expect(() => parseGemma2Config({ ...base, model_type: 'llama' })).toThrow(/model_type/);
    expect(() => parseGemma2Config({ ...base, hidden_activation: 'relu' })).toThrow(/hidden_activation/);
    expect(() => parseGemma2Config({ ...base, num_key_value_heads: 3 })).toThrow(/num_key_value_heads/);
    expect(() => parseGemma2Config({ ...base, hidden_size: 0 })).toThrow(/hidden_size/);
  });

  it('counts Gemma-2-2B parameters as published (spec appendix B)', () => {
    const c = parseGemma2Config({ model_type: 'gemma2', vocab_size: 256000, hidden_size: 2304, intermediate_size: 9216, num_hidden_layers: 26, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 256, sliding_window: 4096 });
    expect(gemma2ParamCount(c)).toBe(2_614_341_888);
    // per layer per token: 2·(2304·(2048+1024+1024+2048) + 3·2304·9216) plus attention
    expect(gemma2Flops(c, 1, 1)).toBe(26 * (2 * (2304 * 6144 + 3 * 2304 * 9216) + 4 * 8 * 256));
  });

  it('rounds the embedding normalizer to the model dtype', () => {
    expect(roundToDType(Math.sqrt(2304), 'bf16')).toBe(48);
    expect(roundToDType(Math.sqrt(24), 'f32')).toBe(Math.fround(Math.sqrt(24)));
    expect(roundToDType(Math.sqrt(24), 'bf16')).toBe(4.90625);
    expect(roundToDType(1 + 2 ** -9, 'bf16')).toBe(1); // tie to even
  });
});

describe.skipIf(!HAVE)('Gemma-2 loading layouts', () => {
  const fxModel = HAVE ? readFixture(join(FIX, 'model.safetensors')) : undefined;
  const io = HAVE ? readFixture(join(FIX, 'io.safetensors')) : undefined;
  const ids = io ? rowsOf(io.get('input_ids'), 'ids') : [];
  const mask = io ? rowsOf(io.get('attention_mask'), 'mask') : [];
  const want = io?.get('last_hidden_state').data ?? new Float32Array();

  const folder = (write: (dir: string) => void): string => {
    const dir = mkdtempSync(join(tmpdir(), 'gemma-'));
    copyFileSync(join(FIX, 'config.json'), join(dir, 'config.json'));
    write(dir);
    return dir;
  };
  const tensors = (prefix: string, dtype: 'F32' | 'BF16' = 'F32') =>
    Object.fromEntries([...fxModel!.tensors].map(([k, t]) => [prefix + k, { dtype, shape: t.shape, data: t.data }]));

  const run = async (dir: string, dtype: 'f32' | 'bf16' = 'f32', variant?: string): Promise<Float32Array> => {
    const m = await loadGemma2(dir, backend, dtype, { native, variant });
    try {
      const h = m.encode(ids, mask);
      try { return h.toFloat32(); } finally { h.dispose(); }
    } finally {
      m.dispose();
    }
  };

  it('Gemma2ForCausalLM keys (model. prefix) load the same model', async () => {
    const dir = folder((d) => native.writeSafetensors(join(d, 'model.safetensors'), tensors('model.')));
    expect(maxAbsDiff(await run(dir), want)).toBeLessThan(1e-4);
  });

  it('sharded checkpoints load through their index', async () => {
    const dir = folder((d) => {
      const all = Object.entries(tensors(''));
      const half = Math.ceil(all.length / 2);
      const shards = [all.slice(0, half), all.slice(half)];
      const weightMap: Record<string, string> = {};
      shards.forEach((s, i) => {
        const name = `model-0000${i + 1}-of-00002.safetensors`;
        native.writeSafetensors(join(d, name), Object.fromEntries(s));
        for (const [k] of s) weightMap[k] = name;
      });
      writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    });
    expect(pickSafetensors(dir)).toMatch(/model\.safetensors\.index\.json$/);
    expect(maxAbsDiff(await run(dir), want)).toBeLessThan(1e-4);
  });

  it('bf16-stored variant files are picked and converted', async () => {
    const dir = folder((d) => native.writeSafetensors(join(d, 'model.bf16.safetensors'), tensors('', 'BF16')));
    expect(pickSafetensors(dir)).toMatch(/model\.bf16\.safetensors$/);
    expect(() => pickSafetensors(dir, { variant: 'fp16' })).toThrow(/variant fp16/);
    const got = await run(dir, 'f32', 'bf16');
    // Only the weights are rounded: close to, but not exactly, the f32 reference.
    const d = maxAbsDiff(got, want);
    expect(d).toBeGreaterThan(0);
    expect(d).toBeLessThan(0.15);
  });

  it('names the missing weight and refuses a non-Gemma folder', async () => {
    const dir = folder((d) => {
      const t = tensors('');
      delete t['layers.1.mlp.up_proj.weight'];
      native.writeSafetensors(join(d, 'model.safetensors'), t);
    });
    await expect(loadGemma2(dir, backend, 'f32', { native })).rejects.toThrow(/layers\.1\.mlp\.up_proj\.weight/);
    const other = folder((d) => native.writeSafetensors(join(d, 'model.safetensors'), { 'x.weight': { dtype: 'F32', shape: [1], data: new Float32Array(1) } }));
    await expect(loadGemma2(other, backend, 'f32', { native })).rejects.toThrow(/embed_tokens\.weight/);
    await expect(loadGemma2(FIX, backend, 'f16', { native })).rejects.toThrow(/f16/);
  });

  it('frees each linear weight once packed (CPU): exactly the originals go, later encodes of other lengths still match', async () => {
    const probe = await loadGemma2(FIX, backend, 'f32', { native });
    const c = probe.config;
    probe.dispose();
    // Bytes of one f32 copy of every linear weight: q, k, v, o, gate, up, down per layer (fused or not).
    const linearBytes = 4 * c.numLayers * c.hiddenSize * (2 * c.numHeads * c.headDim + 2 * c.numKvHeads * c.headDim + 3 * c.intermediateSize);
    /** Growth of the backend's allocation over the first encode (output disposed), and releases made. */
    const growth = async (allowRelease: boolean) => {
      let released = 0;
      const spy = new Proxy(backend, {
        get(t, k) {
          if (k === 'releasePackedSource') return (w: Tensor) => { if (!allowRelease) return false; const ok = t.releasePackedSource(w); if (ok) released++; return ok; };
          const v = Reflect.get(t, k, t) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
        },
      });
      const m = await loadGemma2(FIX, spy, 'f32', { native });
      try {
        const before = backend.memory().allocated;
        const h = m.encode(ids, mask);
        expect(maxAbsDiff(h.toFloat32(), want)).toBeLessThan(1e-4);
        h.dispose();
        const grew = backend.memory().allocated - before;
        const afterFirst = released;
        for (const q of [ids.map((r) => r.slice(0, 3)), ids]) {
          const h2 = m.encode(q, mask.map((r) => r.slice(0, q[0]!.length)));
          if (q === ids) expect(maxAbsDiff(h2.toFloat32(), want)).toBeLessThan(1e-4);
          h2.dispose();
        }
        expect(released).toBe(afterFirst); // once per weight
        return { grew, released };
      } finally {
        m.dispose();
      }
    };
    const kept = await growth(false);
    const freed = await growth(true);
    expect(kept.released).toBe(0);
    // per layer: the fused q|k|v and up|gate weights, o and down
    expect(freed.released).toBe(4 * c.numLayers);
    expect(kept.grew - freed.grew).toBe(linearBytes);
  });

  it('validates encode() inputs and reports its weight bytes', async () => {
    const m = await loadGemma2(FIX, backend, 'f32', { native });
    try {
      expect(m.bytes).toBe(gemma2ParamCount(m.config) * 4);
      expect(() => m.encode([[2, 64]], [[1, 1]])).toThrow(/outside the vocabulary/);
      expect(() => m.encode([[2, 5]], [[1]])).toThrow(/row 0/);
      expect(() => m.encode([], [])).toThrow(/at least one row/);
    } finally {
      m.dispose();
    }
    expect(() => m.encode([[2]], [[1]])).toThrow(/dispose/);
  });
});

describe('weight-folder helpers', () => {
  it('chooses bf16 only where the backend has a native bf16 linear, and never f16 for Gemma', () => {
    const want = backend.supportsOp('linear', 'bf16') ? 'bf16' : 'f32';
    expect(chooseComputeDType(backend)).toBe(want);
    expect(chooseComputeDType(backend, 'auto')).toBe(want);
    expect(chooseComputeDType(backend, 'f32')).toBe('f32');
    expect(() => chooseComputeDType(backend, 'f16', false)).toThrow(/f16/);
  });

  it('reads configs leniently and names the missing file or folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    writeFileSync(join(dir, 'config.json'), '{"lambda_min_clipped": -Infinity, "x": 1}');
    expect(readJsonConfig(dir)).toEqual({ lambda_min_clipped: -Infinity, x: 1 });
    expect(() => readJsonConfig(join(dir, 'nope'))).toThrow(/nope/);
    expect(() => pickSafetensors(join(dir, 'absent'))).toThrow(/absent/);
    expect(() => pickSafetensors(dir)).toThrow(/no safetensors weights/);
    writeFileSync(join(dir, 'diffusion_pytorch_model.fp16.safetensors'), '');
    writeFileSync(join(dir, 'diffusion_pytorch_model.safetensors'), '');
    expect(pickSafetensors(dir)).toMatch(/diffusion_pytorch_model\.safetensors$/);
    expect(pickSafetensors(dir, { variant: 'fp16' })).toMatch(/diffusion_pytorch_model\.fp16\.safetensors$/);
  });
});

describe.skipIf(!HAVE)('encodePrompts on the tiny Gemma', () => {
  // A tiny tokenizer folder whose ids fit the fixture model's 64-token vocabulary.
  const dir = mkdtempSync(join(tmpdir(), 'tok-'));
  mkdirSync(join(dir, 'tokenizer'));
  const vocab: Record<string, number> = { '<pad>': 0, '<eos>': 1, '<bos>': 2, '<unk>': 3, '▁': 4, a: 5, b: 6, c: 7, ':': 8, '\n': 9, '▁a': 10, '▁b': 11, '▁c': 12 };
  writeFileSync(join(dir, 'tokenizer', 'tokenizer.json'), JSON.stringify({
    version: '1.0',
    added_tokens: ['<pad>', '<eos>', '<bos>', '<unk>'].map((c, id) => ({ id, content: c, special: true, single_word: false, lstrip: false, rstrip: false, normalized: false })),
    normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    model: { type: 'BPE', vocab, merges: ['▁ a', '▁ b', '▁ c'], unk_token: '<unk>', byte_fallback: false, fuse_unk: true, dropout: null, continuing_subword_prefix: null, end_of_word_suffix: null, ignore_merges: false },
  }));
  const tok = loadGemmaTokenizer(dir);
  const opts = { chi: ['c:', 'b: '] as const, maxLength: 5 };

  it('selects [0] + the last M-1 rows of the encoder output and builds both masks', async () => {
    const te = await loadGemma2(FIX, backend, 'f32', { native });
    try {
      const r = encodePrompts(te, tok, { ...opts, positive: ['A B', 'c'], negative: '' });
      const t = tokenizePrompts(tok, ['A B', 'c'], opts);
      expect(t.lengthAll).toBe(t.nChi + 5 - 2);
      expect(r.cond.embeds.shape).toEqual([2, 5, 24]);
      expect(r.cond.shape).toEqual([2, 5]);
      const full = te.encode(t.ids, t.mask);
      const fullH = full.toFloat32();
      full.dispose();
      const got = r.cond.embeds.toFloat32();
      const whole = encodePrompts(te, tok, { ...opts, positive: ['A B', 'c'], encodePadding: true });
      const gotWhole = whole.cond.embeds.toFloat32();
      whole.cond.embeds.dispose();
      // Encoded: up to the longest row's last real token; a shorter row's padding before it too.
      const Lr = realLength(t.mask);
      expect(t.mask.every((row) => row.slice(Lr).every((m) => m === 0))).toBe(true);
      let masked = 0;
      for (let b = 0; b < 2; b++) {
        t.select.forEach((j, s) => {
          // Real tokens: the same bits whether or not the padding was encoded (Gemma is causal);
          // padding: zeros unless encodePadding, which gives diffusers' rows.
          for (let d = 0; d < 24; d++) {
            const i = (b * 5 + s) * 24 + d;
            expect(gotWhole[i]).toBe(fullH[(b * t.lengthAll + j) * 24 + d]);
            expect(got[i]).toBe(j < Lr ? fullH[(b * t.lengthAll + j) * 24 + d] : 0);
          }
          if (j >= Lr) masked++;
          expect(r.cond.mask[b * 5 + s]).toBe(t.mask[b][j]);
        });
      }
      expect(masked).toBeGreaterThan(0); // the case has padding to skip
      // uncond: "" -> [BOS, pad…] without CHI, its own mask
      expect(r.uncond!.embeds.shape).toEqual([2, 5, 24]);
      expect(Array.from(r.uncond!.mask)).toEqual([1, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
      expect(r.tokens.uncond!.ids[0]).toEqual([2, 0, 0, 0, 0]);
      const un = r.uncond!.embeds.toFloat32();
      expect(un.subarray(24, 5 * 24).every((v) => v === 0)).toBe(true); // "" is BOS + padding
      const nv = encodePrompts(te, tok, { ...opts, positive: ['A B', 'c'], negative: [''], uncondMask: 'cond' });
      expect(Array.from(nv.uncond!.mask)).toEqual(Array.from(r.cond.mask));
      // With the cond mask the uncond padding is attended: encoded whole, as diffusers does.
      const negFull = te.encode(r.tokens.uncond!.ids, r.tokens.uncond!.mask);
      expect(Array.from(nv.uncond!.embeds.toFloat32())).toEqual(Array.from(negFull.toFloat32()));
      expect(Array.from(un.subarray(0, 24))).toEqual(Array.from(negFull.toFloat32().subarray(0, 24))); // BOS row
      negFull.dispose();
      for (const e of [r.cond.embeds, r.uncond!.embeds, nv.cond.embeds, nv.uncond!.embeds]) e.dispose();
      expect(() => encodePrompts(te, tok, { ...opts, positive: ['a', 'b', 'c'], negative: ['x', 'y'] })).toThrow(/2 negative prompts for 3/);
      const single = encodePrompts(te, tok, { ...opts, positive: 'a' });
      expect(single.uncond).toBeUndefined();
      single.cond.embeds.dispose();
    } finally {
      te.dispose();
    }
  });

  it('bf16: the real tokens come out with the same bits whether or not the padding is encoded', async () => {
    const te = await loadGemma2(FIX, backend, 'bf16', { native });
    try {
      const a = encodePrompts(te, tok, { ...opts, positive: ['A B', 'c'], negative: 'a' });
      const b = encodePrompts(te, tok, { ...opts, positive: ['A B', 'c'], negative: 'a', encodePadding: true });
      for (const [x, y, t] of [[a.cond, b.cond, a.tokens.cond], [a.uncond!, b.uncond!, a.tokens.uncond!]] as const) {
        const Lr = realLength(t.mask);
        const gx = x.embeds.toFloat32(), gy = y.embeds.toFloat32();
        t.select.forEach((j, s) => {
          if (j >= Lr) return;
          for (let bb = 0; bb < 2; bb++) for (let d = 0; d < 24; d++) expect(gx[(bb * 5 + s) * 24 + d]).toBe(gy[(bb * 5 + s) * 24 + d]);
        });
        x.embeds.dispose();
        y.embeds.dispose();
      }
    } finally {
      te.dispose();
    }
  });
});
