// The architecture's import rules, for every module of the product (static imports, re-exports,
// `import type`, `typeof import(...)`, dynamic `import()` and `require()`):
//   engine/      only engine/ and zod, no node: built-ins (the editor bundles it; its tests need no addon)
//   native/      only native/ (model code and servers sit above it)
//   nodes/       not host/, web/, cli/ (nodes get what they need from their host via ctx.services)
//   host/        engine/, nodes/, native/; not web/, cli/ (the server and the CLI sit on top of it)
//   cluster/     engine/, host/ (its types), nodes/ (file helpers); not web/, cli/ (the Redis
//                queue, history and events that a front end and a worker share)
//   web/editor/  not native/, nodes/, web/server/, cli/ (browser code: engine's converter at most)
//   web/server/  not cli/, not web/editor's sources (it serves the built bundle as files), and no
//                worker threads or child processes: execution is host/'s
//   everything   not test/, bench/, scripts/ (those sit on top and may import anything)
// A dynamic import whose target is not a string literal cannot be checked, so engine/, native/ and
// web/editor/ may not have one.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');

function sources(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    if (['node_modules', 'dist', 'build', 'public'].includes(e.name) || e.name.startsWith('.')) continue;
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) sources(rel, out);
    else if (/\.(ts|mts|cts|mjs|js)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

interface Ref {
  spec: string;
  line: number;
  literal: boolean;
}

/** Every module reference in a source text, with its line. */
function references(src: string): Ref[] {
  // Comments would otherwise count (`// import('x')` in a doc line); strings are left alone.
  const code = src.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' ')).replace(/(^|[^:'"`\\])\/\/.*$/gm, (_m, p: string) => p);
  const out: Ref[] = [];
  const lineOf = (i: number) => code.slice(0, i).split('\n').length;
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g, // import x from / export … from
    /\bimport\s+['"]([^'"]+)['"]/g, // side-effect import
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*[,)]/g, // import('x') and typeof import('x')
    /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) out.push({ spec: m[1]!, line: lineOf(m.index!), literal: true });
  for (const m of code.matchAll(/\bimport\s*\(\s*(?!['"])/g)) out.push({ spec: '<computed>', line: lineOf(m.index!), literal: false });
  return out;
}

/** The top-level area a repository path belongs to: 'engine', 'nodes', 'web/editor', 'web/server', … */
function area(rel: string): string {
  const [a, b] = rel.split('/');
  return a === 'web' ? `web/${b}` : a!;
}

type Rule = (target: string, spec: string) => string | undefined;
const EXECUTION_BUILTINS = new Set(['node:worker_threads', 'worker_threads', 'node:child_process', 'child_process']);
const RULES: Record<string, { rule: Rule; noComputed: boolean }> = {
  engine: {
    noComputed: true,
    rule: (t, spec) => (t === 'engine' || spec === 'zod' ? undefined : 'engine/ imports only engine/ and zod'),
  },
  native: {
    noComputed: true,
    rule: (t) => (['native', 'npm', 'node'].includes(t) ? undefined : 'native/ imports nothing of the project above it'),
  },
  nodes: {
    noComputed: false,
    rule: (t) => (['host', 'cluster', 'web/server', 'web/editor', 'cli'].includes(t) ? 'nodes/ must not import host/, cluster/, web/ or cli/' : undefined),
  },
  host: {
    noComputed: false,
    rule: (t) => (['cluster', 'web/server', 'web/editor', 'cli'].includes(t) ? 'host/ must not import cluster/, web/ or cli/' : undefined),
  },
  cluster: { noComputed: false, rule: (t) => (['web/server', 'web/editor', 'cli'].includes(t) ? 'cluster/ must not import web/ or cli/' : undefined) },
  'web/editor': {
    noComputed: true,
    rule: (t) =>
      ['native', 'nodes', 'web/server', 'cli'].includes(t) ? 'the editor (browser code) must not import native/, nodes/, web/server/ or cli/' : undefined,
  },
  'web/server': {
    noComputed: false,
    rule: (t, spec) =>
      t === 'cli' || t === 'web/editor'
        ? 'web/server/ must not import cli/ or the editor sources'
        : EXECUTION_BUILTINS.has(spec)
          ? 'web/server/ hosts no execution (threads, processes): that is host/'
          : undefined,
  },
};
const ABOVE_ALL = new Set(['test', 'bench', 'scripts']);

function targetArea(file: string, spec: string): string {
  if (spec.startsWith('node:')) return 'node';
  if (!spec.startsWith('.')) return 'npm';
  const rel = path
    .relative(root, path.resolve(root, path.dirname(file), spec))
    .split(path.sep)
    .join('/');
  return rel.startsWith('..') ? 'outside' : area(rel);
}

function violations(files: string[], read: (f: string) => string = (f) => fs.readFileSync(path.join(root, f), 'utf8')): string[] {
  const out: string[] = [];
  for (const f of files) {
    const from = area(f);
    for (const r of references(read(f))) {
      const where = `${f}:${r.line}`;
      if (!r.literal) {
        if (RULES[from]?.noComputed) out.push(`${where}: a computed import() cannot be checked (${from}/ may not have one)`);
        continue;
      }
      const to = targetArea(f, r.spec);
      if (ABOVE_ALL.has(to) && !ABOVE_ALL.has(from)) out.push(`${where}: '${r.spec}' — product code must not import ${to}/`);
      if (to === 'outside') out.push(`${where}: '${r.spec}' leaves the repository`);
      if (from === 'engine' && to === 'node') out.push(`${where}: '${r.spec}' — engine/ uses no node: built-ins`);
      const why = RULES[from]?.rule(to, r.spec);
      // engine/'s node: built-ins are reported once, above.
      if (why && !(from === 'engine' && to === 'node')) out.push(`${where}: '${r.spec}' — ${why}`);
    }
  }
  return out;
}

const PRODUCT = ['engine', 'native', 'nodes', 'host', 'cluster', 'web/editor', 'web/server', 'cli', 'workflows'].flatMap((d) => sources(d));

describe('architecture boundaries', () => {
  it('finds the modules it checks', () => {
    for (const f of [
      'engine/executor.ts',
      'native/index.ts',
      'nodes/index.ts',
      'host/runner.ts',
      'host/child_boot.mjs',
      'cluster/worker.ts',
      'web/server/app.ts',
      'cli/main.ts',
    ])
      expect(PRODUCT).toContain(f);
    expect(PRODUCT.some((f) => f.startsWith('web/editor/src/'))).toBe(true);
    expect(PRODUCT.length).toBeGreaterThan(100);
  });

  it('every module respects the import rules', () => {
    expect(violations(PRODUCT)).toEqual([]);
  });

  it('catches each kind of reference and each forbidden direction (on synthetic files)', () => {
    const fake: Record<string, string> = {
      'engine/a.ts': "import { x } from '../nodes/index.ts';\nexport * from '../web/server/app.ts';\nimport fs from 'node:fs';",
      'engine/b.ts': "const m = await import('../native/index.ts');\ntype T = typeof import('../nodes/x.ts');\nconst n = await import(name);",
      'native/c.ts': "import type { R } from '../engine/index.ts';\nconst r = require('../nodes/x.ts');",
      'nodes/d.ts': "import { startServer } from '../web/server/index.ts';\n// import('../cli/main.ts') in a comment is fine\nimport '../cli/main.ts';",
      'web/editor/src/e.ts': "import { getBackend } from '../../../native/index.ts';\nimport { convertUiToApi } from '../../../engine/convert.ts';",
      'web/server/f.ts': "import { main } from '../../cli/main.ts';\nimport { helper } from '../../test/server/helpers.ts';",
      'cli/g.ts': "import { startServer } from '../web/server/index.ts';\nimport { x } from '../nodes/index.ts';",
      'nodes/h.ts': "import { processHost } from '../host/process.ts';",
      'host/i.ts':
        "import { startServer } from '../web/server/index.ts';\nimport { Executor } from '../engine/index.ts';\nimport { x } from '../nodes/index.ts';\nimport { getBackend } from '../native/index.ts';",
      'web/server/j.ts':
        "import { fork } from 'node:child_process';\nimport { Worker } from 'node:worker_threads';\nimport { processHost } from '../../host/process.ts';",
    };
    const v = violations(Object.keys(fake), (f) => fake[f]!);
    const has = (re: RegExp) =>
      expect(
        v.some((s) => re.test(s)),
        `${re} in\n${v.join('\n')}`,
      ).toBe(true);
    has(/^engine\/a\.ts:1: '\.\.\/nodes\/index\.ts'/);
    has(/^engine\/a\.ts:2: '\.\.\/web\/server\/app\.ts'/);
    has(/^engine\/a\.ts:3: 'node:fs'/);
    has(/^engine\/b\.ts:1: '\.\.\/native\/index\.ts'/);
    has(/^engine\/b\.ts:2: '\.\.\/nodes\/x\.ts'/);
    has(/^engine\/b\.ts:3: a computed import\(\)/);
    has(/^native\/c\.ts:1: '\.\.\/engine\/index\.ts'/);
    has(/^native\/c\.ts:2: '\.\.\/nodes\/x\.ts'/);
    has(/^nodes\/d\.ts:1: '\.\.\/web\/server\/index\.ts'/);
    has(/^nodes\/d\.ts:3: '\.\.\/cli\/main\.ts'/);
    has(/^web\/editor\/src\/e\.ts:1: '\.\.\/\.\.\/\.\.\/native\/index\.ts'/);
    has(/^web\/server\/f\.ts:1: '\.\.\/\.\.\/cli\/main\.ts'/);
    has(/^web\/server\/f\.ts:2: .*must not import test\//);
    has(/^nodes\/h\.ts:1: '\.\.\/host\/process\.ts'/);
    has(/^host\/i\.ts:1: '\.\.\/web\/server\/index\.ts'/);
    has(/^web\/server\/j\.ts:1: 'node:child_process'/);
    has(/^web\/server\/j\.ts:2: 'node:worker_threads'/);
    // allowed: the editor's converter import, the comment, and the CLI's imports
    expect(v.filter((s) => s.startsWith('web/editor/src/e.ts:2') || s.startsWith('nodes/d.ts:2') || s.startsWith('cli/'))).toEqual([]);
    // allowed: the host on the engine, the nodes and the addon; the server on the host
    expect(v.filter((s) => /^host\/i\.ts:[234]:/.test(s) || s.startsWith('web/server/j.ts:3'))).toEqual([]);
  });
});
