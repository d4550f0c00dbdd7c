// The individual graphToPrompt rules (shared/spec/comfyui-api.md §3.4) on small hand-made workflows.
import { describe, expect, it } from 'vitest';
import { convertUiToApi, defineNode, NodeRegistry, parseWorkflowFile } from '../../engine/index.ts';

const reg = new NodeRegistry().registerAll([
  defineNode({
    name: 'Src',
    inputs: { required: { seed: { type: 'INT', default: 3 }, mode: { type: 'COMBO', values: ['a', 'b'] } } },
    outputs: [
      { name: 'LATENT', type: 'LATENT' },
      { name: 'INT', type: 'INT' },
    ],
    run: () => ['l', 1] as never,
  }),
  defineNode({
    name: 'Filter',
    inputs: { required: { x: 'LATENT', amount: { type: 'FLOAT', default: 0.5 } }, optional: { extra: { type: 'INT', forceInput: true } } },
    outputs: [{ name: 'LATENT', type: 'LATENT' }],
    run: () => ['l'] as never,
  }),
  defineNode({
    name: 'Sink',
    outputNode: true,
    inputs: {
      required: {
        x: 'LATENT',
        n: { type: 'INT', default: 7, min: 0 },
        label: { type: 'STRING', default: 'hi' },
        flag: { type: 'BOOLEAN' },
        pick: { type: 'COMBO', values: ['p', 'q'], imageUpload: true },
        list: { type: 'STRING', forceInput: true },
      },
    },
    outputs: [],
    run: () => undefined as never,
  }),
]);
const info = reg.objectInfo();

type N = Record<string, unknown>;
function wf(nodes: N[], links: unknown[][], version = 0.4) {
  return { last_node_id: 99, last_link_id: 99, nodes, links, groups: [], config: {}, extra: {}, version };
}
const src = (id: number, extra: N = {}) => ({
  id,
  type: 'Src',
  mode: 0,
  inputs: [],
  outputs: [
    { name: 'LATENT', type: 'LATENT', links: [] },
    { name: 'INT', type: 'INT', links: [] },
  ],
  widgets_values: [5, 'fixed', 'b'],
  ...extra,
});
const sink = (id: number, link: number | null, extra: N = {}) => ({
  id,
  type: 'Sink',
  mode: 0,
  inputs: [{ name: 'x', type: 'LATENT', link }],
  outputs: [],
  widgets_values: [1, 'txt', true, 'q', 'image'],
  ...extra,
});

