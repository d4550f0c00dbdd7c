// The editor in headless Chromium against the real server (startServer on a free port):
// the default graph renders, Ctrl+Enter runs it and the image shows on the output node,
// dropping that PNG restores the same graph, an unlinked required input is reported on its
// node, and the search box adds nodes. Screenshots go to test-artifacts/ (and, with
// SANA_EDITOR_SCREENSHOT=1, the finished run to docs/editor-run.png).
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addonPath } from '../../native/binding.ts';
import { encodePng, readPngText } from '../../nodes/image/png.ts';
import { ARTIFACTS, REPO, browserSkipReason, buildEditor, canvasInk, openEditor, openSession, type Session } from './harness.ts';

const skip = browserSkipReason();
if (skip) console.warn(`[browser tests] ${skip}`);

type SerializedNode = { id: number; type: string; widgets_values?: unknown[]; inputs?: { name: string; link: number | null }[]; mode?: number };
type Serialized = { nodes: SerializedNode[]; links: unknown[] };

/** What makes two workflows "the same graph": node ids, types, widget values and wiring. */
function graphEssence(wf: Serialized) {
  return {
    nodes: [...wf.nodes].sort((a, b) => a.id - b.id).map((n) => ({ id: n.id, type: n.type, mode: n.mode ?? 0, widgets_values: n.widgets_values ?? [] })),
    links: [...(wf.links as unknown[][])].map((l) => l.slice(0, 6)).sort((a, b) => Number(a[0]) - Number(b[0])),
  };
}

const STUB_NODES = path.join(REPO, 'test/browser/fixtures/gradient-nodes.ts');

/**
 * The tests run the shipped default workflow (Sana on the tiny models) when the server has one
 * and the native addon it needs is built (always in CI); otherwise a stand-in graph, TestGradient -> SaveImage
 * and PreviewImage, built in the page through the editor's own node types.
 */
async function useStubGraphIfNoDefault(s: Session): Promise<boolean> {
  const res = await fetch(`${s.url}/workflows/default.json`);
  const nativeBuilt = existsSync(addonPath);
  // In CI the shipped workflow must run: a missing addon is a failure there, not a reason to stub.
  if (res.ok && (nativeBuilt || process.env.CI === 'true')) return false;
  const why = res.ok ? `the native addon is not built (${addonPath} is missing)` : 'the server has no /workflows/default.json';
  console.warn(`[browser tests] ${why}; running the TestGradient stand-in graph`);
  await s.page.evaluate(() => {
    const app = (window as any).app;
    const LiteGraph = app.LiteGraph;
    app.graph.clear();
    const gen = LiteGraph.createNode('TestGradient');
    const save = LiteGraph.createNode('SaveImage');
    const preview = LiteGraph.createNode('PreviewImage');
    gen.pos = [60, 120];
    save.pos = [420, 60];
    preview.pos = [420, 300];
    for (const n of [gen, save, preview]) app.graph.add(n);
    gen.connect(0, save, 0);
    gen.connect(0, preview, 0);
    app.canvas.setDirty(true, true);
  });
  return true;
}

