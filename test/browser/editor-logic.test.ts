// The editor's DOM-free logic, in Node: input specs -> widget plans, number snapping, the
// control_after_generate rules, the PNG text reader, binary WS frames, node registration with
// litegraph (typed slots that refuse wrong links) and the fallback graph.
import { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { LGraph, LiteGraph } from '@comfyorg/litegraph';
import { nextControlledValue, planInput, planNode, snapNumber, precisionOf, type ObjectInfo } from '../../web/editor/src/object-info.ts';
import { readPngText } from '../../web/editor/src/png-text.ts';
import { decodeBinaryFrame } from '../../web/editor/src/api.ts';

// The modules below build on litegraph's classes. The root tsconfig (NodeNext) cannot resolve
// litegraph's extensionless .d.ts imports, so type-checking them from here would fail; they are
// type-checked by web/editor/tsconfig.json (bundler resolution, run by build:editor) and loaded
// here through specifiers tsc does not follow, with the few signatures the tests use.
type Graph = InstanceType<typeof LGraph>;
const load = (rel: string) => import(/* @vite-ignore */ new URL(rel, import.meta.url).href);
const { registerNodeDefs } = (await load('../../web/editor/src/register.ts')) as { registerNodeDefs: (d: ObjectInfo, s: unknown) => string[] };
const { NodeStates } = (await load('../../web/editor/src/node-state.ts')) as { NodeStates: new () => unknown };
const { applyControlAfterGenerate } = (await load('../../web/editor/src/seed-control.ts')) as {
  applyControlAfterGenerate: (g: Graph, rand?: () => number) => number;
};
const { buildFallbackGraph } = (await load('../../web/editor/src/fallback-graph.ts')) as { buildFallbackGraph: (g: Graph, d: ObjectInfo) => boolean };
const { isApiPrompt, isUiWorkflow } = (await load('../../web/editor/src/workflow-io.ts')) as {
  isApiPrompt: (d: unknown) => boolean;
  isUiWorkflow: (d: unknown) => boolean;
};

// Under the root tsconfig (NodeNext), litegraph's extensionless .d.ts imports do not resolve and
// its classes lose their member types; these are the few shapes the tests read.
type W = { name: string; value: unknown };
type Slot = { name: string; type: string; widget?: unknown; link?: unknown };
type N = { type: string; inputs: Slot[] };

const defs: ObjectInfo = {
  TestLoader: {
    name: 'TestLoader',
    display_name: 'Test Loader',
    category: 'test/loaders',
    output_node: false,
    description: '',
    input: { required: { ckpt: [['a.safetensors', 'b.safetensors'], { default: 'b.safetensors' }] } },
    output: ['MODEL'],
    output_name: ['MODEL'],
  },
  TestSampler: {
    name: 'TestSampler',
    display_name: 'Test Sampler',
    category: 'test/sampling',
    output_node: false,
    description: '',
    input: {
      required: {
        model: ['MODEL'],
        seed: ['INT', { default: 5, min: 0, max: 100 }],
        steps: ['INT', { default: 20, min: 1, max: 50, step: 1 }],
        cfg: ['FLOAT', { default: 4.5, min: 0, max: 10, step: 0.1, round: 0.01 }],
        text: ['STRING', { multiline: true, default: 'a cat' }],
        pag: ['BOOLEAN', { default: true }],
      },
      optional: { extra: ['LATENT'] },
    },
    input_order: { required: ['model', 'seed', 'steps', 'cfg', 'text', 'pag'], optional: ['extra'] },
    output: ['IMAGE'],
    output_name: ['IMAGE'],
  },
  TestSave: {
    name: 'TestSave',
    display_name: 'Test Save',
    category: 'test/image',
    output_node: true,
    description: '',
    input: { required: { images: ['IMAGE'], filename_prefix: ['STRING', { default: 'x' }] } },
    output: [],
  },
};

describe('widget plans from input specs', () => {
  it('orders inputs by input_order and classifies widgets and sockets', () => {
    const plans = planNode(defs.TestSampler);
    expect(plans.map((p) => [p.name, p.widget?.kind ?? 'socket', p.optional])).toEqual([
      ['model', 'socket', false],
      ['seed', 'INT', false],
      ['steps', 'INT', false],
      ['cfg', 'FLOAT', false],
      ['text', 'STRING', false],
      ['pag', 'BOOLEAN', false],
      ['extra', 'socket', true],
    ]);
    expect(plans.find((p) => p.name === 'seed')!.control).toBe(true);
    expect(plans.find((p) => p.name === 'steps')!.control).toBe(false);
  });

  it('reads legacy and new combo forms, forceInput and defaults', () => {
    const legacy = planInput('N', 'c', [['x', 'y'], { default: 'y' }], false);
    expect(legacy.widget).toMatchObject({ kind: 'COMBO', value: 'y', values: ['x', 'y'] });
    const modern = planInput('N', 'c', ['COMBO', { options: ['p', 'q'] }], false);
    expect(modern.widget).toMatchObject({ kind: 'COMBO', value: 'p' });
    expect(planInput('N', 'n', ['INT', { forceInput: true }], false).widget).toBeNull();
    expect(planInput('N', 'n', ['INT'], false).widget).toMatchObject({ min: 0, max: 2048, step: 1, value: 0 });
    expect(planInput('N', 's', ['INT', { control_after_generate: true }], false).control).toBe(true);
    expect(() => planInput('N', 'bad', [] as never, false)).toThrow(/N input bad/);
  });

  it('snaps numbers to step (offset by min) and range', () => {
    const int = { kind: 'INT' as const, min: 3, max: 40, step: 4, round: 1 };
    expect(snapNumber(int, 8)).toBe(7);
    expect(snapNumber(int, 100)).toBe(40);
    expect(snapNumber(int, -5)).toBe(3);
    const float = { kind: 'FLOAT' as const, min: 0, max: 10, step: 0.1, round: 0.01 };
    expect(snapNumber(float, 4.5678)).toBe(4.57);
    expect(precisionOf(float)).toBe(2);
    expect(precisionOf({ kind: 'INT', step: 1, round: 1 })).toBe(0);
  });

  it('advances controlled values', () => {
    const r = { min: 0, max: 10, step: 1 };
    expect(nextControlledValue('fixed', 4, r)).toBe(4);
    expect(nextControlledValue('increment', 4, r)).toBe(5);
    expect(nextControlledValue('increment', 10, r)).toBe(10);
    expect(nextControlledValue('decrement', 0, r)).toBe(0);
    expect(nextControlledValue('randomize', 4, r, () => 0.999)).toBe(10);
    expect(nextControlledValue('randomize', 4, r, () => 0)).toBe(0);
    // 2^64-1 as ComfyUI declares seeds: stays a safe integer.
    const big = nextControlledValue('randomize', 0, { min: 0, max: 18446744073709551615, step: 1 }, () => 0.5);
    expect(Number.isSafeInteger(big)).toBe(true);
  });
});

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  dv.setUint32(8 + data.length, 0); // CRC is not checked by the reader
  return out;
}