describe('convertUiToApi rules', () => {
  it('maps widgets in input order, skipping seed control and upload widgets, and sets _meta.title', () => {
    const { prompt } = convertUiToApi(wf([src(1), sink(2, 1, { title: 'My sink' })], [[1, 1, 0, 2, 0, 'LATENT']]), info);
    expect(prompt).toEqual({
      '1': { class_type: 'Src', inputs: { seed: 5, mode: 'b' }, _meta: { title: 'Src' } },
      '2': { class_type: 'Sink', inputs: { n: 1, label: 'txt', flag: true, pick: 'q', x: ['1', 0] }, _meta: { title: 'My sink' } },
    });
  });

  it('fills widgets missing from an older save with defaults (first choice / false when none)', () => {
    const { prompt } = convertUiToApi(wf([src(1, { widgets_values: [] }), sink(2, 1, { widgets_values: [4] })], [[1, 1, 0, 2, 0, 'LATENT']]), info);
    expect(prompt['1'].inputs).toEqual({ seed: 3, mode: 'a' });
    expect(prompt['2'].inputs).toEqual({ n: 4, label: 'hi', flag: false, pick: 'p', x: ['1', 0] });
  });

  it('wraps array widget values as {__value__}', () => {
    const { prompt } = convertUiToApi(wf([sink(2, null, { widgets_values: [1, ['a', 'b'], true, 'q', 'image'] })], []), info);
    expect(prompt['2'].inputs.label).toEqual({ __value__: ['a', 'b'] });
  });

  it('drops muted nodes and deletes inputs linked to them (dangling links)', () => {
    const { prompt, warnings } = convertUiToApi(wf([src(1, { mode: 2 }), sink(2, 1)], [[1, 1, 0, 2, 0, 'LATENT']]), info);
    expect(Object.keys(prompt)).toEqual(['2']);
    expect(prompt['2'].inputs).not.toHaveProperty('x');
    expect(warnings.join('\n')).toMatch(/node 2 \(Sink\): input 'x' dropped: source node 1 is muted/);
  });

  it('passes bypassed nodes through: the input of the same type is forwarded', () => {
    const filter = {
      id: 3,
      type: 'Filter',
      mode: 4,
      inputs: [
        { name: 'x', type: 'LATENT', link: 1 },
        { name: 'extra', type: 'INT', link: 3 },
      ],
      outputs: [{ name: 'LATENT', type: 'LATENT', links: [2] }],
      widgets_values: [0.5],
    };
    const { prompt } = convertUiToApi(
      wf(
        [src(1), filter, sink(2, 2)],
        [
          [1, 1, 0, 3, 0, 'LATENT'],
          [3, 1, 1, 3, 1, 'INT'],
          [2, 3, 0, 2, 0, 'LATENT'],
        ],
      ),
      info,
    );
    expect(Object.keys(prompt).sort()).toEqual(['1', '2']);
    expect(prompt['2'].inputs.x).toEqual(['1', 0]);
  });

  it('follows chains of Reroute nodes', () => {
    const rr = (id: number, link: number) => ({
      id,
      type: 'Reroute',
      mode: 0,
      inputs: [{ name: '', type: '*', link }],
      outputs: [{ name: '', type: 'LATENT', links: [] }],
    });
    const { prompt } = convertUiToApi(
      wf(
        [src(1), rr(5, 1), rr(6, 2), sink(2, 3)],
        [
          [1, 1, 0, 5, 0, 'LATENT'],
          [2, 5, 0, 6, 0, 'LATENT'],
          [3, 6, 0, 2, 0, 'LATENT'],
        ],
      ),
      info,
    );
    expect(Object.keys(prompt).sort()).toEqual(['1', '2']);
    expect(prompt['2'].inputs.x).toEqual(['1', 0]);
  });

  it('resolves a PrimitiveNode into the constant it holds, and ignores notes', () => {
    const prim = {
      id: 7,
      type: 'PrimitiveNode',
      mode: 0,
      inputs: [],
      outputs: [{ name: 'INT', type: 'INT', links: [4], widget: { name: 'n' } }],
      widgets_values: [42, 'fixed'],
    };
    const note = { id: 8, type: 'Note', mode: 0, inputs: [], outputs: [], widgets_values: ['hello'] };
    const s = sink(2, 1, {
      inputs: [
        { name: 'x', type: 'LATENT', link: 1 },
        { name: 'n', type: 'INT', link: 4, widget: { name: 'n' } },
      ],
    });
    const { prompt } = convertUiToApi(
      wf(
        [src(1), prim, note, s],
        [
          [1, 1, 0, 2, 0, 'LATENT'],
          [4, 7, 0, 2, 1, 'INT'],
        ],
      ),
      info,
    );
    expect(Object.keys(prompt).sort()).toEqual(['1', '2']);
    expect(prompt['2'].inputs.n).toBe(42);
  });

  it('reads version 1 workflows with object links', () => {
    const w = {
      version: 1,
      state: { lastNodeId: 2 },
      nodes: [src(1), sink(2, 1)],
      links: [{ id: 1, origin_id: 1, origin_slot: 0, target_id: 2, target_slot: 0, type: 'LATENT' }],
    };
    expect(convertUiToApi(w, info).prompt['2'].inputs.x).toEqual(['1', 0]);
  });

  it('expands v1 subgraph instances into "<instance>:<inner>" nodes wired through the boundary', () => {
    const sub = {
      id: 'a1b2c3d4-0000-4000-8000-000000000001',
      name: 'blur',
      version: 1,
      inputNode: { id: -10 },
      outputNode: { id: -20 },
      inputs: [{ name: 'x', type: 'LATENT' }],
      outputs: [{ name: 'out', type: 'LATENT' }],
      nodes: [
        {
          id: 1,
          type: 'Filter',
          mode: 0,
          inputs: [{ name: 'x', type: 'LATENT', link: 1 }],
          outputs: [{ name: 'LATENT', type: 'LATENT', links: [2] }],
          widgets_values: [0.25],
        },
      ],
      links: [
        { id: 1, origin_id: -10, origin_slot: 0, target_id: 1, target_slot: 0, type: 'LATENT' },
        { id: 2, origin_id: 1, origin_slot: 0, target_id: -20, target_slot: 0, type: 'LATENT' },
      ],
    };
    const inst = { id: 9, type: sub.id, mode: 0, inputs: [{ name: 'x', type: 'LATENT', link: 1 }], outputs: [{ name: 'out', type: 'LATENT', links: [2] }] };
    const w = {
      version: 1,
      nodes: [src(1), inst, sink(2, 2)],
      links: [
        { id: 1, origin_id: 1, origin_slot: 0, target_id: 9, target_slot: 0, type: 'LATENT' },
        { id: 2, origin_id: 9, origin_slot: 0, target_id: 2, target_slot: 0, type: 'LATENT' },
      ],
      definitions: { subgraphs: [sub] },
    };
    const { prompt } = convertUiToApi(w, info);
    expect(Object.keys(prompt).sort()).toEqual(['1', '2', '9:1']);
    expect(prompt['9:1'].inputs).toEqual({ amount: 0.25, x: ['1', 0] });
    expect(prompt['2'].inputs.x).toEqual(['9:1', 0]);
  });

  it('mutes everything inside a muted subgraph instance; tolerates null link holes', () => {
    const sub = {
      id: 'a1b2c3d4-0000-4000-8000-000000000002',
      version: 1,
      inputNode: { id: -10 },
      outputNode: { id: -20 },
      inputs: [],
      outputs: [{ name: 'out', type: 'LATENT' }],
      nodes: [src(1)],
      links: [{ id: 1, origin_id: 1, origin_slot: 0, target_id: -20, target_slot: 0, type: 'LATENT' }],
    };
    const inst = { id: 9, type: sub.id, mode: 2, inputs: [], outputs: [{ name: 'out', type: 'LATENT', links: [2] }] };
    const w = {
      version: 1,
      nodes: [inst, sink(2, 2)],
      links: [null, { id: 2, origin_id: 9, origin_slot: 0, target_id: 2, target_slot: 0, type: 'LATENT' }],
      definitions: { subgraphs: [sub] },
    };
    const { prompt } = convertUiToApi(w, info);
    expect(Object.keys(prompt)).toEqual(['2']);
    expect(prompt['2'].inputs).not.toHaveProperty('x');
    const w04 = wf([src(1), sink(2, 1)], [null as unknown as unknown[], [1, 1, 0, 2, 0, 'LATENT']]);
    expect(convertUiToApi(w04, info).prompt['2'].inputs.x).toEqual(['1', 0]);
  });

  it('emits unknown node types with their links and warns', () => {
    const odd = { id: 4, type: 'Mystery', mode: 0, inputs: [{ name: 'x', type: 'LATENT', link: 1 }], outputs: [], widgets_values: [1] };
    const { prompt, warnings } = convertUiToApi(wf([src(1), odd], [[1, 1, 0, 4, 0, 'LATENT']]), info);
    expect(prompt['4']).toEqual({ class_type: 'Mystery', inputs: { x: ['1', 0] }, _meta: { title: 'Mystery' } });
    expect(warnings).toEqual(["node 4: unknown node type 'Mystery'; its widget values were not converted"]);
  });

  it('tells API JSON from UI JSON', () => {
    expect(parseWorkflowFile({ '1': { class_type: 'Src', inputs: {} } }).kind).toBe('api');
    expect(parseWorkflowFile(wf([src(1)], [])).kind).toBe('ui');
    expect(() => parseWorkflowFile({ a: 1 })).toThrow(/neither an API prompt/);
  });
});
