// Shared set-up for the Sana node tests: the shipped tiny models (generated if missing), and a
// throw-away models folder whose model_map.json points ComfyUI users' model names at them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeTinyModels, TINY_PIPELINE } from '../../scripts/make-tiny-models.ts';
import { NodeRegistry } from '../../engine/index.ts';
import { registerProductNodes } from '../../nodes/index.ts';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const REFERENCE_WORKFLOWS = path.resolve(REPO, '../shared/reference/comfyui-workflows');
export const TINY = `sana/${TINY_PIPELINE}`;

/** The repo's models folder with the tiny pipeline in it. */
export function repoModelsDir(): string {
  const dir = path.join(REPO, 'models');
  makeTinyModels(dir);
  return dir;
}

/** The foreign names used by the reference workflows, all mapped onto the tiny pipeline. */
export const FOREIGN_NAMES = [
  'Efficient-Large-Model/Sana_1600M_1024px_MultiLing',
  'Efficient-Large-Model/Sana_1600M_2Kpx_BF16',
  'Efficient-Large-Model/Sana_1600M_4Kpx_BF16',
  'Efficient-Large-Model/gemma-2-2b-it',
  'google/gemma-2-2b-it',
  'mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers',
  'mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers',
];

/** A temporary models folder: the tiny pipeline (symlinked) + a model_map.json for FOREIGN_NAMES. */
export function mappedModelsDir(): string {
  const src = path.join(repoModelsDir(), 'sana', TINY_PIPELINE);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-models-'));
  fs.mkdirSync(path.join(dir, 'sana'));
  fs.symlinkSync(src, path.join(dir, 'sana', TINY_PIPELINE), 'dir');
  fs.writeFileSync(path.join(dir, 'model_map.json'), JSON.stringify(Object.fromEntries(FOREIGN_NAMES.map((n) => [n, TINY])), null, 2));
  return dir;
}

export function productRegistry(): NodeRegistry {
  return registerProductNodes(new NodeRegistry());
}

export function readJson<T = unknown>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}
