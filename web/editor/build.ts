// `npm run build:editor`: type-checks and bundles the editor into web/editor/dist, but only when
// an input changed since the last build (a hash of the sources is kept in dist/.build-hash), so
// `npm start` / `npm test` stay quick. `--force` rebuilds anyway.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const dist = path.join(here, 'dist');
const stamp = path.join(dist, '.build-hash');

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

// Inputs: the editor's own sources, the engine code it bundles, and the locked dependency tree.
const inputs = [
  ...files(path.join(here, 'src')),
  ...files(path.join(here, 'public')),
  path.join(here, 'index.html'),
  path.join(here, 'vite.config.ts'),
  path.join(here, 'tsconfig.json'),
  ...files(path.join(repo, 'engine')).filter((f) => f.endsWith('.ts')),
  path.join(repo, 'package-lock.json'),
]
  .filter((f) => existsSync(f))
  .sort();

const hash = createHash('sha1');
for (const f of inputs) {
  hash.update(path.relative(repo, f));
  hash.update(readFileSync(f));
}
const digest = hash.digest('hex');

if (!process.argv.includes('--force') && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === digest && existsSync(path.join(dist, 'index.html'))) {
  console.error('[build:editor] up to date');
  process.exit(0);
}

const bin = (name: string) => path.join(repo, 'node_modules', '.bin', name);
const t0 = Date.now();
execFileSync(bin('tsc'), ['-p', path.join(here, 'tsconfig.json')], { stdio: 'inherit', cwd: repo });
execFileSync(bin('vite'), ['build', '--config', path.join(here, 'vite.config.ts')], { stdio: 'inherit', cwd: here });
writeFileSync(stamp, digest + '\n');
console.error(`[build:editor] built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
