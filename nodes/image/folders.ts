// ComfyUI's image folders by the `type` of an image reference ({filename, subfolder, type}).
// Where they are is the host's business: nodes read them from ctx.services (../services.ts).
import type { NodeFolders } from '../services.ts';

export type ImageFolders = Pick<NodeFolders, 'output' | 'input' | 'temp'>;

export type FolderType = keyof ImageFolders;

export function isFolderType(t: string): t is FolderType {
  return t === 'output' || t === 'input' || t === 'temp';
}
