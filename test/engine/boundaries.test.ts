// engine/ imports nothing from native/, nodes/ or web/, and no module uses node: built-ins, so
// the editor can bundle the converter and the engine tests need no addon build.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './paths.ts';

const engineDir = path.join(repoRoot, 'engine');
const files = fs.readdirSync(engineDir).filter((f) => f.endsWith('.ts'));
const importsOf = (f: string) => [...fs.readFileSync(path.join(engineDir, f), 'utf8').matchAll(/^\s*(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]);

describe('engine module boundaries', () => {
  it.each(files)('%s imports only engine modules and zod', (f) => {
    for (const spec of importsOf(f)) {
      expect(spec.startsWith('./') || spec === 'zod', `${f} imports '${spec}'`).toBe(true);
    }
  });

  it('finds the modules it checks', () => {
    expect(files).toEqual(expect.arrayContaining(['index.ts', 'convert.ts', 'flatten.ts', 'schemas.ts', 'registry.ts', 'executor.ts']));
    expect(importsOf('index.ts').length).toBeGreaterThan(5);
  });
});