function pngWith(texts: Record<string, string>): Uint8Array {
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, 1);
  dv.setUint32(4, 1);
  ihdr[8] = 8;
  ihdr[9] = 0;
  const parts = [new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr)];
  for (const [k, v] of Object.entries(texts)) parts.push(chunk('tEXt', new Uint8Array(Buffer.from(`${k}\0${v}`, 'latin1'))));
  parts.push(chunk('IDAT', new Uint8Array(deflateSync(Buffer.from([0, 0])))), chunk('IEND', new Uint8Array()));
  return new Uint8Array(Buffer.concat(parts));
}

describe('PNG text chunks', () => {
  it('reads workflow and prompt', () => {
    const png = pngWith({ prompt: '{"1":{}}', workflow: '{"nodes":[]}' });
    expect(readPngText(png)).toEqual({ prompt: '{"1":{}}', workflow: '{"nodes":[]}' });
  });
  it('rejects non-PNG and truncated files, naming the problem', () => {
    expect(() => readPngText(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]))).toThrow(/not a PNG/);
    const png = pngWith({ workflow: 'x'.repeat(50) });
    expect(() => readPngText(png.subarray(0, 50))).toThrow(/runs past the end/);
  });
});

describe('binary WebSocket frames', () => {
  it('decodes type 1 (format) and type 4 (metadata) previews', async () => {
    const img = new Uint8Array([9, 8, 7]);
    const f1 = new Uint8Array(8 + img.length);
    new DataView(f1.buffer).setUint32(0, 1);
    new DataView(f1.buffer).setUint32(4, 2);
    f1.set(img, 8);
    const d1 = decodeBinaryFrame(f1.buffer)!;
    expect(d1.nodeId).toBeNull();
    expect(d1.blob.type).toBe('image/png');
    expect([...new Uint8Array(await d1.blob.arrayBuffer())]).toEqual([9, 8, 7]);

    const meta = new TextEncoder().encode(JSON.stringify({ node_id: '7', image_type: 'image/jpeg' }));
    const f4 = new Uint8Array(8 + meta.length + img.length);
    new DataView(f4.buffer).setUint32(0, 4);
    new DataView(f4.buffer).setUint32(4, meta.length);
    f4.set(meta, 8);
    f4.set(img, 8 + meta.length);
    const d4 = decodeBinaryFrame(f4.buffer)!;
    expect(d4.nodeId).toBe('7');
    expect(d4.blob.type).toBe('image/jpeg');
    expect(decodeBinaryFrame(new Uint8Array([0, 0, 0, 3, 0, 0, 0, 1, 65]).buffer)).toBeNull();
  });
});

