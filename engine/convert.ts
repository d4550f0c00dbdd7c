// UI (litegraph) workflow -> API prompt, doing what the ComfyUI frontend's graphToPrompt does
// (shared/spec/comfyui-api.md §3.4), driven only by /object_info JSON so the editor can bundle it. Browser-safe: no
// node: imports.

import type { ObjectInfo, ObjectInfoInputSpec, ObjectInfoNode } from './registry.ts';
import { parseUiWorkflow, type ApiNode, type ApiPrompt, type UiWorkflow } from './schemas.ts';
import { ConversionError, flattenWorkflow, SUBGRAPH_INPUT, SUBGRAPH_INSTANCE, type FlatGraph, type FlatNode } from './flatten.ts';

/** Frontend-only node types: never emitted. */
export const VIRTUAL_NODE_TYPES: ReadonlySet<string> = new Set(['Reroute', 'PrimitiveNode', 'Note', 'MarkdownNote']);
export const MODE_MUTED = 2;
export const MODE_BYPASS = 4;

const WIDGET_TYPES = new Set(['INT', 'FLOAT', 'STRING', 'BOOLEAN', 'COMBO']);

export interface ConversionResult {
  prompt: ApiPrompt;
  /** Things the conversion had to guess or drop, each naming the node. */
  warnings: string[];
}

export { ConversionError };

/** Whether an input spec gets a widget (and so a `widgets_values` slot). */
export function isWidgetInput(spec: ObjectInfoInputSpec): boolean {
  const [type, opts] = spec;
  if (opts?.forceInput === true) return false;
  return Array.isArray(type) || WIDGET_TYPES.has(type);
}

/** Whether the frontend inserts a helper widget (seed control, upload button) after this one. */
export function hasExtraWidget(name: string, spec: ObjectInfoInputSpec): boolean {
  const [type, opts] = spec;
  if (opts?.control_after_generate === true) return type === 'INT' || type === 'COMBO' || Array.isArray(type);
  if (type === 'INT' && (name === 'seed' || name === 'noise_seed')) return true;
  return (Array.isArray(type) || type === 'COMBO') && opts?.image_upload === true;
}

/** The value a missing widget takes: the declared default, else the first choice / 0 / "" / false. */
export function widgetDefault(spec: ObjectInfoInputSpec): unknown {
  const [type, opts] = spec;
  if (opts && 'default' in opts) return opts.default;
  if (Array.isArray(type)) return type[0];
  if (type === 'COMBO') return (opts?.options as unknown[] | undefined)?.[0];
  if (type === 'INT' || type === 'FLOAT') return 0;
  if (type === 'STRING') return '';
  if (type === 'BOOLEAN') return false;
  return undefined;
}

/** Widget inputs of a node definition, in widget order (`required` then `optional`). */
export function widgetInputs(def: ObjectInfoNode): [string, ObjectInfoInputSpec][] {
  const out: [string, ObjectInfoInputSpec][] = [];
  for (const section of ['required', 'optional'] as const) {
    const specs = def.input?.[section] ?? {};
    const order = def.input_order?.[section] ?? Object.keys(specs);
    for (const name of order) {
      const spec = specs[name];
      if (spec && isWidgetInput(spec)) out.push([name, spec]);
    }
  }
  return out;
}

function wrap(v: unknown): unknown {
  // Bare arrays mean links in the API format.
  return Array.isArray(v) ? { __value__: v } : v;
}

/** Slot types are strings, or (some custom nodes) flat arrays of strings/numbers. */
function sameType(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => x === b[i]);
}

type Resolved = { kind: 'link'; ref: [string, number] } | { kind: 'value'; value: unknown } | { kind: 'none'; keepWidget: boolean; why: string };

const MAX_HOPS = 100_000;

