// The CPU thread setting (SANA_THREADS / --threads / cpuThreads(n)): OpenMP keeps a thread count
// per calling thread, so the setting must reach ops called from any Node thread, and the env
// variable must reach a fresh process (the server's execution child inherits it).
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { cpuThreads, devices, getBackend } from '../../native/index.ts';
import { addonPath } from '../../native/binding.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const cores = os.availableParallelism();

function childThreads(env: Record<string, string>): { threads: number; info: number } {
  const out = execFileSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '-e',
      `
    const n = await import('./native/index.ts');
    const b = n.getBackend('cpu');
    const x = b.fromArray([1, 2, 3, 4], [2, 2]);
    b.linear(x, x).dispose();
    console.log(JSON.stringify({ threads: n.cpuThreads(), info: n.devices().find((d) => d.name === 'cpu').info.threads }));
  `,
    ],
    { cwd: REPO, env: { ...process.env, ...env }, encoding: 'utf8' },
  );
  return JSON.parse(out.trim().split('\n').pop()!) as { threads: number; info: number };
}

describe('CPU thread setting', () => {
  afterAll(() => cpuThreads(cores));

  it('SANA_THREADS sets the count of a new process; without it, all cores', () => {
    expect(childThreads({ SANA_THREADS: '1' })).toEqual({ threads: 1, info: 1 });
    const { SANA_THREADS: _, ...rest } = process.env;
    void _;
    const def = execFileSync(process.execPath, ['--import', 'tsx', '-e', `const n = await import('./native/index.ts'); console.log(n.cpuThreads());`], {
      cwd: REPO,
      env: rest as Record<string, string>,
      encoding: 'utf8',
    });
    expect(Number(def.trim())).toBe(cores);
  });

  it('a setting made on the main thread reaches ops called from a worker thread', async () => {
    cpuThreads(1);
    expect(devices().find((d) => d.name === 'cpu')!.info.threads).toBe(1);
    // The worker loads the same addon (one process, one setting) and asks for its own OpenMP count.
    const w = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
      const addon = require(workerData);
      parentPort.postMessage(addon.threads());`,
      { eval: true, workerData: addonPath },
    );
    const n = await new Promise<number>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    expect(n).toBe(1);
    // Ops still compute the same with one thread.
    const b = getBackend('cpu');
    const x = b.fromArray(
      Float32Array.from({ length: 64 * 32 }, (_, i) => (i % 7) - 3),
      [64, 32],
    );
    const one = b.linear(x, x).toFloat32();
    cpuThreads(cores);
    expect(b.linear(x, x).toFloat32()).toEqual(one);
    x.dispose();
  });
});
