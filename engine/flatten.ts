// Normalizes a UI workflow (0.4 array links or v1 object links) into one flat graph, expanding
// v1 subgraph instances into their inner nodes with ids "<instance id>:<inner id>" (nested:
// "a:b:c"). Subgraph boundaries become pass-through pseudo nodes that `convert.ts` follows like
// Reroutes, so producers resolve to real nodes. Browser-safe.

import type { UiNode, UiSubgraph, UiWorkflow } from './schemas.ts';

/** A subgraph instance: output slot k continues at `subgraphOutputs[k]` (an inner link). */
export const SUBGRAPH_INSTANCE = '\u0000subgraph-instance';
/** A subgraph's input node: output slot k continues at the instance's input k link. */
export const SUBGRAPH_INPUT = '\u0000subgraph-input';

export interface FlatInput {
  name: string;
  type: unknown;
  link: string | null;
}

export interface FlatNode {
  id: string;
  type: string;
  mode?: number;
  order?: number;
  title?: string;
  inputs: FlatInput[];
  widgets_values?: unknown[] | Record<string, unknown>;
  /** Only for SUBGRAPH_INSTANCE: per output slot, the inner link feeding the output node. */
  subgraphOutputs?: (string | null)[];
}

export interface FlatLink {
  id: string;
  origin_id: string;
  origin_slot: number;
  target_id: string;
  target_slot: number;
  type: unknown;
}

export interface FlatGraph {
  nodes: Map<string, FlatNode>;
  links: Map<string, FlatLink>;
}

const MAX_SUBGRAPH_DEPTH = 32;

export class ConversionError extends Error {
  override name = 'ConversionError';
}

interface RawLink {
  id: number;
  origin_id: number | string;
  origin_slot: number;
  target_id: number | string;
  target_slot: number;
  type?: unknown;
}

function rawLinks(links: readonly unknown[]): RawLink[] {
  return links
    .filter((l) => l !== null && l !== undefined)
    .map((l) => {
      if (Array.isArray(l)) return { id: l[0], origin_id: l[1], origin_slot: l[2], target_id: l[3], target_slot: l[4], type: l[5] } as RawLink;
      return l as RawLink;
    });
}

function collectDefinitions(defs: readonly UiSubgraph[] | undefined, into: Map<string, UiSubgraph>): void {
  const stack = [...(defs ?? [])];
  while (stack.length) {
    const d = stack.pop()!;
    if (!into.has(d.id)) into.set(d.id, d);
    stack.push(...(d.definitions?.subgraphs ?? []));
  }
}

export function flattenWorkflow(wf: UiWorkflow, warnings: string[]): FlatGraph {
  const g: FlatGraph = { nodes: new Map(), links: new Map() };
  const defs = new Map<string, UiSubgraph>();
  collectDefinitions((wf as { definitions?: { subgraphs?: UiSubgraph[] } }).definitions?.subgraphs, defs);

  type Job = { nodes: readonly UiNode[]; links: readonly unknown[]; prefix: string; depth: number; chain: string[]; mode?: number };
  const jobs: Job[] = [{ nodes: wf.nodes, links: wf.links ?? [], prefix: '', depth: 0, chain: [] }];
  while (jobs.length) {
    const job = jobs.pop()!;
    const lk = (id: number | string | null | undefined) => (id === null || id === undefined ? null : `${job.prefix}${id}`);
    for (const l of rawLinks(job.links)) {
      const id = lk(l.id)!;
      g.links.set(id, {
        id,
        origin_id: `${job.prefix}${l.origin_id}`,
        origin_slot: l.origin_slot,
        target_id: `${job.prefix}${l.target_id}`,
        target_slot: l.target_slot,
        type: l.type,
      });
    }
    for (const n of job.nodes) {
      const id = `${job.prefix}${n.id}`;
      const inputs: FlatInput[] = (n.inputs ?? []).map((i) => ({ name: i.name, type: i.type, link: lk(i.link) }));
      // A muted subgraph instance mutes everything inside it.
      const mode = job.mode === 2 ? 2 : n.mode;
      const def = defs.get(n.type);
      if (!def || mode === 4) {
        g.nodes.set(id, { id, type: n.type, mode, order: n.order, title: n.title, inputs, widgets_values: n.widgets_values });
        continue;
      }
      if (job.chain.includes(def.id)) throw new ConversionError(`subgraph '${def.name ?? def.id}' contains itself (node ${id})`);
      if (job.depth + 1 > MAX_SUBGRAPH_DEPTH) throw new ConversionError(`node ${id}: subgraphs nested deeper than ${MAX_SUBGRAPH_DEPTH} levels`);
      const inner = `${id}:`;
      const innerLinks = rawLinks(def.links ?? []);
      const outputNodeId = def.outputNode?.id;
      const outs = (def.outputs ?? []).map((_, k) => {
        const feed = innerLinks.find((l) => String(l.target_id) === String(outputNodeId) && l.target_slot === k);
        return feed ? `${inner}${feed.id}` : null;
      });
      g.nodes.set(id, { id, type: SUBGRAPH_INSTANCE, mode, order: n.order, title: n.title, inputs, subgraphOutputs: outs });
      if (def.inputNode) {
        const inId = `${inner}${def.inputNode.id}`;
        // Its inputs mirror the instance's inputs, matched by subgraph input name.
        const mirrored = (def.inputs ?? []).map((slot, k) => {
          const outer = inputs.find((i) => i.name === slot.name) ?? inputs[k];
          return { name: slot.name, type: slot.type, link: outer?.link ?? null };
        });
        g.nodes.set(inId, { id: inId, type: SUBGRAPH_INPUT, inputs: mirrored });
      }
      jobs.push({ nodes: def.nodes, links: def.links ?? [], prefix: inner, depth: job.depth + 1, chain: [...job.chain, def.id], mode });
    }
  }
  if (defs.size && ![...g.nodes.values()].some((n) => n.type === SUBGRAPH_INSTANCE)) warnings.push('workflow defines subgraphs that no node uses');
  return g;
}
