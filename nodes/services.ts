// What the product nodes get from their host through the engine's `services` (ctx.services at
// run time, and the registry's services for COMBO lists, fingerprints and input mapping): the
// folders they read and write, and the cache of loaded model weights. The host (the execution
// worker, the CLI, the server's main thread for /object_info and validation, a test) builds them
// with createNodeServices(); nothing here is process-wide, so two hosts in one process (tests)
// can point their nodes at different folders.
import path from 'node:path';
import type { Services } from '../engine/index.ts';
import { defaultBudgetBytes, ModelCache } from './model_cache.ts';
import { defaultModelsDir } from './models_dir.ts';

export interface NodeFolders {
  /** SaveImage's folder. */
  output: string;
  /** LoadImage's folder (uploads). */
  input: string;
  /** PreviewImage's folder. */
  temp: string;
  /** Where loader nodes find weights (see models_dir.ts for the layout). */
  models: string;
}

export interface NodeServices {
  /** Absolute paths. */
  folders: NodeFolders;
  /** The loaded weights every model node shares (see model_cache.ts). */
  modelCache: ModelCache;
  /**
   * The input folder's files ("/"-separated paths) where they are not in `folders.input`: a
   * cluster front end whose uploads live in Redis (cluster/redis_store.ts) lists them for
   * LoadImage's combo from there. Absent: the folder is listed.
   */
  inputFiles?: () => readonly string[];
}

export interface NodeServicesOptions {
  /** Relative paths are resolved against the current directory; missing ones default to
   *  ./output, ./input, ./temp and the models folder of `defaultModelsDir()`. */
  folders?: Partial<NodeFolders>;
  /** The model cache's budget in bytes (default: `defaultBudgetBytes()`). */
  modelCacheBytes?: number;
  inputFiles?: () => readonly string[];
}

export function createNodeServices(o: NodeServicesOptions = {}): NodeServices & Services {
  const f = o.folders ?? {};
  return {
    folders: {
      output: path.resolve(f.output ?? 'output'),
      input: path.resolve(f.input ?? 'input'),
      temp: path.resolve(f.temp ?? 'temp'),
      models: path.resolve(f.models ?? defaultModelsDir()),
    },
    modelCache: new ModelCache(o.modelCacheBytes ?? defaultBudgetBytes()),
    ...(o.inputFiles ? { inputFiles: o.inputFiles } : {}),
  };
}

const FOLDER_KEYS = ['output', 'input', 'temp', 'models'] as const;

/**
 * Narrows the engine's services to what the product nodes need. Throws naming `who` (the node
 * or list that asked) and every missing piece, so a host that forgot them fails loudly instead
 * of writing into the current directory.
 */
export function nodeServices(services: Services | undefined, who: string): NodeServices {
  const missing: string[] = [];
  const folders = services?.folders as Partial<Record<string, unknown>> | undefined;
  if (folders === null || typeof folders !== 'object') missing.push('folders');
  else for (const k of FOLDER_KEYS) if (typeof folders[k] !== 'string') missing.push(`folders.${k}`);
  // Duck-typed: a second copy of model_cache.ts (another loader's URL) is still a cache.
  if (typeof (services?.modelCache as ModelCache | undefined)?.use !== 'function') missing.push('modelCache');
  if (missing.length > 0) {
    throw new Error(
      `${who}: the node services are missing ${missing.join(', ')}; the host must pass createNodeServices() ` +
        `(nodes/services.ts) to the NodeRegistry or Executor as \`services\``,
    );
  }
  return services as unknown as NodeServices;
}
