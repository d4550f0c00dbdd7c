// The toolbar's workflow picker: the server lists every shipped UI workflow, the picker names
// them (titles from the template index, else the file stem), picking Sana-Sprint replaces the
// graph the way Default does and the picked graph runs to an image on SaveImage; a failing list
// shows on the status line.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addonPath } from '../../native/binding.ts';
import { startServer, type RunningServer } from '../../web/server/index.ts';
import { WORKFLOWS_DIR } from '../../workflows/index.ts';
import { workflowChoices } from '../../web/editor/src/workflow-list.ts';
import { ARTIFACTS, browserSkipReason, buildEditor, openEditor, openSession, type Session } from './harness.ts';

const skip = browserSkipReason();
if (skip) console.warn(`[browser tests] ${skip}`);

const SHIPPED_UI = readdirSync(WORKFLOWS_DIR)
  .filter((f) => f.endsWith('.ui.json'))
  .sort();

describe('GET /workflows', () => {
  let server: RunningServer;
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'sana-workflows-'));
    const dir = (n: string) => path.join(root, n);
    server = await startServer({ port: 0, outputDir: dir('output'), inputDir: dir('input'), tempDir: dir('temp'), userDir: dir('user') });
  }, 120_000);

  afterAll(async () => {
    await server?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('lists every shipped .ui.json, and each one is served as a UI workflow', async () => {
    expect(SHIPPED_UI).toEqual(
      expect.arrayContaining(['sana_default.ui.json', 'sana_sprint.ui.json', 'sana_img2img.ui.json', 'sana_inpaint.ui.json', 'sana_lora.ui.json']),
    );
    for (const prefix of ['', '/api']) {
      const res = await fetch(`${server.url}${prefix}/workflows`);
      expect(res.status).toBe(200);
      const listed = (await res.json()) as string[];
      expect(listed.filter((f) => f.endsWith('.ui.json')).sort()).toEqual(SHIPPED_UI);
    }
    for (const file of SHIPPED_UI) {
      const wf = (await (await fetch(`${server.url}/workflows/${file}`)).json()) as { nodes?: unknown[]; links?: unknown[] };
      expect(Array.isArray(wf.nodes) && wf.nodes.length > 0, file).toBe(true);
      expect(Array.isArray(wf.links), file).toBe(true);
    }
  });

  it('gives the picker one entry per UI workflow, titled from the template index', async () => {
    const files = await (await fetch(`${server.url}/workflows`)).json();
    const index = await (await fetch(`${server.url}/templates/index.json`)).json();
    const choices = workflowChoices(files, index);
    expect(choices.map((c) => c.file)).toEqual(SHIPPED_UI);
    const sprint = choices.find((c) => c.file === 'sana_sprint.ui.json')!;
    expect(sprint.label).toBe('Sana sprint');
    expect(sprint.description).toMatch(/Sprint/);
    // Without an index (or with an unexpected one) the file stem names the entry.
    expect(workflowChoices(files, null).map((c) => c.label)).toEqual(SHIPPED_UI.map((f) => f.slice(0, -'.ui.json'.length)));
    expect(workflowChoices(files, { not: 'an index' })[0].label).toBe('sana_default');
    expect(() => workflowChoices({ error: 'x' })).toThrow(/list of file names/);
  });
});

