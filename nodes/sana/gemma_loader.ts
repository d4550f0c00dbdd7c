// LoadGemma2: a Gemma-2 text encoder as a GEMMA socket, for graphs that encode several prompts with
// one encoder (the ComfyUI_ExtraModels style: GemmaLoader -> SanaTextEncode / GemmaTextEncode).
import { defineNode } from '../../engine/index.ts';
import { resolveTextEncoder } from '../models_dir.ts';
import { nodeServices } from '../services.ts';
import { folderFingerprint } from './fingerprint.ts';
import { DEVICE_INPUT, logDeviceNote, withGemma } from './runtime.ts';
import { GEMMA_DTYPES, gemmaRef, textEncoderChoices } from './text_encode.ts';

export const LoadGemma2 = defineNode({
  name: 'LoadGemma2',
  displayName: 'Gemma-2 Loader',
  category: 'sana/loaders',
  description: 'Loads the Gemma-2 text encoder and its tokenizer.',
  inputs: {
    required: {
      text_encoder: { type: 'COMBO', values: textEncoderChoices },
      dtype: { type: 'COMBO', values: GEMMA_DTYPES, default: 'auto' },
      device: DEVICE_INPUT,
    },
  },
  outputs: [{ name: 'GEMMA', type: 'GEMMA' }],
  fingerprint: ({ text_encoder }, services) => {
    try {
      const d = resolveTextEncoder(String(text_encoder), nodeServices(services, 'LoadGemma2').folders.models);
      return folderFingerprint(d.textEncoder, d.tokenizer);
    } catch {
      return 'missing';
    }
  },
  async run({ text_encoder, dtype, device }, ctx) {
    const svc = nodeServices(ctx.services, 'LoadGemma2');
    const { ref, note } = await gemmaRef(svc, text_encoder, dtype, device, 'LoadGemma2');
    logDeviceNote(note);
    // Load now so a bad checkpoint fails on this node.
    await withGemma(svc, ref, () => undefined);
    return [ref];
  },
});
