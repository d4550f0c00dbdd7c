// Prompt validation before queueing (shared/spec/comfyui-api.md §5.1), producing ComfyUI's `{ error, node_errors }`.
// Only output nodes and their ancestors are validated. Constant inputs are coerced and the
// coerced prompt is returned (what the executor runs and history stores).

import { coerceBoolean, coerceFloat, coerceInt, coerceString, nestingDepth, pyListRepr, type Coerced } from './coerce.ts';
import { inputSpec } from './define.ts';
import { collectUpstream, parseLink, topoSort, type LinkEdge } from './graph.ts';
import { comboValues, toObjectInfoSpec, type NodeRegistry, type RegisteredNode } from './registry.ts';
import type { ApiNode, ApiPrompt } from './schemas.ts';
import type { ComboInput, InputDecl, InputSpec, Services } from './types.ts';

export interface ErrorObject {
  type: string;
  message: string;
  details: string;
  extra_info: Record<string, unknown>;
}

export interface NodeErrors {
  errors: ErrorObject[];
  dependent_outputs: string[];
  class_type: string;
}

export type ValidationResult =
  | { ok: true; prompt: ApiPrompt; outputs: string[]; node_errors: Record<string, NodeErrors> }
  | { ok: false; error: ErrorObject; node_errors: Record<string, NodeErrors> };

export interface ValidateOptions {
  /** Only these output nodes are executed (POST /prompt `partial_execution_targets`). */
  partialExecutionTargets?: readonly string[];
  /** Prompts with more nodes are refused with `invalid_prompt` (default 10 000). */
  maxNodes?: number;
  /** Constant values nested deeper are refused with `invalid_input_type` (default 64). */
  maxValueDepth?: number;
}

export const DEFAULT_MAX_NODES = 10_000;
export const DEFAULT_MAX_VALUE_DEPTH = 64;
/** ComfyUI prints long combo lists as "(list of length N)" and drops input_config. */
const LONG_LIST = 20;
const CYCLE_NAMES_SHOWN = 10;

/** Thrown by `Executor.execute` for a prompt that does not validate; `response` is the 400 body. */
export class PromptValidationError extends Error {
  override name = 'PromptValidationError';
  constructor(readonly response: { error: ErrorObject; node_errors: Record<string, NodeErrors> }) {
    super(`${response.error.message}${response.error.details ? `: ${response.error.details}` : ''}`);
  }
}

function promptError(type: string, message: string, details = '', extra_info: Record<string, unknown> = {}): ValidationResult {
  return { ok: false, error: { type, message, details, extra_info }, node_errors: {} };
}

/** Types match when equal, when either is '*', or when comma-separated unions intersect. */
export function typesMatch(received: string, expected: string): boolean {
  if (received === expected || received === '*' || expected === '*') return true;
  const a = received.split(',').map((s) => s.trim());
  const b = new Set(expected.split(',').map((s) => s.trim()));
  return a.some((t) => b.has(t));
}

/** What a linked input of this spec accepts: COMBO inputs take COMBO or STRING producers. */
function acceptedType(spec: InputSpec): string {
  return spec.type === 'COMBO' ? 'COMBO,STRING' : spec.type;
}

const declCache = new WeakMap<RegisteredNode, [string, InputDecl, boolean][]>();

/** Declared inputs, required then optional (memoized per registry entry: this is per-node hot). */
export function inputDecls(entry: RegisteredNode): readonly [name: string, decl: InputDecl, required: boolean][] {
  const hit = declCache.get(entry);
  if (hit) return hit;
  const out: [string, InputDecl, boolean][] = [];
  for (const [n, d] of Object.entries(entry.inputs.required ?? {})) out.push([n, d, true]);
  for (const [n, d] of Object.entries(entry.inputs.optional ?? {})) out.push([n, d, false]);
  declCache.set(entry, out);
  return out;
}

interface NodeCheck {
  errors: ErrorObject[];
  links: LinkEdge[];
  inputs: Record<string, unknown>;
}

