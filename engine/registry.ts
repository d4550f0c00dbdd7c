// The node registry: class name -> definition, aliases for the class names other ComfyUI
// packs use, and /object_info generation in exactly ComfyUI's shape (shared/spec/comfyui-api.md §4.1, §4.2).

import { checkDefinition, inputSpec } from './define.ts';
import type { AnyNodeDefinition, ComboInput, InputDecl, InputsDecl, InputSpec, Services } from './types.ts';

/** One input spec as /object_info lists it: `[type, options?]` or `[[choices], options?]`. */
export type ObjectInfoInputSpec = [string | string[], Record<string, unknown>?];

/** One entry of /object_info (shared/spec/comfyui-api.md §4.1). */
export interface ObjectInfoNode {
  input: {
    required?: Record<string, ObjectInfoInputSpec>;
    optional?: Record<string, ObjectInfoInputSpec>;
    hidden?: Record<string, string>;
  };
  input_order: { required?: string[]; optional?: string[] };
  is_input_list: boolean;
  output: string[];
  output_is_list: boolean[];
  output_name: string[];
  output_tooltips?: string[];
  name: string;
  display_name: string;
  description: string;
  python_module: string;
  category: string;
  output_node: boolean;
  deprecated?: boolean;
  experimental?: boolean;
  search_aliases?: string[];
  [k: string]: unknown;
}
export type ObjectInfo = Record<string, ObjectInfoNode>;

/**
 * Registers a node under another class name, e.g. `EmptyDCAELatentImage` for our
 * `EmptySanaLatentImage`. By default the alias has the target's inputs. When the other pack's
 * node has different widgets, give the alias its own `inputs` (what /object_info shows and what
 * validation checks, so saved `widgets_values` map onto them) and a `mapInputs` that turns
 * validated alias inputs into the target's inputs before `run()`.
 */
export interface NodeAlias {
  name: string;
  displayName?: string;
  category?: string;
  description?: string;
  inputs?: InputsDecl;
  mapInputs?: (inputs: Record<string, unknown>, services: Services) => Record<string, unknown>;
}

export interface RegisteredNode {
  /** The class name this entry answers to. */
  classType: string;
  /** The definition that runs (for an alias: the target's). */
  def: AnyNodeDefinition;
  displayName: string;
  category: string;
  description: string;
  /** Inputs as declared for this class name (an alias may declare its own). */
  inputs: InputsDecl;
  /** Set for aliases with their own inputs: alias inputs -> target inputs. */
  mapInputs?: (inputs: Record<string, unknown>, services: Services) => Record<string, unknown>;
  /** The target's class name when this entry is an alias. */
  aliasOf?: string;
}

export interface RegistryOptions {
  /**
   * What the host gives its nodes (folders, model cache...): passed to COMBO value functions,
   * `fingerprint`, `validateInputs` and `mapInputs`, and the executor's default `ctx.services`.
   */
  services?: Services;
}

export interface RegisterOptions {
  aliases?: (string | NodeAlias)[];
}

export class RegistryError extends Error {
  override name = 'RegistryError';
}

export const DEFAULT_PYTHON_MODULE = 'custom_nodes.sana_graph';
export const DEFAULT_CATEGORY = 'sd';

export class NodeRegistry {
  readonly #nodes = new Map<string, RegisteredNode>();
  readonly services: Services;

  constructor(options: RegistryOptions = {}) {
    this.services = options.services ?? {};
  }

  register(def: AnyNodeDefinition, opts: RegisterOptions = {}): this {
    checkDefinition(def);
    this.#add({
      classType: def.name,
      def,
      displayName: def.displayName ?? def.name,
      category: def.category ?? DEFAULT_CATEGORY,
      description: def.description ?? '',
      inputs: def.inputs,
    });
    for (const a of opts.aliases ?? []) this.alias(def.name, a);
    return this;
  }

  registerAll(defs: Iterable<AnyNodeDefinition>): this {
    for (const d of defs) this.register(d);
    return this;
  }

  /** Adds another class name for an already registered node. */
  alias(target: string, alias: string | NodeAlias): this {
    const base = this.#nodes.get(target);
    if (!base) throw new RegistryError(`cannot alias '${typeof alias === 'string' ? alias : alias.name}': target node '${target}' is not registered`);
    if (base.aliasOf) throw new RegistryError(`cannot alias '${target}': it is itself an alias of '${base.aliasOf}'`);
    const a: NodeAlias = typeof alias === 'string' ? { name: alias } : alias;
    if (a.inputs && !a.mapInputs && a.inputs !== base.inputs) {
      // Without a mapping the target would receive inputs it did not declare.
      throw new RegistryError(`alias '${a.name}' of '${target}' declares its own inputs but no mapInputs`);
    }
    if (a.inputs) checkDefinition({ ...base.def, name: a.name, inputs: a.inputs });
    this.#add({
      classType: a.name,
      def: base.def,
      displayName: a.displayName ?? a.name,
      category: a.category ?? base.category,
      description: a.description ?? base.description,
      inputs: a.inputs ?? base.inputs,
      mapInputs: a.mapInputs,
      aliasOf: target,
    });
    return this;
  }

  #add(entry: RegisteredNode): void {
    if (this.#nodes.has(entry.classType)) throw new RegistryError(`node class '${entry.classType}' is already registered`);
    this.#nodes.set(entry.classType, entry);
  }

  get(classType: string): RegisteredNode | undefined {
    return this.#nodes.get(classType);
  }

  has(classType: string): boolean {
    return this.#nodes.has(classType);
  }

  /** Registered class names (aliases included), in registration order. */
  names(): string[] {
    return [...this.#nodes.keys()];
  }

  /** /object_info for one class, or undefined when unknown. Throws if a combo list throws. */
  objectInfoFor(classType: string): ObjectInfoNode | undefined {
    const n = this.#nodes.get(classType);
    return n ? nodeObjectInfo(n, this.services) : undefined;
  }

  /**
   * The whole /object_info. A class whose definition throws while being described (e.g. a
   * combo list function failing) is skipped and reported to `onError`, as ComfyUI does.
   */
  objectInfo(onError?: (classType: string, err: unknown) => void): ObjectInfo {
    const out: ObjectInfo = {};
    for (const n of this.#nodes.values()) {
      try {
        out[n.classType] = nodeObjectInfo(n, this.services);
      } catch (err) {
        onError?.(n.classType, err);
      }
    }
    return out;
  }
}

