// Workflows in and out of the editor: UI-format JSON files, API-format export, files dropped on
// the canvas (UI JSON, API JSON, PNGs with a `workflow` or `prompt` text chunk), and the copy
// kept in localStorage across reloads.
import { LGraph, LiteGraph, type ISerialisedGraph, type LGraphNode } from '@comfyorg/litegraph';
import { readPngText } from './png-text.ts';

export const STORAGE_KEY = 'sana-graph.workflow';

export type UiWorkflow = ISerialisedGraph & { nodes: { type: string }[] };
export type ApiPrompt = Record<string, { class_type: string; inputs: Record<string, unknown>; _meta?: { title?: string } }>;

export function isApiPrompt(data: unknown): data is ApiPrompt {
  if (!data || typeof data !== 'object' || Array.isArray(data)) return false;
  const values = Object.values(data as Record<string, unknown>);
  return values.length > 0 && values.every((v) => !!v && typeof v === 'object' && typeof (v as { class_type?: unknown }).class_type === 'string');
}

export function isUiWorkflow(data: unknown): data is UiWorkflow {
  return !!data && typeof data === 'object' && Array.isArray((data as { nodes?: unknown }).nodes);
}

/** Node types a workflow uses that the server does not offer. */
export function missingNodeTypes(wf: UiWorkflow): string[] {
  const missing = new Set<string>();
  for (const n of wf.nodes) if (!LiteGraph.registered_node_types[n.type]) missing.add(n.type);
  return [...missing];
}

/** Loads a UI workflow into the graph, replacing what was there. Returns missing node types. */
export function loadUiWorkflow(graph: LGraph, wf: UiWorkflow): string[] {
  const missing = missingNodeTypes(wf);
  graph.configure(wf as ISerialisedGraph);
  return missing;
}

/**
 * Rebuilds a graph from an API prompt: one node per entry (same id), widget values by input
 * name, links for 2-element arrays, then an automatic layout — what ComfyUI's "load API JSON" does.
 */
export function loadApiPrompt(graph: LGraph, prompt: ApiPrompt): string[] {
  graph.clear();
  const missing: string[] = [];
  const created = new Map<string, LGraphNode>();
  for (const [id, entry] of Object.entries(prompt)) {
    const node = LiteGraph.createNode(entry.class_type, entry._meta?.title);
    if (!node) {
      missing.push(entry.class_type);
      continue;
    }
    const numeric = Number(id);
    if (Number.isInteger(numeric)) node.id = numeric;
    graph.add(node);
    created.set(id, node);
  }
  for (const [id, entry] of Object.entries(prompt)) {
    const node = created.get(id);
    if (!node) continue;
    for (const [name, value] of Object.entries(entry.inputs ?? {})) {
      if (Array.isArray(value) && value.length === 2) {
        const src = created.get(String(value[0]));
        const slot = node.inputs.findIndex((i) => i.name === name);
        if (src && slot >= 0) src.connect(Number(value[1]), node, slot);
        continue;
      }
      const widget = node.widgets?.find((w) => w.name === name);
      const v = value && typeof value === 'object' && '__value__' in value ? (value as { __value__: unknown }).__value__ : value;
      if (widget) widget.value = v as never;
    }
  }
  graph.arrange();
  return [...new Set(missing)];
}

export type LoadedFile = { kind: 'ui'; workflow: UiWorkflow } | { kind: 'api'; prompt: ApiPrompt };

/** Reads a dropped or opened file: JSON (UI or API format) or a PNG with workflow metadata. */
export async function readWorkflowFile(file: File): Promise<LoadedFile> {
  const isPng = file.type === 'image/png' || /\.png$/i.test(file.name);
  if (isPng) {
    const text = readPngText(new Uint8Array(await file.arrayBuffer()));
    if (text.workflow) {
      const wf = parseJson(text.workflow, `${file.name}: workflow chunk`);
      if (isUiWorkflow(wf)) return { kind: 'ui', workflow: wf };
    }
    if (text.prompt) {
      const prompt = parseJson(text.prompt, `${file.name}: prompt chunk`);
      if (isApiPrompt(prompt)) return { kind: 'api', prompt };
    }
    throw new Error(`${file.name}: this PNG carries no workflow (no "workflow" or "prompt" text chunk)`);
  }
  const data = parseJson(await file.text(), file.name);
  if (isApiPrompt(data)) return { kind: 'api', prompt: data };
  if (isUiWorkflow(data)) return { kind: 'ui', workflow: data };
  throw new Error(`${file.name}: neither a UI workflow (no "nodes" list) nor an API prompt (entries without class_type)`);
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

export function downloadJson(data: unknown, filename: string): void {
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

export function saveToStorage(graph: LGraph): void {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(graph.serialize()));
  } catch (err) {
    // Quota errors must not break editing; the graph is simply not persisted.
    console.warn('could not keep the workflow in localStorage', err);
  }
}

export function readFromStorage(): UiWorkflow | null {
  const raw = localStorage.getItem(STORAGE_KEY);
  if (!raw) return null;
  try {
    const data = JSON.parse(raw);
    return isUiWorkflow(data) ? data : null;
  } catch {
    return null;
  }
}