export function validatePrompt(raw: unknown, registry: NodeRegistry, opts: ValidateOptions = {}): ValidationResult {
  const maxNodes = opts.maxNodes ?? DEFAULT_MAX_NODES;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return promptError(
      'invalid_prompt',
      'Cannot execute because the prompt is not an object keyed by node id.',
      `received ${Array.isArray(raw) ? 'an array' : raw === null ? 'null' : typeof raw}`,
    );
  }
  const ids = Object.keys(raw);
  if (ids.length > maxNodes) {
    return promptError('invalid_prompt', `Cannot execute because the prompt has ${ids.length} nodes, more than the limit of ${maxNodes}.`, '', {
      node_count: ids.length,
      limit: maxNodes,
    });
  }
  const prompt = raw as Record<string, unknown>;
  const entries = new Map<string, RegisteredNode>();
  for (const id of ids) {
    const node = prompt[id] as Partial<ApiNode> | null;
    if (node === null || typeof node !== 'object' || Array.isArray(node)) {
      return promptError('invalid_prompt', 'Cannot execute because a node is not an object.', `Node ID '#${id}'`, { node_id: id });
    }
    // ComfyUI's `missing_node_type` (the frontend's "missing nodes" dialog reads extra_info).
    const meta = (node as { _meta?: unknown })._meta;
    const rawTitle = meta !== null && typeof meta === 'object' ? (meta as { title?: unknown }).title : undefined;
    const title = typeof rawTitle === 'string' ? rawTitle : undefined;
    if (typeof node.class_type !== 'string' || node.class_type === '') {
      return promptError(
        'missing_node_type',
        `Node '${title ?? `ID #${id}`}' has no class_type. The workflow may be corrupted or a custom node may have been removed.`,
        `Node ID '#${id}'`,
        { node_id: id, class_type: null, node_title: title ?? null },
      );
    }
    const entry = registry.get(node.class_type);
    if (!entry) {
      return promptError('missing_node_type', `Node '${title ?? node.class_type}' not found. The custom node may not be installed.`, `Node ID '#${id}'`, {
        node_id: id,
        class_type: node.class_type,
        node_title: title ?? node.class_type,
      });
    }
    if (node.inputs !== undefined && (node.inputs === null || typeof node.inputs !== 'object' || Array.isArray(node.inputs))) {
      return promptError('invalid_prompt', `Cannot execute because node ${node.class_type} has an inputs field that is not an object.`, `Node ID '#${id}'`, {
        node_id: id,
        class_type: node.class_type,
      });
    }
    entries.set(id, entry);
  }

  const targets = opts.partialExecutionTargets ? new Set(opts.partialExecutionTargets.map(String)) : undefined;
  const outputs = ids.filter((id) => entries.get(id)!.def.outputNode === true && (!targets || targets.has(id)));
  if (outputs.length === 0) return promptError('prompt_no_outputs', 'Prompt has no outputs');

  const maxDepth = opts.maxValueDepth ?? DEFAULT_MAX_VALUE_DEPTH;
  const checks = new Map<string, NodeCheck>();
  const check = (id: string): NodeCheck => {
    let c = checks.get(id);
    if (!c) {
      try {
        c = checkNode(prompt[id] as ApiNode, entries.get(id)!, prompt, entries, maxDepth, registry.services);
      } catch (err) {
        // e.g. a COMBO list function failing; the node is reported, the process is not.
        const e = err instanceof Error ? err : new Error(String(err));
        c = {
          errors: [
            {
              type: 'exception_during_validation',
              message: 'Exception when validating node',
              details: e.message,
              extra_info: { exception_type: e.name, traceback: (e.stack ?? '').split('\n') },
            },
          ],
          links: [],
          inputs: {},
        };
      }
      checks.set(id, c);
    }
    return c;
  };
  const exists = (id: string) => entries.has(id);
  const depsOf = (id: string) => check(id).links.map((l) => l.source);
  const needed = collectUpstream(outputs, depsOf, exists);

  const topo = topoSort(needed, depsOf);
  if (topo.cyclic.length) {
    const cyclic = new Set(topo.cyclic);
    // Bounded: a hostile 20 000-node cycle must not produce 20 000 x 20 000 names.
    const shown = topo.cyclic.slice(0, CYCLE_NAMES_SHOWN);
    const more = topo.cyclic.length - shown.length;
    const names = shown.map((id) => `#${id} (${entries.get(id)!.classType})`).join(', ') + (more > 0 ? ` and ${more} more` : '');
    for (const id of topo.cyclic) {
      const link = check(id).links.find((l) => cyclic.has(l.source))!;
      check(id).errors.push({
        type: 'dependency_cycle',
        message: 'Dependency cycle detected',
        details: `${link.input}: node ${id} is on a dependency cycle through nodes ${names}`,
        extra_info: { input_name: link.input, linked_node: [link.source, link.slot], cycle_nodes: shown, cycle_length: topo.cyclic.length },
      });
    }
  }

  // A node is valid when it has no error of its own and all its producers are valid.
  const valid = new Map<string, boolean>();
  for (const id of topo.order) valid.set(id, check(id).errors.length === 0 && check(id).links.every((l) => valid.get(l.source) === true));
  for (const id of topo.blocked) valid.set(id, false);

  const nodeErrors: Record<string, NodeErrors> = {};
  const good: string[] = [];
  for (const o of outputs) {
    if (valid.get(o)) {
      good.push(o);
      continue;
    }
    for (const id of collectUpstream([o], depsOf, exists)) {
      const errs = check(id).errors;
      if (!errs.length) continue;
      const ne = (nodeErrors[id] ??= { errors: errs, dependent_outputs: [], class_type: entries.get(id)!.classType });
      ne.dependent_outputs.push(o);
    }
  }
  if (good.length === 0) {
    const lines: string[] = [];
    for (const ne of Object.values(nodeErrors)) for (const e of ne.errors) lines.push(`${e.message}: ${e.details}`);
    return {
      ok: false,
      error: { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details: lines.join('\n'), extra_info: {} },
      node_errors: nodeErrors,
    };
  }

  const coerced: ApiPrompt = {};
  for (const id of ids) {
    const node = prompt[id] as ApiNode;
    const c = checks.get(id);
    coerced[id] = { ...node, inputs: c && c.errors.length === 0 ? c.inputs : { ...(node.inputs ?? {}) } };
  }
  return { ok: true, prompt: coerced, outputs: good, node_errors: nodeErrors };
}

