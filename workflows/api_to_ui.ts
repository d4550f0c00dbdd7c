// Builds a litegraph UI workflow (schema 0.4, as the ComfyUI frontend saves it) from an API prompt
// and /object_info: nodes laid out in columns by graph depth, links with their socket types,
// widgets_values in widget order (with the seed's control_after_generate slot). The shipped
// `*.ui.json` files are produced with it, and the tests check that converting them back with the
// engine gives the `*.api.json` they came from.
//
//   node --import tsx workflows/api_to_ui.ts workflows/sana_default.api.json > workflows/sana_default.ui.json
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { hasExtraWidget, isWidgetInput } from '../engine/convert.ts';
import type { ApiPrompt, ObjectInfo } from '../engine/index.ts';

type UiLink = [id: number, from: number, fromSlot: number, to: number, toSlot: number, type: string];

const COL_W = 420;
const ROW_GAP = 40;

/** Rough node heights (title + sockets + widgets), so columns do not overlap. */
function nodeHeight(sockets: number, widgets: number, multiline: number): number {
  return 30 + 22 * sockets + 26 * widgets + 110 * multiline;
}

export function apiToUi(prompt: ApiPrompt, objectInfo: ObjectInfo, control: 'fixed' | 'randomize' = 'fixed'): Record<string, unknown> {
  const ids = Object.keys(prompt);
  const num = (id: string): number => {
    const n = Number(id);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`apiToUi: node id "${id}" must be a positive integer for the UI format`);
    return n;
  };
  // Depth = longest chain of links from a source node: the column.
  const depth = new Map<string, number>();
  const depthOf = (id: string, seen = new Set<string>()): number => {
    if (depth.has(id)) return depth.get(id)!;
    if (seen.has(id)) throw new Error(`apiToUi: cycle through node ${id}`);
    seen.add(id);
    let d = 0;
    for (const v of Object.values(prompt[id].inputs)) if (Array.isArray(v) && v.length === 2) d = Math.max(d, depthOf(String(v[0]), seen) + 1);
    depth.set(id, d);
    return d;
  };
  ids.forEach((id) => depthOf(id));

  const links: UiLink[] = [];
  const outLinks = new Map<string, number[][]>(); // node -> output slot -> link ids
  const nodes: Record<string, unknown>[] = [];
  const colY = new Map<number, number>();
  const order = [...ids].sort((a, b) => depth.get(a)! - depth.get(b)! || num(a) - num(b));
  for (const id of order) {
    const outs = objectInfo[prompt[id].class_type]?.output ?? [];
    outLinks.set(id, outs.map(() => []));
  }
  let linkId = 0;
  order.forEach((id, orderIndex) => {
    const node = prompt[id];
    const def = objectInfo[node.class_type];
    if (!def) throw new Error(`apiToUi: node ${id}: class ${node.class_type} is not in object_info`);
    const inputs: Record<string, unknown>[] = [];
    const widgetsValues: unknown[] = [];
    let widgets = 0;
    let multiline = 0;
    for (const section of ['required', 'optional'] as const) {
      const specs = def.input[section] ?? {};
      for (const name of def.input_order[section] ?? Object.keys(specs)) {
        const spec = specs[name];
        const value = node.inputs[name];
        const linked = Array.isArray(value) && value.length === 2;
        if (isWidgetInput(spec)) {
          widgets++;
          if ((spec[1] as { multiline?: boolean } | undefined)?.multiline) multiline++;
          widgetsValues.push(linked ? null : value);
          if (hasExtraWidget(name, spec)) widgetsValues.push(control);
          if (!linked) continue;
        }
        const entry: Record<string, unknown> = { name, type: Array.isArray(spec[0]) ? 'COMBO' : spec[0], link: null };
        if (isWidgetInput(spec)) entry.widget = { name };
        if (linked) {
          const [src, slot] = value as [string, number];
          const type = objectInfo[prompt[src].class_type].output[slot];
          linkId++;
          links.push([linkId, num(src), slot, num(id), inputs.length, type]);
          outLinks.get(src)![slot].push(linkId);
          entry.link = linkId;
        }
        inputs.push(entry);
      }
    }
    const col = depth.get(id)!;
    const y = colY.get(col) ?? 60;
    const size = [380, nodeHeight(inputs.length + def.output.length, widgets, multiline)];
    colY.set(col, y + size[1] + ROW_GAP);
    nodes.push({
      id: num(id),
      type: node.class_type,
      pos: [40 + col * COL_W, y],
      size,
      flags: {},
      order: orderIndex,
      mode: 0,
      inputs,
      outputs: def.output.map((type, slot) => ({ name: def.output_name[slot], type, links: null as number[] | null, slot_index: slot })),
      title: node._meta?.title,
      properties: { 'Node name for S&R': node.class_type },
      widgets_values: widgetsValues,
    });
  });
  for (const n of nodes) {
    const lists = outLinks.get(String(n.id))!;
    for (const o of n.outputs as Array<{ links: number[] | null; slot_index: number }>) {
      const l = lists[o.slot_index];
      o.links = l.length ? l : null;
    }
  }
  return {
    last_node_id: Math.max(...ids.map(num)),
    last_link_id: linkId,
    nodes,
    links,
    groups: [],
    config: {},
    extra: { ds: { scale: 0.8, offset: [0, 0] } },
    version: 0.4,
  };
}

async function main(file: string): Promise<void> {
  const { NodeRegistry } = await import('../engine/index.ts');
  const { registerProductNodes } = await import('../nodes/index.ts');
  const { createNodeServices } = await import('../nodes/services.ts');
  // The default folders (./input, the models folder): model and image combos list their files.
  const objectInfo = registerProductNodes(new NodeRegistry({ services: createNodeServices() })).objectInfo();
  const prompt = JSON.parse(fs.readFileSync(file, 'utf8')) as ApiPrompt;
  process.stdout.write(JSON.stringify(apiToUi(prompt, objectInfo), null, 2) + '\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: api_to_ui.ts <workflow.api.json>');
  await main(file);
}
