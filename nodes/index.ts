// The product's node list: every node module is imported here and registered. Tests add their
// stub nodes through the server's extra-node-module hook instead, so they never appear here.
import type { NodeRegistry } from '../engine/registry.ts';
import { LoadImage } from './image/load_image.ts';
import { PreviewImage, SaveImage } from './image/save_image.ts';

/** Registers all product nodes into `registry` and returns it. */
export function registerProductNodes(registry: NodeRegistry): NodeRegistry {
  registry.register(SaveImage);
  registry.register(PreviewImage);
  registry.register(LoadImage);
  return registry;
}