describe.skipIf(skip !== null)('editor in a real browser', () => {
  let s: Session;
  let runPng: Buffer | null = null;
  let queuedWorkflow: Serialized | null = null;
  let stubGraph = false;

  beforeAll(async () => {
    buildEditor();
    mkdirSync(ARTIFACTS, { recursive: true });
    s = await openSession({ extraNodeModules: [STUB_NODES] });
    await openEditor(s);
  }, 240_000);

  afterAll(async () => {
    await s?.close();
  });

  it('renders the default graph', async () => {
    const info = await s.page.evaluate(() => {
      const app = (window as any).app;
      return { nodes: app.graph.nodes.map((n: any) => n.type), links: app.graph.links.size ?? Object.keys(app.graph.links).length };
    });
    expect(info.nodes.length).toBeGreaterThan(1);
    expect(info.links).toBeGreaterThan(0);
    await s.page.waitForTimeout(300);
    const shot = path.join(ARTIFACTS, 'editor-default.png');
    await s.page.screenshot({ path: shot });
    // Nodes, links and widgets cover a good part of the canvas; the empty grid covers little.
    expect(await canvasInk(s.page)).toBeGreaterThan(0.03);
    expect(s.consoleErrors.filter((e) => !/Failed to load resource/.test(e))).toEqual([]);
    // The only request allowed to fail is the optional default workflow (a server may not ship one).
    expect(s.failedRequests.filter((u) => !/\/workflows\/default\.json$|favicon\.ico$/.test(u))).toEqual([]);
  });

  it('runs the graph on Ctrl+Enter and shows the image on the output node', async () => {
    stubGraph = await useStubGraphIfNoDefault(s);
    queuedWorkflow = await s.page.evaluate(() => (window as any).app.graph.serialize());
    await s.page.locator('#graph-canvas').click({ position: { x: 5, y: 5 } });
    // Watch the run from inside the page: a node progress bar, the overall bar, the running node.
    await s.page.evaluate(() => {
      const w = window as any;
      w.__seen = { nodeProgress: false, overall: false, running: false };
      const tick = () => {
        const app = w.app;
        if (app.graph.nodes.some((n: any) => n.progress > 0)) w.__seen.nodeProgress = true;
        if (parseFloat((document.querySelector('#overall-progress .fill') as HTMLElement).style.width) > 0) w.__seen.overall = true;
        if (app.states.runningNode != null) w.__seen.running = true;
        if (!app.tracker.lastResult) requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    });
    await s.page.keyboard.press('Control+Enter');
    await s.page.waitForFunction(() => (window as any).app.tracker.lastResult != null, null, { timeout: 600_000 });
    if (stubGraph) {
      // TestGradient sends a PNG preview with every step; it shows on the running node.
      expect(await s.page.evaluate(() => (window as any).app.tracker.previewsReceived)).toBeGreaterThan(0);
    }
    const result = await s.page.evaluate(() => (window as any).app.tracker.lastResult);
    expect(result.status, JSON.stringify(result)).toBe('success');
    expect(await s.page.evaluate(() => (window as any).__seen)).toEqual({ nodeProgress: true, overall: true, running: true });
    const outputs = await s.page.evaluate(() => {
      const app = (window as any).app;
      return app.graph.nodes
        .filter((n: any) => app.objectInfo[n.type]?.output_node)
        .map((n: any) => ({ id: n.id, type: n.type, images: app.nodeImages(n.id) }));
    });
    const withImages = outputs.filter((o: { images: unknown[] }) => o.images.length > 0);
    expect(withImages.length, JSON.stringify(outputs)).toBeGreaterThan(0);
    await s.page.waitForFunction(
      (ids: number[]) => ids.every((id) => (window as any).app.nodeImages(id).every((i: { loaded: boolean }) => i.loaded)),
      withImages.map((o: { id: number }) => o.id),
      { timeout: 20_000 },
    );
    // The history panel lists the finished prompt with its image.
    await s.page.waitForSelector('#history-list li img', { timeout: 10_000 });
    // Output nodes grew to show their images: frame the whole graph for the screenshot.
    await s.page.evaluate(() => (window as any).app.fitView());
    await s.page.waitForTimeout(300);
    const shot = path.join(ARTIFACTS, 'editor-run.png');
    await s.page.screenshot({ path: shot });
    if (process.env.SANA_EDITOR_SCREENSHOT === '1') {
      mkdirSync(path.join(REPO, 'docs'), { recursive: true });
      copyFileSync(shot, path.join(REPO, 'docs', 'editor-run.png'));
    }
    const saved = withImages.find((o: { type: string }) => o.type === 'SaveImage') ?? withImages[0];
    const url = saved.images[0].url as string;
    const res = await fetch(new URL(url, s.url));
    expect(res.status).toBe(200);
    runPng = Buffer.from(await res.arrayBuffer());
  }, 660_000);

  it('restores the same graph from the PNG dropped on the canvas', async () => {
    expect(runPng, 'needs the image of the previous test').not.toBeNull();
    const text = readPngText(runPng!);
    expect(Object.keys(text)).toEqual(expect.arrayContaining(['prompt', 'workflow']));
    const embedded = JSON.parse(text.workflow) as Serialized;
    expect(graphEssence(embedded)).toEqual(graphEssence(queuedWorkflow!));

    await s.page.evaluate(() => (window as any).app.graph.clear());
    expect(await s.page.evaluate(() => (window as any).app.graph.nodes.length)).toBe(0);
    await s.page.evaluate(async (b64: string) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'run.png', { type: 'image/png' }));
      const target = document.getElementById('graph-canvas')!;
      target.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      target.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, runPng!.toString('base64'));
    await s.page.waitForFunction(() => (window as any).app.graph.nodes.length > 0, null, { timeout: 10_000 });
    const restored = (await s.page.evaluate(() => (window as any).app.graph.serialize())) as Serialized;
    expect(graphEssence(restored)).toEqual(graphEssence(queuedWorkflow!));
  });

  it('marks the node whose required input is unlinked, with the message', async () => {
    const target = await s.page.evaluate(() => {
      const app = (window as any).app;
      // The first output node with a linked required socket: unlink it.
      for (const n of app.graph.nodes) {
        if (!app.objectInfo[n.type]?.output_node) continue;
        const slot = n.inputs.findIndex((i: any) => i.link != null && !i.widget);
        if (slot < 0) continue;
        n.disconnectInput(slot);
        return { id: n.id, input: n.inputs[slot].name };
      }
      return null;
    });
    expect(target).not.toBeNull();
    await s.page.keyboard.press('Control+Enter');
    await s.page.waitForFunction((id: number) => (window as any).app.nodeErrors()[String(id)] != null, target!.id, { timeout: 20_000 });
    // Read at once: with another valid output the job still runs and later reports its end here.
    expect(await s.page.textContent('#status-line')).toMatch(/failed validation|missing/i);
    const err = await s.page.evaluate((id: number) => {
      const app = (window as any).app;
      return { view: app.nodeErrors()[String(id)], hasErrors: app.graph.getNodeById(id).has_errors };
    }, target!.id);
    expect(err.hasErrors).toBe(true);
    expect(Object.keys(err.view.inputs)).toContain(target!.input);
    expect(err.view.inputs[target!.input]).toMatch(/Required input is missing/);
    await s.page.waitForTimeout(200);
    await s.page.screenshot({ path: path.join(ARTIFACTS, 'editor-error.png') });
  });

  it('adds a node from the search box opened by a double-click on the canvas', async () => {
    const before = await s.page.evaluate(() => (window as any).app.graph.nodes.length);
    const spot = await s.page.evaluate(() => {
      const app = (window as any).app;
      const canvas = document.getElementById('graph-canvas') as HTMLCanvasElement;
      const r = canvas.getBoundingClientRect();
      for (let y = 40; y < r.height - 40; y += 40) {
        for (let x = 40; x < r.width - 40; x += 40) {
          // Clear of every node by 40 px in each direction, so the double-click lands on the canvas.
          const clear = [-40, 0, 40].every((dx) =>
            [-40, 0, 40].every((dy) => {
              const g = app.canvas.convertCanvasToOffset([x + dx, y + dy]);
              return !app.graph.getNodeOnPos(g[0], g[1]);
            }),
          );
          if (clear) return { x: r.left + x, y: r.top + y };
        }
      }
      return null;
    });
    expect(spot).not.toBeNull();
    await s.page.mouse.dblclick(spot!.x, spot!.y);
    const input = s.page.locator('.litesearchbox input');
    await input.waitFor({ state: 'visible', timeout: 5_000 });
    // Typed key by key: the search box filters on keydown, not on input events.
    await input.pressSequentially('preview image', { delay: 20 });
    await s.page.waitForFunction(
      () => {
        const items = [...document.querySelectorAll('.litesearchbox .helper > *')];
        return items.length > 0 && items.every((i) => /preview/i.test(i.textContent ?? ''));
      },
      null,
      { timeout: 5_000 },
    );
    await input.press('Enter');
    await s.page.waitForFunction((n: number) => (window as any).app.graph.nodes.length === n + 1, before, { timeout: 5_000 });
    const added = await s.page.evaluate(() => {
      const nodes = (window as any).app.graph.nodes;
      return nodes[nodes.length - 1].type;
    });
    expect(added).toBe('PreviewImage');
  });
  it('keeps the graph across reloads and exports the API format', async () => {
    const before = (await s.page.evaluate(() => (window as any).app.graph.serialize())) as Serialized;
    // The graph is written to localStorage at most a second after a change.
    await s.page.waitForTimeout(1_300);
    await openEditor(s);
    const after = (await s.page.evaluate(() => (window as any).app.graph.serialize())) as Serialized;
    expect(graphEssence(after)).toEqual(graphEssence(before));

    const [download] = await Promise.all([s.page.waitForEvent('download'), s.page.click('#export-api-button')]);
    expect(download.suggestedFilename()).toBe('workflow_api.json');
    const api = JSON.parse(readFileSync(await download.path(), 'utf8')) as Record<string, { class_type: string }>;
    const expected = after.nodes
      .filter((n) => (n.mode ?? 0) === 0)
      .map((n) => n.type)
      .sort();
    expect(
      Object.values(api)
        .map((n) => n.class_type)
        .sort(),
    ).toEqual(expected);
  });

  it('cancels a pending job from the queue panel and interrupts the running one', async () => {
    await s.page.evaluate(() => {
      const app = (window as any).app;
      app.graph.clear();
      const gen = app.LiteGraph.createNode('TestGradient');
      // 250 x 80 ms = 20 s: ample time to act on a loaded machine; the interrupt ends it early.
      gen.widgets.find((w: any) => w.name === 'steps').value = 250;
      const preview = app.LiteGraph.createNode('PreviewImage');
      preview.pos = [400, 100];
      app.graph.add(gen);
      app.graph.add(preview);
      gen.connect(0, preview, 0);
    });
    const first = await s.page.evaluate(() => (window as any).app.queue());
    const second = await s.page.evaluate(() => (window as any).app.queue());
    expect(first.promptId && second.promptId, JSON.stringify([first, second])).toBeTruthy();
    await s.page.waitForSelector(`#queue-running li[data-prompt-id="${first.promptId}"]`, { timeout: 20_000 });
    await s.page.click(`#queue-pending li[data-prompt-id="${second.promptId}"] button.cancel`);
    await s.page.waitForSelector(`#queue-pending li[data-prompt-id="${second.promptId}"]`, { state: 'detached', timeout: 10_000 });
    await s.page.click('#interrupt-button');
    await s.page.waitForFunction((id: string) => (window as any).app.tracker.lastResult?.promptId === id, first.promptId, { timeout: 20_000 });
    expect(await s.page.evaluate(() => (window as any).app.tracker.lastResult.status)).toBe('interrupted');
    const history = (await (await fetch(`${s.url}/history`)).json()) as Record<string, unknown>;
    expect(Object.keys(history)).toContain(first.promptId);
    expect(Object.keys(history)).not.toContain(second.promptId);
  });
  it('shows a run-time failure on the node that failed', async () => {
    const id = await s.page.evaluate(() => {
      const app = (window as any).app;
      app.graph.clear();
      const fail = app.LiteGraph.createNode('TestFail');
      app.graph.add(fail);
      return fail.id;
    });
    const queued = await s.page.evaluate(() => (window as any).app.queue());
    await s.page.waitForFunction((pid: string) => (window as any).app.tracker.lastResult?.promptId === pid, queued.promptId, { timeout: 20_000 });
    const state = await s.page.evaluate((nid: number) => {
      const app = (window as any).app;
      return { result: app.tracker.lastResult, error: app.nodeErrors()[String(nid)], hasErrors: app.graph.getNodeById(nid).has_errors };
    }, id);
    expect(state.result.status).toBe('error');
    expect(state.error.message).toMatch(/TestFail: deliberate failure/);
    expect(state.hasErrors).toBe(true);
    expect(await s.page.textContent('#status-line')).toMatch(/TestFail failed/);
  });

  it('edits a multiline text widget in place', async () => {
    const pos = await s.page.evaluate(() => {
      const app = (window as any).app;
      const node = app.graph.nodes.find((n: any) => n.type === 'TestFail');
      const w = node.widgets.find((x: any) => x.name === 'message');
      const r = app.canvas.canvas.getBoundingClientRect();
      const [x, y] = app.canvas.convertOffsetToCanvas([node.pos[0] + node.size[0] / 2, node.pos[1] + w.y + 20], [0, 0]);
      return { x: r.left + x, y: r.top + y, id: node.id };
    });
    await s.page.mouse.click(pos.x, pos.y);
    const editor = s.page.locator('textarea.multiline-editor');
    await editor.waitFor({ state: 'visible', timeout: 5_000 });
    await editor.fill('line one\nline two');
    await s.page.keyboard.press('Escape'); // Escape cancels: the value stays
    expect(await s.page.evaluate((id: number) => (window as any).app.graph.getNodeById(id).widgets[0].value, pos.id)).toBe('deliberate failure');
    await s.page.mouse.click(pos.x, pos.y);
    await editor.waitFor({ state: 'visible', timeout: 5_000 });
    await editor.fill('line one\nline two');
    await s.page.mouse.click(5, 200); // clicking away commits
    await editor.waitFor({ state: 'detached', timeout: 5_000 });
    expect(await s.page.evaluate((id: number) => (window as any).app.graph.getNodeById(id).widgets[0].value, pos.id)).toBe('line one\nline two');
  });

  it('offers every object_info category in the canvas menu', async () => {
    const { categories, expected } = await s.page.evaluate(() => {
      const app = (window as any).app;
      return {
        categories: app.LiteGraph.getNodeTypesCategories(),
        expected: [...new Set(Object.values(app.objectInfo).map((d: any) => d.category))],
      };
    });
    for (const c of expected as string[]) expect(categories).toContain(c);
    await s.page.mouse.click(700, 600, { button: 'right' });
    await s.page.locator('.litecontextmenu .litemenu-entry', { hasText: 'Add Node' }).click();
    await s.page
      .locator('.litecontextmenu .litemenu-entry', { hasText: /^testing$/ })
      .first()
      .click(); // exact: ComfyUI's _for_testing category is listed too
    await expect.poll(() => s.page.locator('.litecontextmenu .litemenu-entry', { hasText: 'Test Gradient' }).count()).toBeGreaterThan(0);
    const before = await s.page.evaluate(() => (window as any).app.graph.nodes.length);
    await s.page.locator('.litecontextmenu .litemenu-entry', { hasText: 'Test Gradient' }).first().click();
    await s.page.waitForFunction((n: number) => (window as any).app.graph.nodes.length === n + 1, before, { timeout: 5_000 });
  });

  it('uploads an image through the LoadImage upload button and restores an API JSON drop', async () => {
    const id = await s.page.evaluate(() => {
      const app = (window as any).app;
      app.graph.clear();
      const load = app.LiteGraph.createNode('LoadImage');
      const preview = app.LiteGraph.createNode('PreviewImage');
      preview.pos = [400, 60];
      app.graph.add(load);
      app.graph.add(preview);
      load.connect(0, preview, 0);
      return load.id;
    });
    const png = encodePng({ width: 8, height: 8, channels: 3, data: new Uint8Array(8 * 8 * 3).fill(200) });
    const [chooser] = await Promise.all([
      s.page.waitForEvent('filechooser'),
      s.page.evaluate((nid: number) => {
        const node = (window as any).app.graph.getNodeById(nid);
        node.widgets.find((w: any) => w.name === 'upload').callback();
      }, id),
    ]);
    await chooser.setFiles({ name: 'uploaded.png', mimeType: 'image/png', buffer: png });
    await s.page.waitForFunction((nid: number) => (window as any).app.graph.getNodeById(nid).widgets[0].value === 'uploaded.png', id, { timeout: 10_000 });
    const queued = await s.page.evaluate(() => (window as any).app.queue());
    await s.page.waitForFunction((pid: string) => (window as any).app.tracker.lastResult?.promptId === pid, queued.promptId, { timeout: 20_000 });
    expect(await s.page.evaluate(() => (window as any).app.tracker.lastResult.status)).toBe('success');

    // The API format of this graph, dropped as a .json file, rebuilds it.
    const api = await s.page.evaluate(() => (window as any).app.toApiPrompt());
    await s.page.evaluate(() => (window as any).app.graph.clear());
    await s.page.evaluate(async (text: string) => {
      const dt = new DataTransfer();
      dt.items.add(new File([text], 'workflow_api.json', { type: 'application/json' }));
      document.getElementById('graph-canvas')!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, JSON.stringify(api));
    await s.page.waitForFunction(() => (window as any).app.graph.nodes.length === 2, null, { timeout: 10_000 });
    expect(await s.page.evaluate(() => (window as any).app.toApiPrompt())).toEqual(api);
  });
  it('colours slots by type and refuses links between different types', async () => {
    const r = await s.page.evaluate(() => {
      const app = (window as any).app;
      const gen = app.LiteGraph.createNode('TestGradient');
      const fail = app.LiteGraph.createNode('TestFail');
      const save = app.LiteGraph.createNode('SaveImage');
      for (const n of [gen, fail, save]) app.graph.add(n);
      const wrong = gen.connect(0, fail, 0); // IMAGE -> STRING widget socket
      const right = gen.connect(0, save, 0); // IMAGE -> IMAGE
      const colours = app.canvas.default_connection_color_byType;
      return { wrong: wrong != null, right: right != null, image: colours.IMAGE, string: colours.STRING };
    });
    expect(r.wrong).toBe(false);
    expect(r.right).toBe(true);
    expect(r.image).toBeTruthy();
    expect(r.image).not.toBe(r.string);
  });
});
