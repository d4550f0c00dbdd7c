// The sana-graph CLI as a user runs it (a child process): run (API, UI, PNG, request body),
// --set, exit codes, progress on stderr, convert, and serve with a clean shutdown.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { ProgressView } from '../../cli/progress.ts';
import { decodePng, readPngText } from '../../nodes/image/png.ts';

const BIN = fileURLToPath(new URL('../../bin/sana-graph.js', import.meta.url));
const TEST_NODES = fileURLToPath(new URL('../server/fixtures/test_nodes.ts', import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: tmp, env: { ...process.env, SANA_GRAPH_EXTRA_NODES: TEST_NODES }, timeout: 240_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

const apiPrompt = {
  '1': { class_type: 'TestImage', inputs: { width: 8, height: 6, seed: 3 }, _meta: { title: 'Source' } },
  '5': { class_type: 'TestSlow', inputs: { images: ['1', 0], ms: 1200, steps: 4, preview: false } },
  '9': { class_type: 'SaveImage', inputs: { images: ['5', 0], filename_prefix: 'cli/api' } },
};

const uiWorkflow = {
  last_node_id: 9,
  last_link_id: 1,
  nodes: [
    {
      id: 1,
      type: 'TestImage',
      pos: [0, 0],
      size: [200, 100],
      flags: {},
      order: 0,
      mode: 0,
      inputs: [],
      outputs: [{ name: 'IMAGE', type: 'IMAGE', links: [1] }],
      properties: {},
      widgets_values: [4, 2, 200, 'fixed'],
    },
    {
      id: 9,
      type: 'SaveImage',
      pos: [300, 0],
      size: [200, 100],
      flags: {},
      order: 1,
      mode: 0,
      inputs: [{ name: 'images', type: 'IMAGE', link: 1 }],
      outputs: [],
      properties: {},
      widgets_values: ['cli/ui'],
    },
  ],
  links: [[1, 1, 0, 9, 0, 'IMAGE']],
  groups: [],
  config: {},
  extra: {},
  version: 0.4,
};

// Each CLI call is a fresh Node process (tsx, engine, worker thread): seconds on the shared
// 2-core machine, so these tests get generous time limits.
const SLOW = { timeout: 300_000 };

describe('sana-graph run', SLOW, () => {
  test('API prompt with --set: saves the PNG, prints its path, shows progress lines on a non-TTY stderr', async () => {
    fs.writeFileSync(path.join(tmp, 'api.json'), JSON.stringify(apiPrompt));
    const r = await cli(['run', 'api.json', '--output-dir', 'out', '--set', 'Source.seed=42', '--set', '1.width=5']);
    expect(r.code, r.stderr).toBe(0);
    const file = r.stdout.trim();
    expect(file).toBe(path.join(tmp, 'out', 'cli', 'api_00001_.png'));
    const png = fs.readFileSync(file);
    expect(JSON.parse(readPngText(png).prompt)['1'].inputs).toEqual({ width: 5, height: 6, seed: 42 });
    expect(decodePng(png).width).toBe(5);
    // Plain progress lines, no carriage returns, naming the running node.
    expect(r.stderr).not.toContain('\r');
    expect(r.stderr).toMatch(/TestSlow \(#5\)/);
    expect(r.stderr).toMatch(/\[#+-*\]\s+\d+%/);

    // Running the PNG re-runs its embedded prompt.
    const again = await cli(['run', file, '--output-dir', 'out2', '--json', '--quiet']);
    expect(again.code, again.stderr).toBe(0);
    const summary = JSON.parse(again.stdout) as { status: string; images: string[] };
    expect(summary.status).toBe('success');
    expect(decodePng(fs.readFileSync(summary.images[0])).data).toEqual(decodePng(png).data);
    expect(again.stderr).toBe('');
  });

  test('UI workflow is converted; its workflow is embedded in the PNG; a request body works too', async () => {
    fs.writeFileSync(path.join(tmp, 'ui.json'), JSON.stringify(uiWorkflow));
    const r = await cli(['run', 'ui.json', '--output-dir', 'out']);
    expect(r.code, r.stderr).toBe(0);
    const png = fs.readFileSync(r.stdout.trim());
    const text = readPngText(png);
    expect(JSON.parse(text.prompt)['1'].inputs).toEqual({ width: 4, height: 2, seed: 200 });
    expect(JSON.parse(text.workflow)).toEqual(uiWorkflow);
    // Run from the PNG (prompt chunk wins).
    expect((await cli(['run', r.stdout.trim(), '--output-dir', 'out3', '--quiet'])).code).toBe(0);

    fs.writeFileSync(path.join(tmp, 'body.json'), JSON.stringify({ prompt: apiPrompt, client_id: 'x' }));
    expect((await cli(['run', 'body.json', '--output-dir', 'out4', '--quiet', '--set', '5.ms=0'])).code).toBe(0);
  });

  test('exit codes: 2 for an invalid workflow (with node errors), 1 for a node failure, 2 for usage errors', async () => {
    const bad = structuredClone(apiPrompt);
    bad['1'].inputs.width = 99999;
    fs.writeFileSync(path.join(tmp, 'bad.json'), JSON.stringify(bad));
    const r1 = await cli(['run', 'bad.json', '--output-dir', 'out']);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toMatch(/node 1 \(TestImage\): Value 99999 bigger than max of 512: width/);

    const failing = { ...structuredClone(apiPrompt), '5': { class_type: 'TestFail', inputs: { images: ['1', 0], message: 'nope' } } };
    fs.writeFileSync(path.join(tmp, 'fail.json'), JSON.stringify(failing));
    const r2 = await cli(['run', 'fail.json', '--output-dir', 'out', '--quiet']);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/error in node 5 \(TestFail\): Error: TestFail: nope/);

    fs.writeFileSync(path.join(tmp, 'api.json'), JSON.stringify(apiPrompt));
    expect((await cli(['run', 'api.json', '--set', 'nosuch.x=1'])).stderr).toMatch(/no node with id, title or class "nosuch"/);
    expect((await cli(['run'])).code).toBe(2);
    expect((await cli(['run', 'api.json', '--bogus'])).stderr).toMatch(/unknown option --bogus/);
    expect((await cli(['run', 'missing.json'])).code).toBe(2);
    fs.writeFileSync(path.join(tmp, 'notjson.json'), '{');
    expect((await cli(['run', 'notjson.json'])).stderr).toMatch(/not valid JSON/);
    expect((await cli(['frobnicate'])).code).toBe(2);
  });

  test('a native crash in a node (SIGSEGV in the execution process) is a clear error and exit code 1', async () => {
    const crashing = { ...structuredClone(apiPrompt), '5': { class_type: 'TestCrash', inputs: { images: ['1', 0], how: 'SIGSEGV' } } };
    fs.writeFileSync(path.join(tmp, 'crash.json'), JSON.stringify(crashing));
    const r = await cli(['run', 'crash.json', '--output-dir', 'out', '--json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error in node 5 \(TestCrash\): WorkerCrashed: the execution process was killed by signal SIGSEGV/);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'error', error: { exception_type: 'WorkerCrashed', node_id: '5' } });
  });
});

describe('run --profile', SLOW, () => {
  test('prints one op table per node that ran native ops, with the linears of the text encoder and the sampler', async () => {
    const repo = fileURLToPath(new URL('../..', import.meta.url));
    const models = path.join(repo, 'models');
    if (!fs.existsSync(path.join(models, 'sana', 'Sana_Tiny_diffusers'))) throw new Error('tiny models missing: run npm run models:tiny');
    const r = await cli([
      'run',
      path.join(repo, 'workflows', 'sana_default.api.json'),
      '--profile',
      '--quiet',
      '--output-dir',
      'prof',
      '--models-dir',
      models,
      '--set',
      'FlowDPMSampler.steps=2',
      '--set',
      'EmptySanaLatent.width=64',
      '--set',
      'EmptySanaLatent.height=64',
    ]);
    expect(r.code, r.stderr).toBe(0);
    for (const node of ['TextEncoderGemma', 'FlowDPMSampler', 'DCAEDecode'])
      expect(r.stderr).toMatch(new RegExp(`profile: node \\d+ \\(${node}\\) — wall [\\d.]+ ms`));
    const sampler = r.stderr.slice(r.stderr.indexOf('(FlowDPMSampler)'));
    expect(sampler).toMatch(/\n {2}linear\.f32 +\d+ +[\d.]+ +[\d.]+ +[\d.]+ /);
    expect(sampler).toMatch(/linearAttention/);
    expect(r.stdout.trim()).toMatch(/prof[/\\]sana_\d+_\.png$/);
  });
});

describe('run: interrupt and progress view', SLOW, () => {
  test('Ctrl+C (SIGINT) interrupts the running node and exits with 130', async () => {
    const slow = { ...structuredClone(apiPrompt), '5': { class_type: 'TestSlow', inputs: { images: ['1', 0], ms: 60_000, steps: 600, preview: false } } };
    fs.writeFileSync(path.join(tmp, 'slow.json'), JSON.stringify(slow));
    const child = spawn(process.execPath, [BIN, 'run', 'slow.json', '--output-dir', 'outslow'], {
      cwd: tmp,
      env: { ...process.env, SANA_GRAPH_EXTRA_NODES: TEST_NODES },
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`never started: ${stderr}`)), 120_000);
      child.stderr.on('data', () => {
        if (stderr.includes('TestSlow')) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    const t0 = Date.now();
    const code = await new Promise<number | null>((resolve) => {
      child.on('exit', (c) => resolve(c));
      child.kill('SIGINT');
    });
    expect(code).toBe(130);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(stderr).toContain('interrupted');
    expect(fs.existsSync(path.join(tmp, 'outslow', 'cli'))).toBe(false);
  });

  test('on a TTY the bar is redrawn in place and ends with a newline', () => {
    const writes: string[] = [];
    const view = new ProgressView({ write: (x) => writes.push(x), isTTY: true, columns: 100 }, (id) => (id === '5' ? 'TestSlow' : 'SaveImage'), 2);
    view.event({ type: 'execution_cached', data: { nodes: [], prompt_id: 'p', timestamp: 0 } });
    view.event({ type: 'executing', data: { node: '5', display_node: '5', prompt_id: 'p' } });
    view.event({ type: 'progress', data: { value: 1, max: 2, prompt_id: 'p', node: '5' } });
    view.event({ type: 'executing', data: { node: '9', display_node: '9', prompt_id: 'p' } });
    view.finish();
    expect(writes.every((w) => w.startsWith('\r\x1b[2K'))).toBe(true);
    expect(writes.some((w) => w.includes('TestSlow (#5) 1/2') && w.includes(' 25%'))).toBe(true);
    expect(writes.at(-1)).toMatch(/100%\n$/);
  });
});

describe('sana-graph convert', SLOW, () => {
  test('prints the API prompt of a UI workflow', async () => {
    fs.writeFileSync(path.join(tmp, 'ui2.json'), JSON.stringify(uiWorkflow));
    const r = await cli(['convert', 'ui2.json']);
    expect(r.code, r.stderr).toBe(0);
    const prompt = JSON.parse(r.stdout);
    expect(prompt['1']).toMatchObject({ class_type: 'TestImage', inputs: { width: 4, height: 2, seed: 200 } });
    expect(prompt['9']).toMatchObject({ class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'cli/ui' } });
  });
});

describe('sana-graph serve', SLOW, () => {
  test('starts on the requested port with the given folders and shuts down cleanly on SIGINT', async () => {
    const child = spawn(
      process.execPath,
      [
        BIN,
        'serve',
        '--port',
        '0',
        '--output-dir',
        'sout',
        '--user-dir',
        'suser',
        '--temp-dir',
        'stemp',
        '--input-dir',
        'sin',
        '--cache',
        'lru',
        '--threads',
        '1',
      ],
      {
        cwd: tmp,
        env: { ...process.env, SANA_GRAPH_EXTRA_NODES: TEST_NODES },
      },
    );
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no URL printed: ${stderr}`)), 120_000);
      child.stderr.on('data', () => {
        const m = /serving on (http:\/\/[^\s]+)/.exec(stderr);
        if (m) {
          clearTimeout(t);
          resolve(m[1]);
        }
      });
    });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // --threads reaches the native addon (SANA_THREADS, inherited by the execution child too).
    const stats = (await (await fetch(`${url}/system_stats`)).json()) as { devices: Array<{ type: string; info?: { threads?: number } }> };
    expect(stats.devices.find((d) => d.type === 'cpu')?.info?.threads).toBe(1);
    const r = await fetch(`${url}/api/prompt`, {
      method: 'POST',
      body: JSON.stringify({ prompt: { ...apiPrompt, '5': { ...apiPrompt['5'], inputs: { ...apiPrompt['5'].inputs, ms: 0 } } } }),
    });
    expect(r.status).toBe(200);
    const { prompt_id } = (await r.json()) as { prompt_id: string };
    for (let i = 0; i < 200; i++) {
      const h = (await (await fetch(`${url}/history/${prompt_id}`)).json()) as Record<string, unknown>;
      if (h[prompt_id]) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(fs.readdirSync(path.join(tmp, 'sout', 'cli'))).toContain('api_00001_.png');
    expect(fs.readdirSync(path.join(tmp, 'suser', 'history')).length).toBe(1);
    const code = await new Promise<number | null>((resolve) => {
      child.on('exit', (c) => resolve(c));
      child.kill('SIGINT');
    });
    expect(code).toBe(0);
    expect(stderr).toContain('shutting down');
  });

  test('rejects bad flags', async () => {
    expect((await cli(['serve', '--port', 'abc'])).stderr).toMatch(/--port needs a number/);
    expect((await cli(['serve', '--cache', 'huge'])).stderr).toMatch(/one of classic, lru, none/);
  });
});
