// Hostile inputs: huge and deep graphs must not overflow the stack, and limits give clear errors.
import { describe, expect, it } from 'vitest';
import { convertUiToApi, Executor, validatePrompt, type ApiPrompt } from '../../engine/index.ts';
import { stubWorld } from './helpers.ts';

function longChain(n: number): ApiPrompt {
  const p: ApiPrompt = { '0': { class_type: 'Const', inputs: { value: 1 } } };
  for (let i = 1; i < n; i++) p[String(i)] = { class_type: 'Add', inputs: { a: [String(i - 1), 0] } };
  p.out = { class_type: 'Out', inputs: { x: [String(n - 1), 0] } };
  return p;
}

describe('hostile prompts', () => {
  it('validates and runs a 30 000-node chain without recursion', async () => {
    const w = stubWorld();
    const ex = new Executor(w.registry, { validation: { maxNodes: 50_000 } });
    const r = await ex.execute(longChain(30_000), { promptId: 'p' });
    expect(r.status).toBe('success');
    expect(r.outputs.out).toEqual({ values: [1] });
    expect(w.runs.length).toBe(30_001);
  });

  it('refuses prompts past the node limit with a clear invalid_prompt', () => {
    const r = validatePrompt(longChain(10_001), stubWorld().registry);
    expect(!r.ok && r.error.message).toBe('Cannot execute because the prompt has 10002 nodes, more than the limit of 10000.');
  });

  it('reports a cycle at the end of a 20 000-node chain', () => {
    const p = longChain(20_000);
    p['0'] = { class_type: 'Add', inputs: { a: ['19999', 0] } };
    const r = validatePrompt(p, stubWorld().registry, { maxNodes: 50_000 });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(Object.keys(r.node_errors).length).toBe(20_000);
    expect(r.node_errors['0'].errors[0].type).toBe('dependency_cycle');
  });

  it('converts a UI workflow with a 20 000-long chain of Reroutes', () => {
    const info = stubWorld().registry.objectInfo();
    const nodes: Record<string, unknown>[] = [
      { id: 1, type: 'Const', mode: 0, inputs: [], outputs: [{ name: 'INT', type: 'INT', links: [1] }], widgets_values: [3] },
    ];
    const links: unknown[][] = [];
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      nodes.push({
        id: 100 + i,
        type: 'Reroute',
        mode: 0,
        inputs: [{ name: '', type: '*', link: i + 1 }],
        outputs: [{ name: '', type: 'INT', links: [i + 2] }],
      });
      links.push([i + 1, i === 0 ? 1 : 99 + i, 0, 100 + i, 0, 'INT']);
    }
    nodes.push({ id: 2, type: 'Out', mode: 0, inputs: [{ name: 'x', type: 'INT', link: n + 1 }], outputs: [] });
    links.push([n + 1, 99 + n, 0, 2, 0, 'INT']);
    const { prompt } = convertUiToApi({ version: 0.4, nodes, links }, info);
    expect(prompt['2'].inputs.x).toEqual(['1', 0]);
    expect(Object.keys(prompt).sort()).toEqual(['1', '2']);
  });

  it('a loop of Reroutes is an error, not a hang', () => {
    const info = stubWorld().registry.objectInfo();
    const nodes = [
      { id: 5, type: 'Reroute', mode: 0, inputs: [{ name: '', type: '*', link: 2 }], outputs: [{ name: '', type: 'INT', links: [1, 3] }] },
      { id: 6, type: 'Reroute', mode: 0, inputs: [{ name: '', type: '*', link: 1 }], outputs: [{ name: '', type: 'INT', links: [2] }] },
      { id: 2, type: 'Out', mode: 0, inputs: [{ name: 'x', type: 'INT', link: 3 }], outputs: [] },
    ];
    const links = [
      [1, 5, 0, 6, 0, 'INT'],
      [2, 6, 0, 5, 0, 'INT'],
      [3, 5, 0, 2, 0, 'INT'],
    ];
    expect(() => convertUiToApi({ version: 0.4, nodes, links }, info)).toThrow(/Reroute\/bypass hops/);
  });
});
