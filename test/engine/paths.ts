// Where the shared read-only material is: `../shared` beside the repository (CI clones it there).
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sharedDir = path.resolve(repoRoot, '..', 'shared');
export const workflowsDir = path.join(sharedDir, 'reference', 'comfyui-workflows');
