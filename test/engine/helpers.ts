// Test helpers: a prompt builder and stub nodes that record which node ids ran.
import { defineNode, Executor, NodeRegistry, type ApiPrompt, type CacheStrategy, type EngineEvent } from '../../engine/index.ts';

export class GraphBuilder {
  readonly prompt: ApiPrompt = {};
  #next = 1;
  node(classType: string, inputs: Record<string, unknown> = {}, id = String(this.#next++)) {
    this.prompt[id] = { class_type: classType, inputs };
    return { id, out: (slot = 0): [string, number] => [id, slot] };
  }
}

export interface StubWorld {
  registry: NodeRegistry;
  /** Node ids in the order their run() was called (one entry per call). */
  runs: string[];
  /** Values the fingerprint of 'File' nodes reads, by path. */
  files: Map<string, number>;
}

export function stubWorld(): StubWorld {
  const runs: string[] = [];
  const files = new Map<string, number>();
  const registry = new NodeRegistry().registerAll([
    defineNode({
      name: 'Const',
      inputs: { required: { value: { type: 'INT', default: 0, min: -1e9, max: 1e9 } } },
      outputs: [{ name: 'INT', type: 'INT' }],
      run: ({ value }, ctx) => (runs.push(ctx.nodeId), [value]),
    }),
    defineNode({
      name: 'Add',
      inputs: { required: { a: 'INT' }, optional: { b: 'INT', c: 'INT' } },
      outputs: [{ name: 'INT', type: 'INT' }],
      run: ({ a, b, c }, ctx) => (runs.push(ctx.nodeId), [a + (b ?? 0) + (c ?? 0)]),
    }),
    defineNode({
      name: 'Out',
      outputNode: true,
      inputs: { required: { x: 'INT' } },
      outputs: [],
      run: ({ x }, ctx) => (runs.push(ctx.nodeId), { ui: { values: [x] } }),
    }),
    defineNode({
      name: 'Fail',
      inputs: { required: { x: 'INT', fail: { type: 'BOOLEAN', default: true } } },
      outputs: [{ name: 'INT', type: 'INT' }],
      run: ({ x, fail }, ctx) => {
        runs.push(ctx.nodeId);
        if (fail) throw new RangeError(`cannot process ${x}`);
        return [x];
      },
    }),
    defineNode({
      name: 'Slow',
      inputs: { required: { x: 'INT', steps: { type: 'INT', default: 5, min: 1 } } },
      outputs: [{ name: 'INT', type: 'INT' }],
      run: async ({ x, steps }, ctx) => {
        runs.push(ctx.nodeId);
        for (let i = 1; i <= steps; i++) {
          await new Promise((r) => setTimeout(r, 1));
          ctx.progress(i, steps, i === 1 ? { format: 'PNG', data: new Uint8Array([1, 2, 3]) } : undefined);
        }
        return [x];
      },
    }),
    defineNode({
      name: 'Rand',
      inputs: { required: { x: 'INT' } },
      outputs: [{ name: 'INT', type: 'INT' }],
      fingerprint: () => Number.NaN,
      run: ({ x }, ctx) => (runs.push(ctx.nodeId), [x]),
    }),
    defineNode({
      name: 'File',
      inputs: { required: { path: { type: 'STRING' } } },
      outputs: [{ name: 'INT', type: 'INT' }],
      fingerprint: ({ path }) => files.get(path as string),
      run: ({ path }, ctx) => (runs.push(ctx.nodeId), [files.get(path) ?? -1]),
    }),
    defineNode({
      name: 'Range',
      inputs: { required: { n: { type: 'INT', default: 3, min: 0 } } },
      outputs: [{ name: 'INT', type: 'INT', isList: true }],
      run: ({ n }, ctx) => (runs.push(ctx.nodeId), [Array.from({ length: n }, (_, i) => i)]),
    }),
    defineNode({
      name: 'Sum',
      inputIsList: true,
      inputs: { required: { xs: 'INT' } },
      outputs: [{ name: 'INT', type: 'INT' }],
      run: ({ xs }, ctx) => (runs.push(ctx.nodeId), [xs.reduce((s, v) => s + v, 0)]),
    }),
    defineNode({
      name: 'Meta',
      outputNode: true,
      inputs: { required: { x: 'INT' }, hidden: { prompt: 'PROMPT', id: 'UNIQUE_ID', png: 'EXTRA_PNGINFO' } },
      outputs: [],
      run: ({ prompt, id, png }, ctx) => (runs.push(ctx.nodeId), { ui: { seen: [Object.keys(prompt).length, id, png ?? null] } }),
    }),
  ]);
  return { registry, runs, files };
}

export function recordEvents(ex: Executor): EngineEvent[] {
  const events: EngineEvent[] = [];
  ex.onEvent((e) => events.push(e));
  return events;
}

export const STRATEGIES: CacheStrategy[] = ['classic', 'lru', 'none'];