describe.skipIf(skip !== null)('workflow picker in a real browser', () => {
  let s: Session;

  beforeAll(async () => {
    buildEditor();
    mkdirSync(ARTIFACTS, { recursive: true });
    s = await openSession();
    await openEditor(s);
    // The list is fetched after the first graph is in place.
    await s.page.waitForFunction(() => ((document.querySelector('#workflow-select') as HTMLSelectElement | null)?.options.length ?? 0) > 1, null, {
      timeout: 20_000,
    });
  }, 240_000);

  afterAll(async () => {
    await s?.close();
  });

  const nodeTypes = () => s.page.evaluate(() => ((window as any).app.graph.nodes as { type: string }[]).map((n) => n.type).sort());

  it('offers the shipped workflows by name and loads Sana-Sprint in place of the graph', async () => {
    const options = await s.page.$$eval('#workflow-select option', (os) =>
      (os as HTMLOptionElement[]).map((o) => ({ value: o.value, label: o.textContent, title: o.title, disabled: o.disabled })),
    );
    expect(options[0]).toMatchObject({ value: '', disabled: true });
    const values = options.slice(1).map((o) => o.value);
    expect(values).toEqual(expect.arrayContaining(['sana_default.ui.json', 'sana_sprint.ui.json']));
    expect(values.every((v) => v.endsWith('.ui.json'))).toBe(true);
    expect(options.find((o) => o.value === 'sana_sprint.ui.json')).toMatchObject({ label: 'Sana sprint' });

    const before = await nodeTypes();
    expect(before).not.toContain('SanaSprintSampler');
    await s.page.selectOption('#workflow-select', 'sana_sprint.ui.json');
    await s.page.waitForFunction(() => ((window as any).app.graph.nodes as { type: string }[]).some((n) => n.type === 'SanaSprintSampler'));
    const shipped = (await (await fetch(`${s.url}/workflows/sana_sprint.ui.json`)).json()) as { nodes: { type: string }[] };
    // Replaced, not merged: exactly the shipped Sprint graph's nodes.
    expect(await nodeTypes()).toEqual(shipped.nodes.map((n) => n.type).sort());
    expect(await s.page.textContent('#status-line')).toMatch(/loaded Sana sprint/);
    // The picker returns to its placeholder so the same entry can be picked again.
    expect(await s.page.$eval('#workflow-select', (e) => (e as HTMLSelectElement).value)).toBe('');

    // Kept across a reload, like any other graph (localStorage, written within a second).
    await s.page.waitForTimeout(1_300);
    await openEditor(s);
    expect(await nodeTypes()).toEqual(shipped.nodes.map((n) => n.type).sort());
  });

  it.skipIf(!existsSync(addonPath) && process.env.CI !== 'true')(
    'runs the picked Sprint graph to an image on SaveImage',
    async () => {
      const queued = await s.page.evaluate(() => (window as any).app.queue());
      expect(queued.promptId, JSON.stringify(queued)).toBeTruthy();
      await s.page.waitForFunction((pid: string) => (window as any).app.tracker.lastResult?.promptId === pid, queued.promptId, { timeout: 600_000 });
      const result = await s.page.evaluate(() => (window as any).app.tracker.lastResult);
      expect(result.status, JSON.stringify(result)).toBe('success');
      const saveId = await s.page.evaluate(() => ((window as any).app.graph.nodes as { id: number; type: string }[]).find((n) => n.type === 'SaveImage')!.id);
      await s.page.waitForFunction(
        (id: number) => {
          const imgs = (window as any).app.nodeImages(id) as { loaded: boolean }[];
          return imgs.length > 0 && imgs.every((i) => i.loaded);
        },
        saveId,
        { timeout: 20_000 },
      );
      const url = (await s.page.evaluate((id: number) => (window as any).app.nodeImages(id)[0].url, saveId)) as string;
      const res = await fetch(new URL(url, s.url));
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/image\/png/);
      await s.page.screenshot({ path: path.join(ARTIFACTS, 'editor-sprint-run.png') });
    },
    660_000,
  );

  it('Default still brings back the default workflow', async () => {
    await s.page.click('#default-button');
    await s.page.waitForFunction(() => !((window as any).app.graph.nodes as { type: string }[]).some((n) => n.type === 'SanaSprintSampler'));
    const shipped = (await (await fetch(`${s.url}/workflows/default.json`)).json()) as { nodes: { type: string }[] };
    expect(await nodeTypes()).toEqual(shipped.nodes.map((n) => n.type).sort());
    expect(await s.page.textContent('#status-line')).toMatch(/loaded the default workflow/);
  });

  it('shows a failure to list the workflows on the status line, without an exception', async () => {
    await s.page.route('**/workflows', (route) => route.fulfill({ status: 500, contentType: 'application/json', body: '{"error":"boom"}' }));
    try {
      await s.page.evaluate(() => (window as any).app.refreshWorkflowList());
      expect(await s.page.textContent('#status-line')).toMatch(/could not list the shipped workflows: .*HTTP 500/);
      expect(await s.page.getAttribute('#status-line', 'class')).toBe('error');
      expect(await s.page.$eval('#workflow-select', (e) => (e as HTMLSelectElement).disabled)).toBe(true);
    } finally {
      await s.page.unroute('**/workflows');
    }
    await s.page.evaluate(() => (window as any).app.refreshWorkflowList());
    expect(await s.page.$$eval('#workflow-select option', (os) => os.length)).toBe(SHIPPED_UI.length + 1);
    expect(s.consoleErrors.filter((e) => !/Failed to load resource/.test(e))).toEqual([]);
  });
});
