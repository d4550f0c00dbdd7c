// TextEncoderGemma: the positive and negative prompts -> two CONDITIONING outputs (Gemma-2 hidden
// states + mask), as diffusers' SanaPipeline.encode_prompt. The engine caches the outputs by
// their inputs, so changing only the seed (or anything downstream) never re-encodes.
import { defineNode } from '../../engine/index.ts';
import { CHI_DIFFUSERS } from '../models/prompt.ts';
import { resolveTextEncoder } from '../models_dir.ts';
import { nodeServices } from '../services.ts';
import { folderFingerprint } from './fingerprint.ts';
import { DEVICE_INPUT, logDeviceNote } from './runtime.ts';
import { GEMMA_DTYPES, encodeText, gemmaRef, textEncoderChoices } from './text_encode.ts';

export const TextEncoderGemma = defineNode({
  name: 'TextEncoderGemma',
  displayName: 'Sana Text Encoder (Gemma-2)',
  category: 'sana/conditioning',
  description:
    'Encodes the prompt (with the complex human instruction, keeping BOS + the last max_sequence_length-1 positions) and the negative prompt (plain) with Gemma-2.',
  inputs: {
    required: {
      text_encoder: {
        type: 'COMBO',
        values: textEncoderChoices,
        tooltip: 'A Sana pipeline under models/sana/ (text_encoder/ + tokenizer/) or a Gemma-2 under models/text_encoders/.',
      },
      positive: { type: 'STRING', multiline: true, dynamicPrompts: true, default: '' },
      negative: { type: 'STRING', multiline: true, dynamicPrompts: true, default: '' },
      complex_human_instruction: { type: 'BOOLEAN', default: true, tooltip: 'Prepend the prompt-enhancer instruction to the positive prompt (Sana default).' },
      instruction: {
        type: 'STRING',
        multiline: true,
        default: CHI_DIFFUSERS.join('\n'),
        tooltip: "The instruction text (diffusers' by default). Must end with the line it is followed by.",
      },
      max_sequence_length: { type: 'INT', default: 300, min: 2, max: 4096 },
      dtype: { type: 'COMBO', values: GEMMA_DTYPES, default: 'auto' },
      device: DEVICE_INPUT,
    },
  },
  outputs: [
    { name: 'positive', type: 'CONDITIONING' },
    { name: 'negative', type: 'CONDITIONING' },
  ],
  fingerprint: ({ text_encoder }, services) => {
    try {
      const d = resolveTextEncoder(String(text_encoder), nodeServices(services, 'TextEncoderGemma').folders.models);
      return folderFingerprint(d.textEncoder, d.tokenizer);
    } catch {
      return 'missing';
    }
  },
  async run({ text_encoder, positive, negative, complex_human_instruction, instruction, max_sequence_length, dtype, device }, ctx) {
    ctx.throwIfInterrupted();
    const svc = nodeServices(ctx.services, 'TextEncoderGemma');
    const { ref, note } = await gemmaRef(svc, text_encoder, dtype, device, 'TextEncoderGemma');
    logDeviceNote(note);
    const lines = instruction.split('\n');
    const chi = complex_human_instruction && instruction.trim() !== '' ? lines : 'none';
    const enc = await encodeText(svc, ref, [positive], [negative], { chi, lowercase: true, maxLength: max_sequence_length });
    return [enc.positive, enc.negative!];
  },
});
