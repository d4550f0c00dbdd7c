// Sana's prompt handling as diffusers' SanaPipeline.encode_prompt does it (shared/spec/sana.md §1.3-1.6):
// lower-case + strip, the complex human instruction (CHI) prepended, tokenisation to
// L_all = n_chi + M − 2 with right padding, Gemma on the full sequence, then the selection
// [0] + last M−1 positions of embeddings and mask. The negative prompt gets no CHI and no
// selection. The uncond mask is its own (diffusers) or the cond one (NVlabs), by option.
import type { Tensor } from '../../native/api.ts';
import type { Gemma2Model } from './gemma2.ts';
import type { GemmaTokenizer, TokenBatch } from './tokenizer.ts';

/** diffusers' default complex_human_instruction (verbatim; joined with "\n"). */
export const CHI_DIFFUSERS: readonly string[] = [
  "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable for image generation. Evaluate the level of detail in the user prompt:",
  '- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial relationships to create vivid and concrete scenes.',
  '- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.',
  'Here are examples of how to transform or refine prompts:',
  '- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.',
  '- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass skyscrapers.',
  'Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:',
  'User Prompt: ',
];

/** NVlabs' yaml variant: identical except the double-quoted "Enhanced prompt" in line 1. */
export const CHI_NVLABS: readonly string[] = [
  CHI_DIFFUSERS[0].replace("'Enhanced prompt'", '"Enhanced prompt"'),
  ...CHI_DIFFUSERS.slice(1),
];

export type ChiOption = 'diffusers' | 'nvlabs' | 'none' | readonly string[];

export interface PromptOptions {
  /** Complex human instruction: the diffusers text (default), the NVlabs one, none, or custom lines. */
  chi?: ChiOption;
  /** diffusers' lower() + strip() (default true); false only strips (NVlabs). */
  lowercase?: boolean;
  /** max_sequence_length M (default 300). */
  maxLength?: number;
  /** Mask for the uncond branch: its own (diffusers, default) or the cond prompt's (NVlabs). */
  uncondMask?: 'own' | 'cond';
  /**
   * Run the encoder over the padding too (diffusers does; default false). Without it, positions
   * past every row's last real token are not encoded and their embeddings are zeros: Gemma is
   * causal, so the real tokens' outputs do not depend on them, and every consumer masks them
   * out (mask 0: exactly zero attention weight in the DiT's cross attention), so the image is the
   * same while the encoder runs on the real tokens only (an empty negative prompt: 1 token, not
   * 300). An uncond branch that takes the cond mask (`uncondMask: 'cond'`) attends to its own
   * padding and is always encoded whole.
   */
  encodePadding?: boolean;
}

export function chiLines(chi: ChiOption | undefined): readonly string[] | undefined {
  if (chi === undefined || chi === 'diffusers') return CHI_DIFFUSERS;
  if (chi === 'nvlabs') return CHI_NVLABS;
  if (chi === 'none') return undefined;
  if (!Array.isArray(chi)) throw new Error(`prompt: unknown CHI option ${JSON.stringify(chi)} (diffusers, nvlabs, none or a list of lines)`);
  return chi.length > 0 ? chi : undefined;
}

export function preprocessPrompt(text: string, lowercase = true): string {
  return lowercase ? text.toLowerCase().trim() : text.trim();
}

/** Python's `[0] + list(range(-(M-1), 0))` over a sequence of length L (L >= M). */
export function selectIndices(lengthAll: number, maxLength: number): number[] {
  if (lengthAll < maxLength) throw new Error(`prompt: sequence length ${lengthAll} is shorter than max_sequence_length ${maxLength}`);
  return [0, ...Array.from({ length: maxLength - 1 }, (_, i) => lengthAll - (maxLength - 1) + i)];
}

export interface TokenizedPrompts extends TokenBatch {
  /** Sequence length given to the text encoder (L_all). */
  lengthAll: number;
  /** Positions kept after the encoder (length M). */
  select: number[];
  /** Tokens of the instruction alone, BOS included (0 without CHI). */
  nChi: number;
}

/** Tokenises the positive prompts: preprocessing, CHI, L_all, padding, selection indices. */
export function tokenizePrompts(tok: GemmaTokenizer, prompts: readonly string[], opts: PromptOptions = {}): TokenizedPrompts {
  const M = opts.maxLength ?? 300;
  if (!Number.isInteger(M) || M < 2) throw new Error(`prompt: max_sequence_length must be an integer >= 2, got ${M}`);
  const lines = chiLines(opts.chi);
  const texts = prompts.map((p) => preprocessPrompt(p, opts.lowercase ?? true));
  if (!lines) {
    const batch = tok.encodeBatch(texts, M);
    return { ...batch, lengthAll: M, select: selectIndices(M, M), nChi: 0 };
  }
  const chi = lines.join('\n');
  const nChi = tok.encode(chi).length;
  const lengthAll = nChi + M - 2;
  const batch = tok.encodeBatch(texts.map((t) => chi + t), lengthAll);
  return { ...batch, lengthAll, select: selectIndices(lengthAll, M), nChi };
}

