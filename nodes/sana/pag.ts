// PAG: perturbed-attention guidance as a model patch (ComfyUI's nodes_pag.py style). It returns a
// clone of the SANA_MODEL reference carrying the patch; the input is never modified, so the same
// loader output can feed a plain and a PAG sampler side by side.
import { defineNode } from '../../engine/index.ts';
import type { SanaModelRef } from './types.ts';

/** "8" / "8,9" / "transformer_blocks.8" -> [8] / [8, 9] / [8], checked against the model depth. */
export function parsePagLayers(text: string, numLayers: number, who = 'PAG'): number[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new Error(`${who}: layers is empty; give block indices such as "8" or "8,9"`);
  const out = new Set<number>();
  for (const item of items) {
    const m = /^(?:transformer_blocks\.)?(\d+)$/.exec(item);
    if (!m) throw new Error(`${who}: layers entry "${item}" is not a block index (use e.g. "8" or "8,9")`);
    const i = Number(m[1]);
    if (i >= numLayers) throw new Error(`${who}: layer ${i} does not exist; this model has blocks 0..${numLayers - 1}`);
    out.add(i);
  }
  return [...out].sort((a, b) => a - b);
}

export function applyPag(model: SanaModelRef, scale: number, layers: string, who = 'PAG'): SanaModelRef {
  if (!(scale >= 0)) throw new Error(`${who}: scale must be >= 0, got ${scale}`);
  // Scale 0 disables PAG (diffusers: PAG on iff scale > 0): the clone carries no patch.
  const { pag: _old, ...rest } = model;
  return scale > 0 ? { ...rest, pag: { scale, layers: parsePagLayers(layers, model.numLayers, who) } } : { ...rest };
}

export const PAG = defineNode({
  name: 'PAG',
  displayName: 'Perturbed-Attention Guidance (Sana)',
  category: 'sana/model_patches',
  description:
    'Adds perturbed-attention guidance: the chosen blocks see identity self-attention in an extra batch slice, and the sampler pushes away from that output by `scale`.',
  inputs: {
    required: {
      model: { type: 'SANA_MODEL' },
      scale: { type: 'FLOAT', default: 3.0, min: 0, max: 100, step: 0.1, round: 0.01, tooltip: '0 turns PAG off.' },
      layers: { type: 'STRING', default: '8', tooltip: 'Transformer block indices, comma separated: "8" (1.6B), "14" (0.6B), "8,9".' },
    },
  },
  outputs: [{ name: 'model', type: 'SANA_MODEL' }],
  run({ model, scale, layers }) {
    return [applyPag(model, scale, layers)];
  },
});