/** Evaluates a COMBO's choices (a fixed list or a function listing e.g. model files). */
export function comboValues(spec: ComboInput, services: Services = {}): readonly string[] {
  const v = typeof spec.values === 'function' ? spec.values(services) : spec.values;
  if (!Array.isArray(v)) throw new RegistryError('COMBO values function did not return an array');
  return v;
}

function dropUndefined(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

/** Our spec -> ComfyUI's `[type, options]` (legacy list form for COMBO). */
export function toObjectInfoSpec(decl: InputDecl, services: Services = {}): ObjectInfoInputSpec {
  const spec: InputSpec = inputSpec(decl);
  const common = { tooltip: spec.tooltip, forceInput: spec.forceInput || undefined, advanced: spec.advanced || undefined };
  let opts: Record<string, unknown>;
  switch (spec.type) {
    case 'INT': {
      const s = spec as Extract<InputSpec, { type: 'INT' }>;
      opts = {
        default: s.default,
        min: s.min,
        max: s.max,
        step: s.step,
        display: s.display,
        control_after_generate: s.controlAfterGenerate || undefined,
        ...common,
      };
      break;
    }
    case 'FLOAT': {
      const s = spec as Extract<InputSpec, { type: 'FLOAT' }>;
      opts = { default: s.default, min: s.min, max: s.max, step: s.step, round: s.round, display: s.display, ...common };
      break;
    }
    case 'STRING': {
      const s = spec as Extract<InputSpec, { type: 'STRING' }>;
      opts = { default: s.default, multiline: s.multiline, dynamicPrompts: s.dynamicPrompts, placeholder: s.placeholder, ...common };
      break;
    }
    case 'BOOLEAN': {
      const s = spec as Extract<InputSpec, { type: 'BOOLEAN' }>;
      opts = { default: s.default, label_on: s.labelOn, label_off: s.labelOff, ...common };
      break;
    }
    case 'COMBO': {
      const s = spec as ComboInput;
      const values = [...comboValues(s, services)];
      opts = dropUndefined({
        default: s.default,
        control_after_generate: s.controlAfterGenerate || undefined,
        image_upload: s.imageUpload || undefined,
        ...common,
      });
      return Object.keys(opts).length ? [values, opts] : [values];
    }
    default:
      opts = common;
  }
  opts = dropUndefined(opts);
  return Object.keys(opts).length ? [spec.type, opts] : [spec.type];
}

function section(decls: Record<string, InputDecl> | undefined, services: Services): Record<string, ObjectInfoInputSpec> | undefined {
  if (!decls) return undefined;
  const out: Record<string, ObjectInfoInputSpec> = {};
  for (const [name, d] of Object.entries(decls)) out[name] = toObjectInfoSpec(d, services);
  return out;
}

function nodeObjectInfo(n: RegisteredNode, services: Services): ObjectInfoNode {
  const { def } = n;
  const input: ObjectInfoNode['input'] = {};
  const order: ObjectInfoNode['input_order'] = {};
  const req = section(n.inputs.required, services);
  const opt = section(n.inputs.optional, services);
  if (req) {
    input.required = req;
    order.required = Object.keys(req);
  }
  if (opt) {
    input.optional = opt;
    order.optional = Object.keys(opt);
  }
  if (n.inputs.hidden) input.hidden = { ...n.inputs.hidden };
  const info: ObjectInfoNode = {
    input,
    input_order: order,
    is_input_list: def.inputIsList === true,
    output: def.outputs.map((o) => o.type),
    output_is_list: def.outputs.map((o) => o.isList === true),
    output_name: def.outputs.map((o) => o.name),
    name: n.classType,
    display_name: n.displayName,
    description: n.description,
    python_module: def.module ?? DEFAULT_PYTHON_MODULE,
    category: n.category,
    output_node: def.outputNode === true,
  };
  if (def.outputs.some((o) => o.tooltip)) info.output_tooltips = def.outputs.map((o) => o.tooltip ?? '');
  if (def.deprecated) info.deprecated = true;
  if (def.experimental) info.experimental = true;
  return info;
}
