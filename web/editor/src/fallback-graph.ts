// When the server ships no default workflow, build a small runnable-looking graph from
// object_info alone: start at an image output node and add, for every required socket, a node
// that produces that type, recursively. Loader-like producers (no sockets of their own) are
// shared between consumers, as a hand-made graph would share one model loader.
import { LiteGraph, type LGraph, type LGraphNode } from '@comfyorg/litegraph';
import { planNode, type NodeDef, type ObjectInfo } from './object-info.ts';

const MAX_DEPTH = 8;

function socketInputs(def: NodeDef) {
  return planNode(def).filter((p) => !p.widget && !p.optional);
}

export function buildFallbackGraph(graph: LGraph, defs: ObjectInfo): boolean {
  const all = Object.values(defs);
  const output =
    all.find((d) => d.name === 'SaveImage') ??
    all.find((d) => d.output_node && socketInputs(d).some((p) => p.type === 'IMAGE')) ??
    all.find((d) => d.output_node);
  if (!output) return false;
  graph.clear();
  const shared = new Map<string, LGraphNode>();

  const producerFor = (type: string, visiting: Set<string>): NodeDef | undefined =>
    all
      .filter((d) => !d.deprecated && !visiting.has(d.name) && (d.output ?? []).includes(type))
      .sort((a, b) => socketInputs(a).length - socketInputs(b).length || a.name.localeCompare(b.name))[0];

  const add = (def: NodeDef, depth: number, visiting: Set<string>): LGraphNode | null => {
    const node = LiteGraph.createNode(def.name);
    if (!node) return null;
    graph.add(node);
    if (depth >= MAX_DEPTH) return node;
    const next = new Set(visiting).add(def.name);
    for (const p of socketInputs(def)) {
      const producer = producerFor(p.type, next);
      if (!producer) continue;
      const isLeaf = socketInputs(producer).length === 0;
      let src = isLeaf ? shared.get(producer.name) : undefined;
      if (!src) {
        const made = add(producer, depth + 1, next);
        if (!made) continue;
        src = made;
        if (isLeaf) shared.set(producer.name, src);
      }
      const slot = node.inputs.findIndex((i) => i.name === p.name);
      const outSlot = src.outputs.findIndex((o) => o.type === p.type);
      if (slot >= 0 && outSlot >= 0) src.connect(outSlot, node, slot);
    }
    return node;
  };
  add(output, 0, new Set());
  graph.arrange();
  return true;
}
