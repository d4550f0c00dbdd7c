// The engine's own overhead: executor cost per node on a 500-node graph of trivial nodes
// (validation, planning, signatures, events and scheduling; the nodes do one addition), with
// every node running (cache 'none'), with a first run that fills the 'classic' cache, and a
// fully cached re-run; plus validation and UI->API conversion of the same graph.
//   npm run bench -- engine
import { performance } from 'node:perf_hooks';
import { convertUiToApi, defineNode, Executor, NodeRegistry, validatePrompt, type ApiPrompt } from '../engine/index.ts';
import type { BenchRow } from './types.ts';

const NODES = 500;
const REPS = 9;
const WARMUP = 3;

const registry = new NodeRegistry().registerAll([
  defineNode({
    name: 'Seed',
    inputs: { required: { v: { type: 'INT', default: 0, min: 0, max: 1e9 } } },
    outputs: [{ name: 'N', type: 'NUM' }],
    run: ({ v }) => [v] as never,
  }),
  defineNode({
    name: 'Mix',
    inputs: { required: { a: 'NUM', k: { type: 'FLOAT', default: 1 } }, optional: { b: 'NUM' } },
    outputs: [{ name: 'N', type: 'NUM' }],
    run: ({ a, b, k }) => [(a as number) + ((b as number | undefined) ?? 0) * k] as never,
  }),
  defineNode({ name: 'Sink', outputNode: true, inputs: { required: { x: 'NUM' } }, outputs: [], run: ({ x }) => ({ ui: { values: [x] } }) }),
]);

/** Node i reads nodes i-1 and (when i > 7) i-7: a DAG with long and short edges, one sink. */
function graph(seed: number): ApiPrompt {
  const p: ApiPrompt = { '0': { class_type: 'Seed', inputs: { v: seed } } };
  for (let i = 1; i < NODES - 1; i++) {
    const inputs: Record<string, unknown> = { a: [String(i - 1), 0], k: (i % 5) / 4 };
    if (i > 7) inputs.b = [String(i - 7), 0];
    p[String(i)] = { class_type: 'Mix', inputs };
  }
  p[String(NODES - 1)] = { class_type: 'Sink', inputs: { x: [String(NODES - 2), 0] } };
  return p;
}

/** The same graph as a litegraph 0.4 UI workflow. */
function uiWorkflow(prompt: ApiPrompt) {
  const nodes: Record<string, unknown>[] = [];
  const links: unknown[][] = [];
  let linkId = 0;
  for (const [id, n] of Object.entries(prompt)) {
    const inputs: Record<string, unknown>[] = [];
    const widgets: unknown[] = [];
    for (const [name, v] of Object.entries(n.inputs)) {
      if (Array.isArray(v)) {
        links.push([++linkId, Number(v[0]), v[1], Number(id), inputs.length, 'NUM']);
        inputs.push({ name, type: 'NUM', link: linkId });
      } else {
        widgets.push(v);
      }
    }
    nodes.push({
      id: Number(id),
      type: n.class_type,
      pos: [0, 0],
      size: [100, 50],
      mode: 0,
      order: Number(id),
      inputs,
      outputs: [{ name: 'N', type: 'NUM', links: [] }],
      properties: {},
      widgets_values: widgets,
    });
  }
  return { last_node_id: NODES, last_link_id: linkId, nodes, links, groups: [], config: {}, extra: {}, version: 0.4 };
}

const mid = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Median wall time (ms); `cpu` gets the median process CPU time (ms), which load on a shared machine inflates far less. */
async function median(fn: () => unknown | Promise<unknown>, cpu?: { ms: number }): Promise<number> {
  // Warm-up runs let the JIT settle before anything is timed.
  for (let i = 0; i < WARMUP; i++) await fn();
  const wall: number[] = [];
  const cpuMs: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpuMs.push((c.user + c.system) / 1000);
  }
  if (cpu) cpu.ms = mid(cpuMs);
  return mid(wall);
}

export default async function engineBench(): Promise<BenchRow[]> {
  const prompt = graph(1);
  const base = `${NODES} nodes, median of ${REPS} after ${WARMUP} warm-up runs`;
  const notes = `${base}, wall time`;
  let seed = 0;
  const none = new Executor(registry, { cache: 'none' });
  const cpuNone = { ms: 0 };
  const tNone = await median(() => none.execute(prompt, { promptId: 'b' }), cpuNone);
  const classic = new Executor(registry, { cache: 'classic' });
  // A new seed each run invalidates every node: the first-run cost including cache inserts.
  const tFill = await median(() => classic.execute(graph(++seed), { promptId: 'b' }));
  const warm = graph(0);
  await classic.execute(warm, { promptId: 'w' });
  const tCached = await median(() => classic.execute(warm, { promptId: 'b' }));
  const tValidate = await median(() => {
    if (!validatePrompt(prompt, registry).ok) throw new Error('bench graph does not validate');
  });
  const ui = uiWorkflow(prompt);
  const info = registry.objectInfo();
  const tConvert = await median(() => convertUiToApi(ui, info));
  const converted = convertUiToApi(ui, info).prompt;
  if (JSON.stringify(converted['9'].inputs) !== JSON.stringify({ k: prompt['9'].inputs.k, a: prompt['9'].inputs.a, b: prompt['9'].inputs.b })) {
    throw new Error('bench UI workflow did not convert back to the prompt');
  }
  return [
    { name: 'executor, all nodes run (cache none)', metric: 'overhead per node', value: tNone / NODES, unit: 'ms/node', notes: `${notes}; target < 0.2` },
    {
      name: 'executor, all nodes run (cache none)',
      metric: 'CPU time per node',
      value: cpuNone.ms / NODES,
      unit: 'ms/node',
      notes: `${base}, process CPU time (less sensitive to load on a shared machine)`,
    },
    { name: 'executor, first run (cache classic)', metric: 'overhead per node', value: tFill / NODES, unit: 'ms/node', notes },
    { name: 'executor, identical re-run (all cached)', metric: 'time per node', value: tCached / NODES, unit: 'ms/node', notes },
    { name: 'validatePrompt', metric: 'time', value: tValidate, unit: 'ms', notes },
    { name: 'convertUiToApi', metric: 'time', value: tConvert, unit: 'ms', notes },
  ];
}