function inputConfig(decl: InputDecl, services: Services): unknown {
  const cfg = toObjectInfoSpec(decl, services);
  return Array.isArray(cfg[0]) && cfg[0].length > LONG_LIST ? null : cfg;
}

function checkNode(
  node: ApiNode,
  entry: RegisteredNode,
  prompt: Record<string, unknown>,
  entries: Map<string, RegisteredNode>,
  maxDepth: number,
  services: Services,
): NodeCheck {
  const given = node.inputs ?? {};
  const inputs: Record<string, unknown> = { ...given };
  const errors: ErrorObject[] = [];
  const links: LinkEdge[] = [];
  for (const [name, decl, required] of inputDecls(entry)) {
    const spec = inputSpec(decl);
    let value = given[name];
    if (value === undefined) {
      if (required) errors.push({ type: 'required_input_missing', message: 'Required input is missing', details: name, extra_info: { input_name: name } });
      continue;
    }
    if (Array.isArray(value)) {
      const err = checkLink(name, decl, spec, value, prompt, entries, services);
      if ('error' in err) errors.push(err.error);
      else links.push(err.link);
      continue;
    }
    if (value !== null && typeof value === 'object' && '__value__' in value) value = (value as { __value__: unknown }).__value__;
    if (nestingDepth(value, maxDepth) > maxDepth) {
      errors.push({
        type: 'invalid_input_type',
        message: `Failed to convert an input value to a ${spec.type} value`,
        details: `${name}, <value nested deeper than ${maxDepth} levels>, value is nested too deeply`,
        extra_info: {
          input_name: name,
          input_config: inputConfig(decl, services),
          received_value: null,
          exception_message: `value is nested deeper than ${maxDepth} levels`,
        },
      });
      continue;
    }
    const r = checkConstant(name, decl, spec, value, services);
    if ('error' in r) errors.push(r.error);
    else inputs[name] = r.value;
  }
  const hook = entry.def.validateInputs;
  if (hook && errors.length === 0) {
    // ComfyUI's VALIDATE_INPUTS: the node's own rules on its constant inputs (linked values do
    // not exist yet), so a value every type check accepts but run() would refuse is a 400 now.
    const linked = new Set(links.map((l) => l.input));
    const constants: Record<string, unknown> = {};
    for (const [name] of inputDecls(entry)) if (name in inputs && !linked.has(name)) constants[name] = inputs[name];
    const problems = hook(entry.mapInputs ? entry.mapInputs(constants, services) : constants, services);
    for (const [name, reason] of Object.entries(problems ?? {})) {
      const decl = inputDecls(entry).find(([n]) => n === name)?.[1];
      errors.push({
        type: 'custom_validation_failed',
        message: 'Custom validation failed for node',
        details: `${name} - ${reason}`,
        extra_info: { input_name: name, ...(decl !== undefined ? { input_config: inputConfig(decl, services) } : {}), received_value: constants[name] ?? null },
      });
    }
  }
  return { errors, links, inputs };
}

