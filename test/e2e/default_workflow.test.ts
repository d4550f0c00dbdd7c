// End to end through the engine's executor: the shipped default workflow on the shipped tiny
// models produces a real image; re-queuing with only the seed changed re-runs the sampler, the
// decoder and the save node only (text encoder and loaders come from the cache, and the model
// cache loads nothing again).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Executor, type ApiPrompt, type EngineEvent } from '../../engine/index.ts';
import { decodePng, readPngText } from '../../nodes/image/png.ts';
import { REPO, productRegistry, readJson, repoModelsDir, testServices } from '../nodes/helpers.ts';

const out = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-e2e-'));

function pixelsStats(file: string): { width: number; height: number; std: number; mean: number } {
  const png = decodePng(fs.readFileSync(file));
  const d = png.data;
  let s = 0;
  let s2 = 0;
  for (const v of d) {
    s += v;
    s2 += v * v;
  }
  const mean = s / d.length;
  return { width: png.width, height: png.height, mean, std: Math.sqrt(s2 / d.length - mean * mean) };
}

describe('default workflow, end to end', () => {
  // Generates the tiny models when missing.
  beforeAll(() => void repoModelsDir());
  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  const api = readJson<ApiPrompt>(path.join(REPO, 'workflows/sana_default.api.json'));
  const services = testServices({ output: out, temp: out, input: out });
  const executor = new Executor(productRegistry(services));
  const modelCache = () => services.modelCache;
  const events: EngineEvent[] = [];
  executor.onEvent((e) => events.push(e));

  let first: string;

  // The 2-core machine is shared by parallel jobs: allow for a loaded CPU.
  const SLOW = 600_000;

  it('produces an image with the prompt embedded, with per-step progress and previews', { timeout: SLOW }, async () => {
    const t0 = performance.now();
    const r = await executor.execute(api, { promptId: 'p1' });
    const ms = performance.now() - t0;
    if (r.status !== 'success') throw new Error(JSON.stringify(r.error, null, 2));
    const images = r.outputs['8'].images as Array<{ filename: string; subfolder: string; type: string }>;
    expect(images).toHaveLength(1);
    first = path.join(out, images[0].subfolder, images[0].filename);
    const st = pixelsStats(first);
    expect([st.width, st.height]).toEqual([api['4'].inputs.width, api['4'].inputs.height]);
    expect(st.std).toBeGreaterThan(5); // a texture, not a flat image
    expect(JSON.parse(readPngText(fs.readFileSync(first)).prompt)['5'].class_type).toBe('FlowDPMSampler');

    const steps = api['5'].inputs.steps as number;
    const progress = events.filter((e) => e.type === 'progress' && e.data.node === '5');
    expect(progress.map((e) => (e.data as { value: number }).value)).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
    const previews = events.filter((e) => e.type === 'binary_preview' && e.data.node === '5');
    expect(previews).toHaveLength(steps);
    console.log(`[e2e] default workflow, cold: ${(ms / 1000).toFixed(2)} s`);
  });

  it('re-runs only sampler, decoder and save when only the seed changes', { timeout: SLOW }, async () => {
    const loads = modelCache().stats().loads;
    const changed = structuredClone(api);
    changed['5'].inputs.seed = 43;
    const t0 = performance.now();
    const r = await executor.execute(changed, { promptId: 'p2' });
    const ms = performance.now() - t0;
    if (r.status !== 'success') throw new Error(JSON.stringify(r.error, null, 2));
    expect([...r.ran].sort()).toEqual(['5', '7', '8']);
    expect([...r.cached].sort()).toEqual(['1', '2', '3', '4', '6']);
    expect(modelCache().stats().loads).toBe(loads);
    const images = r.outputs['8'].images as Array<{ filename: string; subfolder: string }>;
    const second = path.join(out, images[0].subfolder, images[0].filename);
    expect(fs.readFileSync(second).equals(fs.readFileSync(first))).toBe(false);
    console.log(`[e2e] seed change, warm: ${(ms / 1000).toFixed(2)} s`);
  });

  it('is deterministic: the same seed gives the same pixels', { timeout: SLOW }, async () => {
    const again = structuredClone(api);
    // A different prefix makes the save node run again; the pixels must match the first run.
    again['8'].inputs.filename_prefix = 'again';
    const r = await executor.execute(again, { promptId: 'p3' });
    if (r.status !== 'success') throw new Error(JSON.stringify(r.error, null, 2));
    const images = r.outputs['8'].images as Array<{ filename: string; subfolder: string }>;
    const a = decodePng(fs.readFileSync(first)).data;
    const b = decodePng(fs.readFileSync(path.join(out, images[0].subfolder, images[0].filename))).data;
    expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
  });
});
