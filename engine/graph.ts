// Graph algorithms over a prompt's links, all iterative so that hostile prompts (tens of
// thousands of nodes, 100k-long chains) cannot overflow the call stack.

/** One resolved link: `inputName` of the consumer reads output `slot` of node `source`. */
export interface LinkEdge {
  input: string;
  source: string;
  slot: number;
}

/**
 * Nodes reachable upstream from `roots` (roots included), in discovery order. `depsOf` lists a
 * node's producers; ids it returns that `exists` rejects are skipped (reported elsewhere).
 */
export function collectUpstream(roots: Iterable<string>, depsOf: (id: string) => Iterable<string>, exists: (id: string) => boolean): string[] {
  const seen = new Set<string>();
  const order: string[] = [];
  const stack: string[] = [];
  for (const r of roots) {
    if (!seen.has(r) && exists(r)) {
      seen.add(r);
      stack.push(r);
    }
  }
  while (stack.length) {
    const id = stack.pop()!;
    order.push(id);
    for (const d of depsOf(id)) {
      if (!seen.has(d) && exists(d)) {
        seen.add(d);
        stack.push(d);
      }
    }
  }
  return order;
}

export interface TopoResult {
  /** Producers before consumers. */
  order: string[];
  /** Nodes that lie on a dependency cycle (or between two cycles); empty for a DAG. */
  cyclic: string[];
  /** Nodes that could not be ordered because they depend on a cycle (cyclic included). */
  blocked: string[];
}

/**
 * Kahn's algorithm over `ids` (edges to ids outside the set are ignored). Among ready nodes,
 * `preferred` ones go first (ComfyUI's "UX-friendly pick": output nodes run as soon as they can,
 * so previews appear early); otherwise the given order is kept.
 */
export function topoSort(ids: readonly string[], depsOf: (id: string) => Iterable<string>, preferred?: (id: string) => boolean): TopoResult {
  const inSet = new Set(ids);
  const pending = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const id of ids) {
    let n = 0;
    const uniq = new Set<string>();
    for (const d of depsOf(id)) {
      if (!inSet.has(d) || uniq.has(d)) continue;
      uniq.add(d);
      n++;
      let list = dependents.get(d);
      if (!list) dependents.set(d, (list = []));
      list.push(id);
    }
    pending.set(id, n);
  }
  const first: string[] = [];
  const rest: string[] = [];
  let fi = 0;
  let ri = 0;
  const push = (id: string) => (preferred?.(id) ? first : rest).push(id);
  for (const id of ids) if (pending.get(id) === 0) push(id);
  const order: string[] = [];
  while (fi < first.length || ri < rest.length) {
    const id = fi < first.length ? first[fi++] : rest[ri++];
    order.push(id);
    for (const c of dependents.get(id) ?? []) {
      const left = pending.get(c)! - 1;
      pending.set(c, left);
      if (left === 0) push(c);
    }
  }
  if (order.length === ids.length) return { order, cyclic: [], blocked: [] };

  // Blocked nodes are on a cycle or downstream of one. Peel, from the blocked set, every node
  // with no blocked consumer, repeatedly: what remains lies on (or between) cycles.
  const done = new Set(order);
  const blocked = ids.filter((id) => !done.has(id));
  const blockedSet = new Set(blocked);
  const consumers = new Map<string, number>();
  for (const id of blocked) consumers.set(id, 0);
  for (const id of blocked) {
    for (const d of new Set(depsOf(id))) if (blockedSet.has(d)) consumers.set(d, consumers.get(d)! + 1);
  }
  const queue = blocked.filter((id) => consumers.get(id) === 0);
  const peeled = new Set<string>();
  while (queue.length) {
    const id = queue.pop()!;
    peeled.add(id);
    for (const d of new Set(depsOf(id))) {
      if (!blockedSet.has(d) || peeled.has(d)) continue;
      const left = consumers.get(d)! - 1;
      consumers.set(d, left);
      if (left === 0) queue.push(d);
    }
  }
  return { order, cyclic: blocked.filter((id) => !peeled.has(id)), blocked };
}

/** Link-shaped input values `[id, slot]`; the id may come as a number from hand-written JSON. */
export function parseLink(v: unknown): { source: string; slot: number } | undefined {
  if (!Array.isArray(v) || v.length !== 2) return undefined;
  const [id, slot] = v;
  if ((typeof id !== 'string' && typeof id !== 'number') || typeof slot !== 'number' || !Number.isInteger(slot) || slot < 0) return undefined;
  return { source: String(id), slot };
}