describe('litegraph node types from object_info', () => {
  registerNodeDefs(defs, new NodeStates());

  it('registers categories, titles, widgets and widget sockets', () => {
    const ctor = LiteGraph.registered_node_types.TestSampler as unknown as { category: string; title: string };
    expect(ctor.category).toBe('test/sampling');
    expect(ctor.title).toBe('Test Sampler');
    const n = LiteGraph.createNode('TestSampler')!;
    expect(n.widgets!.map((w: W) => w.name)).toEqual(['seed', 'control_after_generate', 'steps', 'cfg', 'text', 'pag']);
    expect(n.inputs.map((i: Slot) => [i.name, i.type, !!i.widget])).toEqual([
      ['model', 'MODEL', false],
      ['seed', 'INT', true],
      ['steps', 'INT', true],
      ['cfg', 'FLOAT', true],
      ['text', 'STRING', true],
      ['pag', 'BOOLEAN', true],
      ['extra', 'LATENT', false],
    ]);
    expect(n.outputs.map((o: Slot) => o.type)).toEqual(['IMAGE']);
  });

  it('connects matching types and refuses others', () => {
    const g = new LGraph();
    const loader = LiteGraph.createNode('TestLoader')!;
    const sampler = LiteGraph.createNode('TestSampler')!;
    const save = LiteGraph.createNode('TestSave')!;
    g.add(loader);
    g.add(sampler);
    g.add(save);
    expect(loader.connect(0, save, 0)).toBeNull(); // MODEL -> IMAGE
    expect(loader.connect(0, sampler, 0)).not.toBeNull();
    expect(sampler.connect(0, save, 0)).not.toBeNull();
  });

  it('serializes widget values in definition order and restores them', () => {
    const g = new LGraph();
    const s = LiteGraph.createNode('TestSampler')!;
    g.add(s);
    s.widgets!.find((w: W) => w.name === 'steps')!.value = 33;
    const data = g.serialize();
    expect(data.nodes[0].widgets_values).toEqual([5, 'randomize', 33, 4.5, 'a cat', true]);
    const g2 = new LGraph();
    g2.configure(JSON.parse(JSON.stringify(data)));
    expect(g2.nodes[0].widgets!.map((w: W) => w.value)).toEqual([5, 'randomize', 33, 4.5, 'a cat', true]);
  });

  it('applies control_after_generate after queueing, except on fixed and linked widgets', () => {
    const g = new LGraph();
    const s = LiteGraph.createNode('TestSampler')!;
    g.add(s);
    const seed = s.widgets!.find((w: W) => w.name === 'seed')!;
    const control = s.widgets!.find((w: W) => w.name === 'control_after_generate')!;
    control.value = 'increment';
    expect(applyControlAfterGenerate(g)).toBe(1);
    expect(seed.value).toBe(6);
    control.value = 'fixed';
    expect(applyControlAfterGenerate(g)).toBe(0);
    expect(seed.value).toBe(6);
    control.value = 'randomize';
    applyControlAfterGenerate(g, () => 0.25);
    expect(seed.value).toBe(25);
  });

  it('builds a connected fallback graph from object_info alone', () => {
    const g = new LGraph();
    expect(buildFallbackGraph(g, defs)).toBe(true);
    expect(g.nodes.map((n: N) => n.type).sort()).toEqual(['TestLoader', 'TestSampler', 'TestSave']);
    const save = g.nodes.find((n: N) => n.type === 'TestSave')!;
    expect(save.inputs[0].link).not.toBeNull();
  });

  it('tells API prompts from UI workflows', () => {
    expect(isApiPrompt({ 1: { class_type: 'X', inputs: {} } })).toBe(true);
    expect(isApiPrompt({ nodes: [] })).toBe(false);
    expect(isUiWorkflow({ nodes: [] })).toBe(true);
  });
});
