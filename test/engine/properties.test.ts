// fast-check properties of the executor on random DAGs.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defineNode, Executor, NodeRegistry, type ApiPrompt, type CacheStrategy } from '../../engine/index.ts';

interface Dag {
  /** ids[i] is node i's prompt id (shuffled names, so ids carry no order). */
  ids: string[];
  /** deps[i]: indices j < i that node i reads. */
  deps: number[][];
  /** k[i]: node i's constant (unique, so no two nodes share a signature). */
  k: number[];
}

const dagArb: fc.Arbitrary<Dag> = fc.integer({ min: 1, max: 25 }).chain((n) =>
  fc.record({
    ids: fc.shuffledSubarray(
      Array.from({ length: n * 3 }, (_, i) => `n${i}`),
      { minLength: n, maxLength: n },
    ),
    deps: fc.tuple(...Array.from({ length: n }, (_, i) => (i === 0 ? fc.constant<number[]>([]) : fc.uniqueArray(fc.nat(i - 1), { maxLength: 3 })))),
    k: fc.constant(Array.from({ length: n }, (_, i) => i * 7 + 1)),
  }),
);

const INPUTS = ['a', 'b', 'c'] as const;

function world() {
  const runs: string[] = [];
  const decl = {
    inputs: { required: { k: { type: 'INT' } }, optional: { a: 'V', b: 'V', c: 'V' } },
    outputs: [{ name: 'V', type: 'V' }],
  } as const;
  const value = (k: number, a?: number, b?: number, c?: number) => (k * 31 + (a ?? 0) * 3 + (b ?? 0) * 5 + (c ?? 0) * 7) % 1_000_003;
  const registry = new NodeRegistry().registerAll([
    defineNode({ name: 'Op', ...decl, run: ({ k, a, b, c }, ctx) => (runs.push(ctx.nodeId), [value(k, a as number, b as number, c as number)] as never) }),
    defineNode({
      name: 'OutOp',
      ...decl,
      outputNode: true,
      run: ({ k, a, b, c }, ctx) => (
        runs.push(ctx.nodeId),
        { result: [value(k, a as number, b as number, c as number)] as never, ui: { v: [value(k, a as number, b as number, c as number)] } }
      ),
    }),
  ]);
  return { registry, runs, value };
}

function toPrompt(d: Dag): ApiPrompt {
  const consumed = new Set(d.deps.flat());
  const p: ApiPrompt = {};
  d.ids.forEach((id, i) => {
    const inputs: Record<string, unknown> = { k: d.k[i] };
    d.deps[i].forEach((j, slot) => (inputs[INPUTS[slot]] = [d.ids[j], 0]));
    p[id] = { class_type: consumed.has(i) ? 'Op' : 'OutOp', inputs };
  });
  return p;
}

/** Node indices downstream of (and including) `changed`. */
function downstream(d: Dag, changed: Set<number>): Set<number> {
  const out = new Set(changed);
  for (let i = 0; i < d.ids.length; i++) if (d.deps[i].some((j) => out.has(j))) out.add(i);
  return out;
}

const CACHED: CacheStrategy[] = ['classic', 'lru'];

describe('executor properties on random DAGs', () => {
  it('runs each node exactly once, after all its producers, with the right values', async () => {
    await fc.assert(
      fc.asyncProperty(dagArb, async (d) => {
        const w = world();
        const r = await new Executor(w.registry, { cache: 'none' }).execute(toPrompt(d), { promptId: 'p' });
        expect(r.status).toBe('success');
        expect([...w.runs].sort()).toEqual([...d.ids].sort());
        const pos = new Map(w.runs.map((id, i) => [id, i]));
        const val: number[] = [];
        d.ids.forEach((id, i) => {
          for (const j of d.deps[i]) expect(pos.get(d.ids[j])!).toBeLessThan(pos.get(id)!);
          const [a, b, c] = d.deps[i].map((j) => val[j]);
          val[i] = w.value(d.k[i], a, b, c);
          if (r.outputs[id]) expect(r.outputs[id]).toEqual({ v: [val[i]] });
        });
      }),
      { numRuns: 60 },
    );
  });

  it.each(CACHED)('random constant edits re-run exactly the affected nodes (%s)', async (strategy) => {
    await fc.assert(
      fc.asyncProperty(dagArb, fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), async (d, picks) => {
        const w = world();
        const ex = new Executor(w.registry, { cache: strategy === 'lru' ? { strategy: 'lru', maxEntries: 1000 } : strategy });
        await ex.execute(toPrompt(d), { promptId: 'a' });
        const changed = new Set(picks.map((p) => p % d.ids.length));
        const edited: Dag = { ...d, k: d.k.map((k, i) => (changed.has(i) ? k + 1_000_000 : k)) };
        w.runs.length = 0;
        await ex.execute(toPrompt(edited), { promptId: 'b' });
        const expected = [...downstream(d, changed)].map((i) => d.ids[i]).sort();
        expect([...w.runs].sort()).toEqual(expected);
      }),
      { numRuns: 60 },
    );
  });

  it.each(CACHED)('a seed change re-runs only the seeded node and its downstream; an identical re-run runs nothing (%s)', async (strategy) => {
    await fc.assert(
      fc.asyncProperty(dagArb, fc.nat(), fc.integer({ min: 1, max: 1 << 30 }), async (d, pick, seed) => {
        const w = world();
        const ex = new Executor(w.registry, { cache: strategy });
        const seeded = pick % d.ids.length;
        await ex.execute(toPrompt(d), { promptId: 'a' });
        w.runs.length = 0;
        const again = await ex.execute(toPrompt(d), { promptId: 'b' });
        expect(w.runs).toEqual([]);
        expect(again.cached.length).toBe(d.ids.length);
        const reseeded: Dag = { ...d, k: d.k.map((k, i) => (i === seeded ? -seed : k)) };
        await ex.execute(toPrompt(reseeded), { promptId: 'c' });
        expect([...w.runs].sort()).toEqual([...downstream(d, new Set([seeded]))].map((i) => d.ids[i]).sort());
      }),
      { numRuns: 60 },
    );
  });
});
