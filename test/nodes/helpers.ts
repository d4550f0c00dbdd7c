// Shared set-up for the Sana node tests: the shipped tiny models (generated if missing), and a
// throw-away models folder whose model_map.json points ComfyUI users' model names at them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeTinySprintModel, TINY_PIPELINE, TINY_SPRINT_PIPELINE } from '../../scripts/make-tiny-models.ts';
import { NodeRegistry, type Services } from '../../engine/index.ts';
import { registerProductNodes } from '../../nodes/index.ts';
import { createNodeServices, type NodeFolders, type NodeServices } from '../../nodes/services.ts';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const REFERENCE_WORKFLOWS = path.resolve(REPO, '../shared/reference/comfyui-workflows');
export const TINY = `sana/${TINY_PIPELINE}`;
export const TINY_SPRINT = `sana/${TINY_SPRINT_PIPELINE}`;

/** The repo's models folder with the tiny pipelines (Sana and Sana-Sprint) in it. */
export function repoModelsDir(): string {
  const dir = path.join(REPO, 'models');
  makeTinySprintModel(dir);
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

/** The Sana-Sprint names of the reference Sprint workflows, mapped onto the tiny Sprint pipeline. */
export const FOREIGN_SPRINT_NAMES = ['Efficient-Large-Model/Sana_Sprint_1.6B_1024px', 'Efficient-Large-Model/Sana_Sprint_0.6B_1024px'];

/** A temporary models folder: the tiny pipelines (symlinked) + a model_map.json for FOREIGN_NAMES
 *  and FOREIGN_SPRINT_NAMES. */
export function mappedModelsDir(): string {
  const src = path.join(repoModelsDir(), 'sana', TINY_PIPELINE);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-models-'));
  fs.mkdirSync(path.join(dir, 'sana'));
  fs.symlinkSync(src, path.join(dir, 'sana', TINY_PIPELINE), 'dir');
  fs.symlinkSync(path.join(repoModelsDir(), 'sana', TINY_SPRINT_PIPELINE), path.join(dir, 'sana', TINY_SPRINT_PIPELINE), 'dir');
  const map = { ...Object.fromEntries(FOREIGN_NAMES.map((n) => [n, TINY])), ...Object.fromEntries(FOREIGN_SPRINT_NAMES.map((n) => [n, TINY_SPRINT])) };
  fs.writeFileSync(path.join(dir, 'model_map.json'), JSON.stringify(map, null, 2));
  return dir;
}

/** Node services for a test: the repo's models folder unless `folders.models` says otherwise;
 *  image folders default to ./output, ./input, ./temp as for the CLI. */
export function testServices(folders: Partial<NodeFolders> = {}): NodeServices & Services {
  return createNodeServices({ folders: { models: path.join(REPO, 'models'), ...folders } });
}

/** The product nodes bound to `services` (the executor's ctx.services default to them too). */
export function productRegistry(services: Services = testServices()): NodeRegistry {
  return registerProductNodes(new NodeRegistry({ services }));
}

export function readJson<T = unknown>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}