/** Tokenises negative prompts: preprocessing only, M tokens, no CHI, no selection. */
export function tokenizeNegative(tok: GemmaTokenizer, negatives: readonly string[], opts: PromptOptions = {}): TokenizedPrompts {
  const M = opts.maxLength ?? 300;
  const batch = tok.encodeBatch(negatives.map((p) => preprocessPrompt(p, opts.lowercase ?? true)), M);
  return { ...batch, lengthAll: M, select: selectIndices(M, M), nChi: 0 };
}

export interface EncodedText {
  /** (B, M, hidden) in the text encoder's dtype. */
  embeds: Tensor;
  /** (B, M) row-major, 1 keep / 0 drop. */
  mask: Float32Array;
  shape: [number, number];
}

export interface EncodedPrompts {
  cond: EncodedText;
  uncond?: EncodedText;
  /** The token ids that went into the encoder, for inspection. */
  tokens: { cond: TokenizedPrompts; uncond?: TokenizedPrompts };
}

export interface EncodePromptsInput extends PromptOptions {
  positive: string | readonly string[];
  /** One per positive prompt, or one for all; undefined = no uncond branch. */
  negative?: string | readonly string[];
}

type TextEncoder = Pick<Gemma2Model, 'encode' | 'backend'>;

function selectRows(t: TokenizedPrompts): Float32Array {
  const M = t.select.length;
  const out = new Float32Array(t.mask.length * M);
  t.mask.forEach((row, b) => t.select.forEach((j, s) => { out[b * M + s] = row[j]; }));
  return out;
}

/** Positions up to the last real token of any row (right padding after it). */
export function realLength(mask: readonly (readonly number[])[]): number {
  let n = 0;
  for (const row of mask) for (let j = row.length - 1; j >= n; j--) if (row[j] !== 0) { n = j + 1; break; }
  return n;
}

/** Runs the encoder and keeps the selected positions: (B, M, hidden). `encodePadding` false:
 *  the encoder sees positions [0, realLength) only, the rest are zero rows (PromptOptions). */
function encodeSelected(te: TextEncoder, t: TokenizedPrompts, encodePadding: boolean): Tensor {
  const bk = te.backend;
  const Lr = encodePadding ? t.lengthAll : Math.max(1, realLength(t.mask));
  if (Lr >= t.lengthAll) {
    const hidden = te.encode(t.ids, t.mask); // (B, L_all, hidden)
    if (t.lengthAll === t.select.length) return hidden; // identity selection
    try {
      return bk.indexSelect(hidden, 1, t.select); // (B, M, hidden)
    } finally {
      hidden.dispose();
    }
  }
  return bk.scope(() => {
    const real = te.encode(t.ids.map((r) => r.slice(0, Lr)), t.mask.map((r) => r.slice(0, Lr))); // (B, Lr, hidden)
    const [B, , H] = real.shape as [number, number, number];
    const pad = bk.fromArray(new Float32Array(B * (t.lengthAll - Lr) * H), [B, t.lengthAll - Lr, H], real.dtype); // (B, L_all − Lr, hidden)
    const hidden = bk.concat([real, pad], 1); // (B, L_all, hidden)
    return t.lengthAll === t.select.length ? hidden : bk.indexSelect(hidden, 1, t.select); // (B, M, hidden)
  });
}

/**
 * The node-facing entry: positive (and optionally negative) prompts -> cond / uncond
 * embeddings and masks, as SanaPipeline.encode_prompt produces them.
 */
export function encodePrompts(te: TextEncoder, tok: GemmaTokenizer, input: EncodePromptsInput): EncodedPrompts {
  const positives = typeof input.positive === 'string' ? [input.positive] : [...input.positive];
  if (positives.length === 0) throw new Error('encodePrompts: no positive prompt');
  const condTok = tokenizePrompts(tok, positives, input);
  const M = condTok.select.length;
  const B = positives.length;
  const condMask = selectRows(condTok);
  const cond: EncodedText = { embeds: encodeSelected(te, condTok, input.encodePadding ?? false), mask: condMask, shape: [B, M] };
  if (input.negative === undefined) return { cond, tokens: { cond: condTok } };
  const negList = typeof input.negative === 'string' ? [input.negative] : [...input.negative];
  const negatives = negList.length === 1 ? Array<string>(B).fill(negList[0]) : negList;
  if (negatives.length !== B) {
    cond.embeds.dispose();
    throw new Error(`encodePrompts: ${negatives.length} negative prompts for ${B} positive prompts`);
  }
  let uncondTok: TokenizedPrompts;
  let embeds: Tensor;
  try {
    uncondTok = tokenizeNegative(tok, negatives, input);
    // With the cond mask the uncond branch attends to its own padding: encoded whole.
    embeds = encodeSelected(te, uncondTok, (input.encodePadding ?? false) || input.uncondMask === 'cond');
  } catch (err) {
    cond.embeds.dispose();
    throw err;
  }
  const mask = (input.uncondMask ?? 'own') === 'cond' ? condMask.slice() : selectRows(uncondTok);
  return { cond, uncond: { embeds, mask, shape: [B, M] }, tokens: { cond: condTok, uncond: uncondTok } };
}
