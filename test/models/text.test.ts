// Tokenizer (real 256k Gemma vocabulary) and SanaPipeline prompt handling (CHI, L_all, selection).
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundledGemmaTokenizerFiles, loadGemmaTokenizer } from '../../nodes/models/tokenizer.ts';
import {
  CHI_DIFFUSERS, CHI_NVLABS, chiLines, preprocessPrompt, selectIndices, tokenizeNegative, tokenizePrompts,
} from '../../nodes/models/prompt.ts';

const tok = loadGemmaTokenizer();

describe('Gemma tokenizer', () => {
  it('encodes with BOS and no EOS, matching known Gemma ids', () => {
    expect(tok.vocabSize).toBe(256000);
    expect([tok.padId, tok.eosId, tok.bosId]).toEqual([0, 1, 2]);
    expect(tok.encode('Hello world')).toEqual([2, 4521, 2134]);
    expect(tok.encode('Hello world', false)).toEqual([4521, 2134]);
    expect(tok.encode('')).toEqual([2]);
  });

  it('round-trips non-ASCII text and emoji through byte fallback', () => {
    const text = 'a photo of an astronaut — détaillé 🚀\nnew line';
    expect(tok.decode(tok.encode(text), true)).toBe(text);
  });

  it('pads on the right, truncates on the right keeping BOS, and builds the mask', () => {
    const b = tok.encodeBatch(['Hello world', ''], 5);
    expect(b.ids).toEqual([[2, 4521, 2134, 0, 0], [2, 0, 0, 0, 0]]);
    expect(b.mask).toEqual([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]);
    const long = tok.encodeBatch(['one two three four five six'], 3);
    expect(long.ids[0]).toEqual(tok.encode('one two three four five six').slice(0, 3));
    expect(long.mask[0]).toEqual([1, 1, 1]);
  });

  it('is loaded once per content and prefers a model folder\'s own tokenizer.json', () => {
    expect(loadGemmaTokenizer()).toBe(tok);
    // A folder without tokenizer.json falls back to the bundled vocabulary.
    const empty = mkdtempSync(join(tmpdir(), 'tok-'));
    expect(loadGemmaTokenizer(empty)).toBe(tok);
    // A folder with its own (tiny) tokenizer wins.
    const dir = mkdtempSync(join(tmpdir(), 'tok-'));
    mkdirSync(join(dir, 'tokenizer'));
    const vocab: Record<string, number> = { '<pad>': 0, '<eos>': 1, '<bos>': 2, '<unk>': 3, '▁': 4, a: 5, b: 6, '▁a': 7 };
    writeFileSync(join(dir, 'tokenizer', 'tokenizer.json'), JSON.stringify({
      version: '1.0',
      added_tokens: ['<pad>', '<eos>', '<bos>', '<unk>'].map((c, id) => ({ id, content: c, special: true, single_word: false, lstrip: false, rstrip: false, normalized: false })),
      normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      pre_tokenizer: null,
      post_processor: null,
      decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'Fuse' }] },
      model: { type: 'BPE', vocab, merges: ['▁ a'], unk_token: '<unk>', byte_fallback: false, fuse_unk: true, dropout: null, continuing_subword_prefix: null, end_of_word_suffix: null, ignore_merges: false },
    }));
    writeFileSync(join(dir, 'tokenizer', 'tokenizer_config.json'), JSON.stringify({ bos_token: '<bos>', eos_token: '<eos>', pad_token: '<pad>', add_bos_token: true, add_eos_token: false }));
    const small = loadGemmaTokenizer(dir);
    expect(small).not.toBe(tok);
    expect(small.vocabSize).toBe(8);
    // BOS comes from add_bos_token even though the file has no post-processor.
    expect(small.encode('b a')).toEqual([2, 6, 7]);
    expect(bundledGemmaTokenizerFiles().json).toMatch(/tokenizer-gemini.*tokenizer\.json$/);
  });
});

describe('prompt handling (SanaPipeline)', () => {
  it('CHI texts: diffusers verbatim, NVlabs differs only by the quotes', () => {
    expect(CHI_DIFFUSERS).toHaveLength(8);
    expect(CHI_DIFFUSERS[7]).toBe('User Prompt: ');
    expect(CHI_NVLABS[0]).toContain('"Enhanced prompt"');
    expect(CHI_NVLABS.slice(1)).toEqual(CHI_DIFFUSERS.slice(1));
    expect(chiLines('none')).toBeUndefined();
    expect(() => chiLines('bogus' as never)).toThrow(/CHI/);
    // The two instruction texts tokenize differently (shared/spec/sana.md §1.4).
    expect(tok.encode(CHI_NVLABS.join('\n'))).not.toEqual(tok.encode(CHI_DIFFUSERS.join('\n')));
  });

  it('preprocessing lower-cases and strips (diffusers) or only strips', () => {
    expect(preprocessPrompt('  A Red CUBE \n')).toBe('a red cube');
    expect(preprocessPrompt('  A Red CUBE \n', false)).toBe('A Red CUBE');
  });

  it('selection is [0] + the last M-1 positions', () => {
    expect(selectIndices(5, 5)).toEqual([0, 1, 2, 3, 4]);
    expect(selectIndices(10, 4)).toEqual([0, 7, 8, 9]);
    expect(() => selectIndices(3, 4)).toThrow(/shorter/);
  });

  it('with CHI: L_all = n_chi + M - 2 and the kept window starts at the first prompt token', () => {
    const M = 300;
    const t = tokenizePrompts(tok, ['A Cat Sleeping on a windowsill'], { maxLength: M });
    const chi = CHI_DIFFUSERS.join('\n');
    expect(t.nChi).toBe(tok.encode(chi).length);
    expect(t.lengthAll).toBe(t.nChi + M - 2);
    expect(t.ids[0]).toHaveLength(t.lengthAll);
    expect(t.select).toHaveLength(M);
    // The instruction's trailing "▁" merges into the first word ("▁a"), so position n_chi - 1
    // holds it: the same ids as the prompt tokenized after a space.
    const promptIds = tok.encode(' a cat sleeping on a windowsill', false);
    expect(t.ids[0].slice(t.nChi - 1, t.nChi - 1 + promptIds.length)).toEqual(promptIds);
    expect(t.select[1]).toBe(t.nChi - 1);
    const real = t.mask[0].reduce((a, b) => a + b, 0);
    expect(real).toBe(t.nChi - 1 + promptIds.length);
  });

  it('without CHI: M tokens and identity selection; negative has no CHI', () => {
    const t = tokenizePrompts(tok, ['Hello world'], { chi: 'none', maxLength: 8 });
    expect(t.ids[0]).toEqual([2, tok.encode('hello world', false)[0], tok.encode('hello world', false)[1], 0, 0, 0, 0, 0]);
    expect(t.select).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const n = tokenizeNegative(tok, [''], { maxLength: 300 });
    expect(n.ids[0]).toEqual([2, ...Array(299).fill(0)]);
    expect(n.mask[0]).toEqual([1, ...Array(299).fill(0)]);
  });

  it('an over-long prompt is truncated on the right to M-1 tokens after BOS', () => {
    const long = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');
    const t = tokenizePrompts(tok, [long], { maxLength: 300 });
    expect(t.mask[0].every((m) => m === 1)).toBe(true);
    const kept = t.select.map((j) => t.ids[0][j]);
    expect(kept[0]).toBe(2);
    expect(kept).toHaveLength(300);
  });
});
