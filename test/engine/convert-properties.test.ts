// Round trip: a random API prompt, drawn as a UI workflow with Reroutes and bypassed
// pass-through nodes spliced into its links, converts back to the same prompt.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { convertUiToApi, defineNode, NodeRegistry, type ApiPrompt } from '../../engine/index.ts';

const reg = new NodeRegistry().registerAll([
  defineNode({
    name: 'Op',
    inputs: {
      required: { seed: { type: 'INT', default: 0, min: 0 }, a: 'V', scale: { type: 'FLOAT', default: 1 } },
      optional: { b: 'V', mode: { type: 'COMBO', values: ['x', 'y'] } },
    },
    outputs: [
      { name: 'V', type: 'V' },
      { name: 'W', type: 'V' },
    ],
    run: () => [0, 0] as never,
  }),
  defineNode({ name: 'Src', inputs: { required: { text: { type: 'STRING' } } }, outputs: [{ name: 'V', type: 'V' }], run: () => [0] as never }),
  defineNode({ name: 'Pass', inputs: { required: { v: 'V' } }, outputs: [{ name: 'V', type: 'V' }], run: () => [0] as never }),
]);
const info = reg.objectInfo();

interface Spec {
  n: number;
  edges: { a: number; b: number | null; slotA: number; slotB: number }[];
  consts: { seed: number; scale: number; mode: 'x' | 'y'; text: string }[];
  splice: ('none' | 'reroute' | 'bypass')[];
}

const specArb: fc.Arbitrary<Spec> = fc.integer({ min: 2, max: 15 }).chain((n) =>
  fc.record({
    n: fc.constant(n),
    edges: fc.tuple(
      ...Array.from({ length: n }, (_, i) =>
        fc.record({ a: fc.nat(Math.max(0, i - 1)), b: fc.option(fc.nat(Math.max(0, i - 1)), { nil: null }), slotA: fc.nat(1), slotB: fc.nat(1) }),
      ),
    ),
    consts: fc.array(
      fc.record({
        seed: fc.nat(1e6),
        scale: fc.double({ min: -5, max: 5, noNaN: true }),
        mode: fc.constantFrom('x' as const, 'y' as const),
        text: fc.string(),
      }),
      { minLength: n, maxLength: n },
    ),
    splice: fc.array(fc.constantFrom('none' as const, 'reroute' as const, 'bypass' as const), { minLength: 2 * n, maxLength: 2 * n }),
  }),
);

/** Node 0 is a Src; node i > 0 is an Op reading nodes before it. */
function toPrompt(s: Spec): ApiPrompt {
  const p: ApiPrompt = { '0': { class_type: 'Src', inputs: { text: s.consts[0].text } } };
  for (let i = 1; i < s.n; i++) {
    const e = s.edges[i];
    const c = s.consts[i];
    const slot = (src: number, k: number) => (src === 0 ? 0 : k);
    const inputs: Record<string, unknown> = { seed: c.seed, scale: c.scale, mode: c.mode, a: [String(e.a), slot(e.a, e.slotA)] };
    if (e.b !== null) inputs.b = [String(e.b), slot(e.b, e.slotB)];
    p[String(i)] = { class_type: 'Op', inputs };
  }
  return p;
}

function toUi(p: ApiPrompt, splice: Spec['splice']) {
  const nodes: Record<string, unknown>[] = [];
  const links: unknown[][] = [];
  let linkId = 0;
  let extraId = 1000;
  let k = 0;
  const connect = (from: number, slot: number, to: number, toSlot: number) => {
    links.push([++linkId, from, slot, to, toSlot, 'V']);
    return linkId;
  };
  for (const [id, n] of Object.entries(p)) {
    const inputs: Record<string, unknown>[] = [];
    for (const [name, v] of Object.entries(n.inputs)) {
      if (!Array.isArray(v)) continue;
      let from = Number(v[0]);
      let slot = v[1] as number;
      const how = splice[k++ % splice.length];
      if (how !== 'none') {
        const mid = extraId++;
        const up = connect(from, slot, mid, 0);
        nodes.push(
          how === 'reroute'
            ? { id: mid, type: 'Reroute', mode: 0, inputs: [{ name: '', type: '*', link: up }], outputs: [{ name: '', type: 'V', links: [] }] }
            : { id: mid, type: 'Pass', mode: 4, inputs: [{ name: 'v', type: 'V', link: up }], outputs: [{ name: 'V', type: 'V', links: [] }] },
        );
        from = mid;
        slot = 0;
      }
      inputs.push({ name, type: 'V', link: connect(from, slot, Number(id), inputs.length) });
    }
    const c = n.inputs;
    const widgets = n.class_type === 'Src' ? [c.text] : [c.seed, 'randomize', c.scale, c.mode];
    nodes.push({ id: Number(id), type: n.class_type, mode: 0, inputs, outputs: [], widgets_values: widgets });
  }
  return { version: 0.4, nodes, links };
}

describe('UI -> API round trip', () => {
  it('recovers the prompt through Reroutes and bypassed nodes', () => {
    fc.assert(
      fc.property(specArb, (s) => {
        const p = toPrompt(s);
        const { prompt, warnings } = convertUiToApi(toUi(p, s.splice), info);
        expect(warnings).toEqual([]);
        const stripped = Object.fromEntries(Object.entries(prompt).map(([id, n]) => [id, { class_type: n.class_type, inputs: n.inputs }]));
        expect(stripped).toEqual(p);
      }),
      { numRuns: 150 },
    );
  });
});
