// Shared by the text-encoder nodes: GEMMA references and prompt -> CONDITIONING through
// nodes/models/prompt.ts (diffusers' encode_prompt: CHI, L_all, keep BOS + last M−1).
import type { Services } from '../../engine/index.ts';
import { listTextEncoders, resolveTextEncoder } from '../models_dir.ts';
import { nodeServices, type NodeServices } from '../services.ts';
import { backendFor, resolveDevice, resolveDtype, withGemma } from './runtime.ts';
import type { Conditioning, GemmaRef } from './types.ts';

export const CHI_CHOICES = ['diffusers', 'nvlabs', 'none'] as const;
export const GEMMA_DTYPES = ['auto', 'bf16', 'f32'] as const;

export function textEncoderChoices(services: Services): string[] {
  return listTextEncoders(nodeServices(services, 'text_encoder list').folders.models).map((t) => t.name);
}

export async function gemmaRef(
  svc: NodeServices,
  name: string,
  dtypeChoice: string,
  deviceChoice: string,
  who: string,
): Promise<{ ref: GemmaRef; note?: string }> {
  const dirs = resolveTextEncoder(name, svc.folders.models);
  const { device, note } = await resolveDevice(deviceChoice, who);
  const backend = await backendFor(device);
  // Gemma-2 overflows in fp16 (shared/spec/sana.md §8).
  const dtype = resolveDtype(dtypeChoice, backend, who, false);
  const ref: GemmaRef = { kind: 'gemma2', name: dirs.name, textEncoderPath: dirs.textEncoder, tokenizerPath: dirs.tokenizer, dtype, device };
  return { ref, note };
}

export interface EncodeOptions {
  /** 'diffusers' | 'nvlabs' | 'none', or the instruction's lines. */
  chi: (typeof CHI_CHOICES)[number] | readonly string[];
  lowercase: boolean;
  maxLength: number;
}

/** Encodes prompts (and optionally negatives, without CHI) into host CONDITIONING values. */
export async function encodeText(
  svc: NodeServices,
  ref: GemmaRef,
  positive: string[],
  negative: string[] | undefined,
  o: EncodeOptions,
): Promise<{ positive: Conditioning; negative?: Conditioning }> {
  const { encodePrompts, preprocessPrompt } = await import('../models/prompt.ts');
  const { loadGemmaTokenizer } = await import('../models/tokenizer.ts');
  const tok = loadGemmaTokenizer(ref.tokenizerPath);
  return withGemma(svc, ref, (model) => {
    const enc = encodePrompts(model, tok, { positive, negative, chi: o.chi, lowercase: o.lowercase, maxLength: o.maxLength });
    const host = (t: { embeds: import('../../native/api.ts').Tensor; mask: Float32Array }, texts: string[]): Conditioning => {
      try {
        const [B, L, D] = t.embeds.shape as [number, number, number];
        return { embeds: t.embeds.toFloat32(), mask: t.mask, shape: [B, L, D], text: texts.map((x) => preprocessPrompt(x, o.lowercase)) };
      } finally {
        t.embeds.dispose();
      }
    };
    const pos = host(enc.cond, positive);
    const neg = enc.uncond && negative ? host(enc.uncond, negative) : undefined;
    return { positive: pos, ...(neg ? { negative: neg } : {}) };
  });
}
