// The node registry as a host builds it: the product nodes plus optional extra modules, bound to
// the node services (folders, model cache) of whoever uses it. The execution worker builds one
// to run jobs; the server's main thread builds one for /object_info and prompt validation (its
// COMBO lists read the same folders); the CLI builds one to convert and validate a workflow.
import { NodeRegistry, validatePrompt, type ErrorObject, type NodeErrors, type ObjectInfo, type ObjectInfoNode } from '../engine/index.ts';
import { registerProductNodes } from '../nodes/index.ts';
import { createNodeServices } from '../nodes/services.ts';
import type { HostFolders } from './types.ts';

/**
 * The product registry plus extra node modules (file URLs), with `createNodeServices(folders)`
 * as its services (missing folders: ./output, ./input, ./temp, the default models folder). Each extra module exports `registerNodes(registry)`; this is how tests add
 * stub nodes without touching nodes/index.ts.
 */
export async function buildRegistry(
  extraNodeModules: readonly string[],
  folders: Partial<HostFolders> = {},
  inputFiles?: () => readonly string[],
): Promise<NodeRegistry> {
  const registry = registerProductNodes(new NodeRegistry({ services: createNodeServices({ folders, inputFiles }) }));
  for (const url of extraNodeModules) {
    const mod = (await import(url)) as { registerNodes?: (r: NodeRegistry) => void };
    if (typeof mod.registerNodes !== 'function') throw new Error(`extra node module ${url} does not export registerNodes(registry)`);
    mod.registerNodes(registry);
  }
  return registry;
}

export type Validation =
  | { ok: true; prompt: Record<string, unknown>; outputs: string[]; nodeErrors: Record<string, NodeErrors> }
  | { ok: false; error: ErrorObject; nodeErrors: Record<string, NodeErrors> };

/** The engine as the server's main thread uses it (execution happens in the executor). */
export interface MainEngine {
  registry: NodeRegistry;
  objectInfo(): ObjectInfo;
  objectInfoFor(classType: string): ObjectInfoNode | undefined;
  validate(prompt: unknown, partialTargets?: string[]): Validation;
}

export async function loadMainEngine(options: {
  extraNodeModules: string[];
  maxPromptNodes: number;
  folders: HostFolders;
  /** The input folder's files when they are elsewhere (NodeServices.inputFiles). */
  inputFiles?: () => readonly string[];
}): Promise<MainEngine> {
  const registry = await buildRegistry(options.extraNodeModules, options.folders, options.inputFiles);
  return {
    registry,
    objectInfo: () => registry.objectInfo((cls, err) => console.warn(`object_info: skipping ${cls}: ${(err as Error).message}`)),
    objectInfoFor: (cls) => {
      try {
        return registry.objectInfoFor(cls);
      } catch (err) {
        console.warn(`object_info: ${cls}: ${(err as Error).message}`);
        return undefined;
      }
    },
    validate(prompt, partialTargets) {
      const r = validatePrompt(prompt, registry, { partialExecutionTargets: partialTargets, maxNodes: options.maxPromptNodes });
      return r.ok
        ? { ok: true, prompt: r.prompt as Record<string, unknown>, outputs: r.outputs, nodeErrors: r.node_errors }
        : { ok: false, error: r.error, nodeErrors: r.node_errors };
    },
  };
}
