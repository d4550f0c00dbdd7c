// The engine as the main thread uses it: the node registry (product nodes plus optional extra
// modules), /object_info, and prompt validation. Execution happens in the worker, which builds
// its own registry from the same modules (see worker/entry.ts).
import { NodeRegistry, validatePrompt, type ErrorObject, type NodeErrors, type ObjectInfo, type ObjectInfoNode } from '../../engine/index.ts';
import { registerProductNodes } from '../../nodes/index.ts';

export type Validation =
  | { ok: true; prompt: Record<string, unknown>; outputs: string[]; nodeErrors: Record<string, NodeErrors> }
  | { ok: false; error: ErrorObject; nodeErrors: Record<string, NodeErrors> };

export interface MainEngine {
  registry: NodeRegistry;
  objectInfo(): ObjectInfo;
  objectInfoFor(classType: string): ObjectInfoNode | undefined;
  validate(prompt: unknown, partialTargets?: string[]): Validation;
}

/**
 * The product registry plus extra node modules (file URLs). Each extra module exports
 * `registerNodes(registry)`; this is how tests add stub nodes without touching nodes/index.ts.
 */
export async function buildRegistry(extraNodeModules: readonly string[]): Promise<NodeRegistry> {
  const registry = registerProductNodes(new NodeRegistry());
  for (const url of extraNodeModules) {
    const mod = (await import(url)) as { registerNodes?: (r: NodeRegistry) => void };
    if (typeof mod.registerNodes !== 'function') throw new Error(`extra node module ${url} does not export registerNodes(registry)`);
    mod.registerNodes(registry);
  }
  return registry;
}

export async function loadMainEngine(options: { extraNodeModules: string[]; maxPromptNodes: number }): Promise<MainEngine> {
  const registry = await buildRegistry(options.extraNodeModules);
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
