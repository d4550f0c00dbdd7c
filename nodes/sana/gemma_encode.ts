// Gemma2Encode: one prompt -> CONDITIONING with a GEMMA encoder. With the instruction it is the
// positive-prompt encoding (CHI, keep BOS + last M−1); without, the plain M-token encoding that
// diffusers uses for the negative prompt.
import { defineNode } from '../../engine/index.ts';
import { nodeServices } from '../services.ts';
import { CHI_CHOICES, encodeText } from './text_encode.ts';

export const Gemma2Encode = defineNode({
  name: 'Gemma2Encode',
  displayName: 'Gemma-2 Text Encode (Sana)',
  category: 'sana/conditioning',
  description: "Encodes one prompt for Sana. complex_human_instruction: diffusers' text, NVlabs' text (double quotes), or none.",
  inputs: {
    required: {
      gemma: { type: 'GEMMA' },
      text: { type: 'STRING', multiline: true, dynamicPrompts: true, default: '' },
      complex_human_instruction: { type: 'COMBO', values: CHI_CHOICES, default: 'diffusers' },
      lowercase: { type: 'BOOLEAN', default: true, tooltip: 'diffusers lower-cases prompts; NVlabs does not.' },
      max_sequence_length: { type: 'INT', default: 300, min: 2, max: 4096 },
    },
  },
  outputs: [{ name: 'CONDITIONING', type: 'CONDITIONING' }],
  async run({ gemma, text, complex_human_instruction, lowercase, max_sequence_length }, ctx) {
    ctx.throwIfInterrupted();
    const enc = await encodeText(nodeServices(ctx.services, 'Gemma2Encode'), gemma, [text], undefined, {
      chi: complex_human_instruction,
      lowercase,
      maxLength: max_sequence_length,
    });
    return [enc.positive];
  },
});
