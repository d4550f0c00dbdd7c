// SanaResolutionSelect (ComfyUI_ExtraModels): a trained aspect-ratio bucket -> width, height.
// Kept bit-for-bit with the pack, including its quirk: the table's FIRST number (a height in the
// PixArt tables) is returned as the width, so ratio "0.25" gives a tall 512 x 2048 image.
import { defineNode } from '../../engine/index.ts';
import { BIN_TABLES } from '../models/bins.ts';

const MODELS: Record<string, 512 | 1024 | 2048 | 4096> = {
  '1024px': 1024,
  '512px': 512,
  '2K': 2048,
  '4K': 4096,
  SanaMS_600M_P1_D28: 1024,
  SanaMS_1600M_P1_D20: 1024,
  SanaMS_1600M_P1_D20_2K: 2048,
  SanaMS_1600M_P1_D20_4K: 4096,
};

// The pack lists the 40 ratios of the 2K table, written with two decimals.
export const RATIOS = BIN_TABLES[2048].map(([k]) => Number(k).toFixed(2));

export function selectResolution(model: string, ratio: string): { width: number; height: number } {
  const px = MODELS[model];
  if (!px) throw new Error(`SanaResolutionSelect: model "${model}" is not one of ${Object.keys(MODELS).join(', ')}`);
  const entry = BIN_TABLES[px].find(([k]) => Number(k).toFixed(2) === ratio);
  if (!entry) throw new Error(`SanaResolutionSelect: ratio ${ratio} is not in the ${model} table (its ratios: ${BIN_TABLES[px].map(([k]) => k).join(', ')})`);
  const [first, second] = entry[1];
  return { width: first, height: second };
}

export const SanaResolutionSelect = defineNode({
  name: 'SanaResolutionSelect',
  displayName: 'Sana Resolution Select',
  category: 'ExtraModels/Sana',
  module: 'custom_nodes.ComfyUI_ExtraModels',
  description: 'Width and height of a trained aspect-ratio bucket (ComfyUI_ExtraModels semantics: the first table value is the width).',
  inputs: {
    required: {
      model: { type: 'COMBO', values: Object.keys(MODELS) },
      ratio: { type: 'COMBO', values: RATIOS, default: '1.00' },
    },
  },
  outputs: [
    { name: 'width', type: 'INT' },
    { name: 'height', type: 'INT' },
  ],
  run({ model, ratio }) {
    const { width, height } = selectResolution(model, ratio);
    return [width, height];
  },
});
