// web/server has no import cycles: routes are plugins that import shared modules (http.ts,
// errors.ts, schema.ts), never app.ts, which registers them; state.ts imports no route. Every
// static import counts, `import type` included, so a cycle cannot hide behind a type.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const serverDir = path.join(root, 'web/server');

function sources(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) sources(full, out);
    else if (/\.(ts|mts|mjs|js)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(full);
  }
  return out;
}

/** The relative static imports and re-exports of a source text (comments stripped). */
function staticImports(src: string): string[] {
  const code = src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
  const out: string[] = [];
  for (const m of code.matchAll(/\b(?:import|export)\s+(?:type\s+)?[^'"`;]*?\bfrom\s*['"](\.[^'"]+)['"]/g)) out.push(m[1]!);
  for (const m of code.matchAll(/\bimport\s+['"](\.[^'"]+)['"]/g)) out.push(m[1]!);
  return out;
}

/** Every cycle's modules (one list per strongly connected component of more than one module, or a self-import). */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
}

describe('web/server imports', () => {
  test('the cycle finder finds a cycle and passes a tree', () => {
    expect(
      cycles(
        new Map([
          ['a', ['b']],
          ['b', ['c']],
          ['c', ['a']],
          ['d', ['a']],
        ]),
      ),
    ).toEqual([['a', 'b', 'c']]);
    expect(
      cycles(
        new Map([
          ['a', ['b', 'c']],
          ['b', ['c']],
          ['c', []],
        ]),
      ),
    ).toEqual([]);
    expect(staticImports("import type { X } from './x.ts';\n// import { y } from './y.ts'\nexport { z } from '../z.ts';")).toEqual(['./x.ts', '../z.ts']);
  });

  test('no import cycles among web/server modules', () => {
    const files = sources(serverDir);
    const graph = new Map<string, string[]>();
    for (const f of files) {
      const rel = (p: string) => path.relative(root, p).split(path.sep).join('/');
      const targets = staticImports(fs.readFileSync(f, 'utf8'))
        .map((spec) => path.resolve(path.dirname(f), spec))
        .filter((t) => t.startsWith(serverDir + path.sep))
        .map(rel);
      graph.set(rel(f), targets);
    }
    expect(graph.size).toBeGreaterThan(10);
    expect(cycles(graph)).toEqual([]);
  });
});
