// defineNode(): one declaration per node. Checks the declaration at load time so that a bad
// node fails when the module is imported, naming the node, instead of at the first prompt.

import type { AnyNodeDefinition, BooleanInput, InputDecl, StringInput, InputsDecl, InputSpec, NodeDefinition, OutputDecl } from './types.ts';

const HIDDEN_KINDS = new Set(['PROMPT', 'EXTRA_PNGINFO', 'UNIQUE_ID', 'DYNPROMPT', 'AUTH_TOKEN_COMFY_ORG', 'API_KEY_COMFY_ORG']);

/** Normalizes the `'LATENT'` shorthand to `{ type: 'LATENT' }`. */
export function inputSpec(decl: InputDecl): InputSpec {
  return typeof decl === 'string' ? { type: decl } : decl;
}

export class NodeDefinitionError extends Error {
  override name = 'NodeDefinitionError';
}

/**
 * Declares a node. The `run` argument types are inferred from `inputs`/`outputs`:
 *
 *   export default defineNode({
 *     name: 'EmptySanaLatentImage', category: 'ExtraModels/Sana',
 *     inputs: { required: { width: { type: 'INT', default: 512, min: 16, max: 16384, step: 8 } } },
 *     outputs: [{ name: 'LATENT', type: 'LATENT' }],
 *     run: ({ width }) => [makeLatent(width)],   // width: number
 *   });
 */
export function defineNode<const I extends InputsDecl, const O extends readonly OutputDecl[], const L extends boolean | undefined = undefined>(
  def: NodeDefinition<I, O, L>,
): NodeDefinition<I, O, L> {
  checkDefinition(def as unknown as AnyNodeDefinition);
  return def;
}

export function checkDefinition(def: AnyNodeDefinition): void {
  const where = `node definition '${String(def.name)}'`;
  if (typeof def.name !== 'string' || def.name.trim() === '') throw new NodeDefinitionError('node definition without a name');
  if (typeof def.run !== 'function') throw new NodeDefinitionError(`${where}: run must be a function`);
  if (!Array.isArray(def.outputs)) throw new NodeDefinitionError(`${where}: outputs must be an array`);
  def.outputs.forEach((o, i) => {
    if (!o || typeof o.type !== 'string' || o.type === '' || typeof o.name !== 'string') {
      throw new NodeDefinitionError(`${where}: output ${i} needs a name and a type`);
    }
  });
  const seen = new Set<string>();
  for (const section of ['required', 'optional'] as const) {
    for (const [name, decl] of Object.entries(def.inputs?.[section] ?? {})) {
      if (seen.has(name)) throw new NodeDefinitionError(`${where}: input '${name}' is declared twice`);
      seen.add(name);
      checkInput(`${where}, input '${name}'`, inputSpec(decl));
    }
  }
  for (const [name, kind] of Object.entries(def.inputs?.hidden ?? {})) {
    if (seen.has(name)) throw new NodeDefinitionError(`${where}: hidden input '${name}' clashes with a declared input`);
    if (!HIDDEN_KINDS.has(kind)) throw new NodeDefinitionError(`${where}: hidden input '${name}' has unknown kind '${kind}'`);
  }
}

function checkInput(where: string, spec: InputSpec): void {
  if (typeof spec.type !== 'string' || spec.type === '') throw new NodeDefinitionError(`${where}: missing type`);
  switch (spec.type) {
    case 'INT':
    case 'FLOAT': {
      const s = spec as { default?: unknown; min?: number; max?: number };
      if (s.min !== undefined && s.max !== undefined && s.min > s.max) {
        throw new NodeDefinitionError(`${where}: min ${s.min} is greater than max ${s.max}`);
      }
      if (s.default !== undefined) {
        if (typeof s.default !== 'number') throw new NodeDefinitionError(`${where}: default must be a number`);
        if ((s.min !== undefined && s.default < s.min) || (s.max !== undefined && s.default > s.max)) {
          throw new NodeDefinitionError(`${where}: default ${s.default} is outside [${s.min}, ${s.max}]`);
        }
        if (spec.type === 'INT' && !Number.isInteger(s.default)) throw new NodeDefinitionError(`${where}: default must be an integer`);
      }
      break;
    }
    case 'STRING':
      if ((spec as StringInput).default !== undefined && typeof (spec as StringInput).default !== 'string')
        throw new NodeDefinitionError(`${where}: default must be a string`);
      break;
    case 'BOOLEAN':
      if ((spec as BooleanInput).default !== undefined && typeof (spec as BooleanInput).default !== 'boolean')
        throw new NodeDefinitionError(`${where}: default must be a boolean`);
      break;
    case 'COMBO': {
      const s = spec as { values?: unknown; default?: unknown };
      if (typeof s.values === 'function') break;
      if (!Array.isArray(s.values) || s.values.some((v) => typeof v !== 'string')) {
        throw new NodeDefinitionError(`${where}: COMBO values must be an array of strings or a function`);
      }
      if (s.default !== undefined && !s.values.includes(s.default)) {
        throw new NodeDefinitionError(`${where}: default '${String(s.default)}' is not one of the values`);
      }
      break;
    }
    default:
      break;
  }
}
