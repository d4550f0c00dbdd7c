// SanaLoraLoader: a LoRA as a model patch (like PAG). It returns a clone of the SANA_MODEL
// reference with the LoRA appended; the sampler merges the set into the weights once per
// (base model, LoRA set) and caches that beside the base (nodes/sana/runtime.ts), so the cached
// base model is never modified and other jobs keep using it unpatched. Loaders chain: each adds
// one LoRA to the set, and PAG may come before or after.
//
// The file is checked against the model here (keys, shapes, alphas), so a LoRA that does not fit
// fails on this node, naming its first mismatching key; nothing is merged until a sampler runs.
import fs from 'node:fs';
import { defineNode } from '../../engine/index.ts';
import { listLoras, resolveLora } from '../models_dir.ts';
import { nodeServices, type NodeServices } from '../services.ts';
import { backendFor, native } from './runtime.ts';
import type { SanaModelRef } from './types.ts';

const STRENGTH_MIN = -10;
const STRENGTH_MAX = 10;

function fileStamp(file: string): string {
  try {
    const st = fs.statSync(file);
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

/** Checks `loraName` against the model and returns the patched reference (shared with the alias). */
export async function applyLora(
  svc: NodeServices,
  model: SanaModelRef,
  loraName: string,
  strength: number,
  who: string,
  inputs = { lora: 'lora_name', strength: 'strength' },
): Promise<SanaModelRef> {
  if (!(Number.isFinite(strength) && strength >= STRENGTH_MIN && strength <= STRENGTH_MAX)) {
    throw new Error(`${who} input ${inputs.strength}: ${strength} is not a number in ${STRENGTH_MIN}..${STRENGTH_MAX}`);
  }
  let file: string;
  try {
    file = resolveLora(loraName, svc.folders.models);
  } catch (e) {
    throw new Error(`${who} input ${inputs.lora}: ${(e as Error).message}`);
  }
  const { readTransformerConfig } = await import('../models/sana_dit/config.ts');
  const { checkLoraFile } = await import('../models/lora.ts');
  const cfg = readTransformerConfig(model.path);
  checkLoraFile(file, cfg, await backendFor('cpu'), await native(), `${who} input ${inputs.lora}: "${loraName}" does not fit ${model.name}`);
  // Strength 0 leaves the model as it is (no merge, same cache entry).
  if (strength === 0) return { ...model };
  return { ...model, loras: [...(model.loras ?? []), { name: loraName, path: file, strength, stamp: fileStamp(file) }] };
}

export const SanaLoraLoader = defineNode({
  name: 'SanaLoraLoader',
  displayName: 'Sana LoRA Loader',
  category: 'sana/loaders',
  description:
    'Applies a LoRA from models/loras/ to a Sana transformer (diffusers/PEFT or kohya keys). The cached base model stays unpatched; chain loaders to stack LoRAs.',
  inputs: {
    required: {
      model: { type: 'SANA_MODEL' },
      lora_name: {
        type: 'COMBO',
        values: (s) => listLoras(nodeServices(s, 'SanaLoraLoader lora_name list').folders.models),
        tooltip: 'A .safetensors under models/loras/ (diffusers/PEFT lora_A/lora_B or kohya lora_down/lora_up keys).',
      },
      strength: {
        type: 'FLOAT',
        default: 1.0,
        min: STRENGTH_MIN,
        max: STRENGTH_MAX,
        step: 0.01,
        tooltip: 'Multiplies the LoRA update (alpha/rank scaling included); 0 turns it off.',
      },
    },
  },
  outputs: [{ name: 'model', type: 'SANA_MODEL' }],
  fingerprint: ({ lora_name }, services) => {
    try {
      return fileStamp(resolveLora(String(lora_name), nodeServices(services, 'SanaLoraLoader').folders.models));
    } catch {
      return 'missing';
    }
  },
  async run({ model, lora_name, strength }, ctx) {
    return [await applyLora(nodeServices(ctx.services, 'SanaLoraLoader'), model, lora_name, strength, 'SanaLoraLoader')];
  },
});