/** Follows a link through Reroute and bypassed nodes to its real producer (or a Primitive's value). */
function resolveLink(g: FlatGraph, linkId: string | number, inputType: unknown): Resolved {
  let link = g.links.get(String(linkId));
  for (let hops = 0; hops < MAX_HOPS; hops++) {
    if (!link) return { kind: 'none', keepWidget: false, why: `link ${String(linkId)} does not exist` };
    const src = g.nodes.get(link.origin_id);
    if (!src) return { kind: 'none', keepWidget: false, why: `source node ${link.origin_id} does not exist` };
    if (src.type === 'Reroute') {
      const up = src.inputs[0]?.link;
      if (up === null || up === undefined) return { kind: 'none', keepWidget: false, why: `Reroute ${src.id} has no input` };
      link = g.links.get(String(up));
      continue;
    }
    if (src.type === SUBGRAPH_INSTANCE && src.mode !== MODE_BYPASS && src.mode !== MODE_MUTED) {
      const inner = src.subgraphOutputs?.[link.origin_slot];
      if (!inner) return { kind: 'none', keepWidget: false, why: `subgraph node ${src.id} has nothing connected to its output ${link.origin_slot}` };
      link = g.links.get(inner);
      continue;
    }
    if (src.type === SUBGRAPH_INPUT) {
      // Unconnected outside: the inner widget keeps its own (promoted) value.
      const up = src.inputs[link.origin_slot]?.link;
      if (up === null || up === undefined) return { kind: 'none', keepWidget: true, why: `subgraph input ${link.origin_slot} of ${src.id} is not connected` };
      link = g.links.get(up);
      continue;
    }
    if (src.type === 'PrimitiveNode') {
      const wv = src.widgets_values;
      return Array.isArray(wv) && wv.length > 0
        ? { kind: 'value', value: wv[0] }
        : { kind: 'none', keepWidget: true, why: `PrimitiveNode ${src.id} has no value` };
    }
    if (src.mode === MODE_BYPASS) {
      const slot = link.origin_slot;
      const same = (i: number) => sameType(src.inputs[i]?.type, inputType) || sameType(src.inputs[i]?.type, link!.type);
      let idx = slot < src.inputs.length && same(slot) ? slot : -1;
      if (idx < 0) idx = src.inputs.findIndex((_, i) => same(i));
      const up = idx >= 0 ? src.inputs[idx].link : null;
      if (up === null || up === undefined)
        return { kind: 'none', keepWidget: true, why: `bypassed node ${src.id} has no connected input of type ${JSON.stringify(inputType)}` };
      link = g.links.get(String(up));
      continue;
    }
    if (src.mode === MODE_MUTED) return { kind: 'none', keepWidget: false, why: `source node ${src.id} is muted` };
    if (VIRTUAL_NODE_TYPES.has(src.type)) return { kind: 'none', keepWidget: false, why: `source node ${src.id} is a ${src.type}` };
    return { kind: 'link', ref: [src.id, link.origin_slot] };
  }
  throw new ConversionError(`link ${String(linkId)}: more than ${MAX_HOPS} Reroute/bypass hops (a loop of reroutes?)`);
}

function nodeWidgets(node: FlatNode, def: ObjectInfoNode, warnings: string[]): Record<string, unknown> {
  const inputs: Record<string, unknown> = {};
  const wv = node.widgets_values;
  const widgets = widgetInputs(def);
  if (wv !== undefined && !Array.isArray(wv)) {
    // Some custom nodes save widgets_values keyed by widget name.
    for (const [name, spec] of widgets) inputs[name] = wrap(name in wv ? wv[name] : widgetDefault(spec));
    return inputs;
  }
  const values = wv ?? [];
  let i = 0;
  for (const [name, spec] of widgets) {
    // A converted-and-linked widget keeps its slot in widgets_values; the link overrides later.
    inputs[name] = wrap(i < values.length ? values[i] : widgetDefault(spec));
    i++;
    if (hasExtraWidget(name, spec)) i++;
  }
  if (i < values.length) warnings.push(`node ${node.id} (${node.type}): ${values.length - i} extra widget value(s) ignored`);
  return inputs;
}

function executionOrder(g: FlatGraph): FlatNode[] {
  const nodes = [...g.nodes.values()];
  if (nodes.every((n) => typeof n.order === 'number')) nodes.sort((a, b) => (a.order as number) - (b.order as number));
  return nodes;
}

/**
 * Converts a UI workflow (0.4 or v1, as JSON or parsed) to an API prompt. Node types missing from
 * `objectInfo` are emitted with their links only (the server then reports them) and warned about.
 */
export function convertUiToApi(workflow: unknown, objectInfo: ObjectInfo): ConversionResult {
  const wf: UiWorkflow = parseUiWorkflow(workflow);
  const warnings: string[] = [];
  const g = flattenWorkflow(wf, warnings);
  const prompt: ApiPrompt = {};
  for (const node of executionOrder(g)) {
    if (VIRTUAL_NODE_TYPES.has(node.type) || node.type === SUBGRAPH_INSTANCE || node.type === SUBGRAPH_INPUT) continue;
    if (node.mode === MODE_MUTED || node.mode === MODE_BYPASS) continue;
    const def = objectInfo[node.type];
    if (!def) warnings.push(`node ${node.id}: unknown node type '${node.type}'; its widget values were not converted`);
    const inputs = def ? nodeWidgets(node, def, warnings) : {};
    for (const input of node.inputs) {
      if (input.link === null || input.link === undefined) continue;
      const r = resolveLink(g, input.link, input.type);
      if (r.kind === 'link') inputs[input.name] = r.ref;
      else if (r.kind === 'value') inputs[input.name] = wrap(r.value);
      else {
        if (!r.keepWidget) delete inputs[input.name];
        warnings.push(`node ${node.id} (${node.type}): input '${input.name}' dropped: ${r.why}`);
      }
    }
    const out: ApiNode = { inputs, class_type: node.type, _meta: { title: node.title ?? def?.display_name ?? node.type } };
    prompt[node.id] = out;
  }
  // Links to nodes that were not emitted (unknown ids) would fail validation; drop them as the
  // frontend does (the server then reports `required_input_missing`).
  for (const [id, n] of Object.entries(prompt)) {
    for (const [name, v] of Object.entries(n.inputs)) {
      if (Array.isArray(v) && !(String(v[0]) in prompt)) {
        delete n.inputs[name];
        warnings.push(`node ${id} (${n.class_type}): input '${name}' dropped: its source node ${String(v[0])} is not part of the prompt`);
      }
    }
  }
  return { prompt, warnings };
}