function checkLink(
  name: string,
  decl: InputDecl,
  spec: InputSpec,
  value: unknown[],
  prompt: Record<string, unknown>,
  entries: Map<string, RegisteredNode>,
  services: Services,
): { link: LinkEdge } | { error: ErrorObject } {
  const bad = (details: string) => ({
    error: {
      type: 'bad_linked_input',
      message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
      details,
      extra_info: { input_name: name, input_config: inputConfig(decl, services), received_value: value },
    },
  });
  const link = parseLink(value);
  if (!link) return bad(name);
  const src = entries.get(link.source);
  if (!src || !(link.source in prompt)) return bad(`${name}: node '${link.source}' is not in the prompt`);
  const outs = src.def.outputs;
  if (link.slot >= outs.length) return bad(`${name}: node '${link.source}' (${src.classType}) has no output ${link.slot} (it has ${outs.length})`);
  const received = outs[link.slot].type;
  const expected = acceptedType(spec);
  if (!typesMatch(received, expected)) {
    return {
      error: {
        type: 'return_type_mismatch',
        message: 'Return type mismatch between linked nodes',
        details: `${name}, received_type(${received}) mismatch input_type(${spec.type})`,
        extra_info: { input_name: name, input_config: inputConfig(decl, services), received_type: received, linked_node: [link.source, link.slot] },
      },
    };
  }
  return { link: { input: name, source: link.source, slot: link.slot } };
}

function checkConstant(name: string, decl: InputDecl, spec: InputSpec, value: unknown, services: Services): { value: unknown } | { error: ErrorObject } {
  const cfg = () => inputConfig(decl, services);
  let r: Coerced;
  switch (spec.type) {
    case 'INT':
      r = coerceInt(value);
      break;
    case 'FLOAT':
      r = coerceFloat(value);
      break;
    case 'STRING':
      r = coerceString(value);
      break;
    case 'BOOLEAN':
      r = coerceBoolean(value);
      break;
    case 'COMBO': {
      const values = comboValues(spec as ComboInput, services);
      if (typeof value === 'string' && values.includes(value)) return { value };
      const list = values.length > LONG_LIST ? `(list of length ${values.length})` : pyListRepr(values);
      return {
        error: {
          type: 'value_not_in_list',
          message: 'Value not in list',
          details: `${name}: '${String(value)}' not in ${list}`,
          extra_info: { input_name: name, input_config: cfg(), received_value: value },
        },
      };
    }
    case '*':
      return { value };
    default:
      r = { ok: false, reason: `a constant cannot be given for an input of type ${spec.type}; link it to a node output` };
  }
  if (!r.ok) {
    const shown = typeof value === 'object' && value !== null ? JSON.stringify(value).slice(0, 200) : String(value);
    return {
      error: {
        type: 'invalid_input_type',
        message: `Failed to convert an input value to a ${spec.type} value`,
        details: `${name}, ${shown}, ${r.reason}`,
        extra_info: { input_name: name, input_config: cfg(), received_value: value, exception_message: r.reason },
      },
    };
  }
  // A bigint (an INT beyond 2^53) compares exactly with number or bigint bounds.
  const v = r.value as number | bigint;
  if (spec.type === 'INT' || spec.type === 'FLOAT') {
    const { min, max } = spec as { min?: number | bigint; max?: number | bigint };
    if (min !== undefined && v < min) {
      return {
        error: {
          type: 'value_smaller_than_min',
          message: `Value ${v} smaller than min of ${min}`,
          details: name,
          extra_info: { input_name: name, input_config: cfg(), received_value: v },
        },
      };
    }
    if (max !== undefined && v > max) {
      return {
        error: {
          type: 'value_bigger_than_max',
          message: `Value ${v} bigger than max of ${max}`,
          details: name,
          extra_info: { input_name: name, input_config: cfg(), received_value: v },
        },
      };
    }
  }
  return { value: r.value };
}
