// Shared set-up for the browser tests and `npm run screenshot`: builds the editor bundle if its
// sources changed, starts the real server on a free port with throw-away folders, and launches
// headless Chromium through playwright-core with the flags measured in
// shared/notes/environment.md §4.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startServer, type ServerOptions } from '../../web/server/index.ts';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ARTIFACTS = path.join(REPO, 'test-artifacts');

/** Why the browser tests cannot run here, or null when they can. In CI they must run. */
export function browserSkipReason(): string | null {
  if (existsSync(CHROMIUM)) return null;
  if (process.env.CI === 'true') return null; // let the launch fail loudly
  return `${CHROMIUM} not found (install the Debian package chromium); browser tests skipped outside CI`;
}

export function buildEditor(): void {
  execFileSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'web/editor/build.ts')], { cwd: REPO, stdio: 'inherit' });
}

export type Session = {
  url: string;
  browser: Browser;
  page: Page;
  dirs: { root: string; output: string; input: string; temp: string; user: string };
  consoleErrors: string[];
  /** URLs answered with a 4xx/5xx status. */
  failedRequests: string[];
  close(): Promise<void>;
};

export async function openSession(opts: Partial<ServerOptions> = {}, prepare?: (dirs: Session['dirs']) => void): Promise<Session> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'sana-editor-'));
  const dirs = {
    root,
    output: path.join(root, 'output'),
    input: path.join(root, 'input'),
    temp: path.join(root, 'temp'),
    user: path.join(root, 'user'),
  };
  prepare?.(dirs);
  const server = await startServer({
    port: 0,
    outputDir: dirs.output,
    inputDir: dirs.input,
    tempDir: dirs.temp,
    userDir: dirs.user,
    ...opts,
  });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1400, height: 860 }, acceptDownloads: true });
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  const failedRequests: string[] = [];
  page.on('response', (r) => {
    if (r.status() >= 400) failedRequests.push(r.url());
  });
  return {
    url: server.url,
    browser,
    page,
    dirs,
    consoleErrors,
    failedRequests,
    async close() {
      await browser.close().catch(() => {});
      await server.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * Opens (or reloads) the editor and waits until `window.app` is ready. Each session is a new
 * browser context, so the first open starts with empty localStorage (the default workflow).
 */
export async function openEditor(s: Session): Promise<void> {
  await s.page.goto(s.url + '/');
  await s.page.waitForFunction(() => document.body.dataset.ready === 'true' || document.body.dataset.ready === 'error', null, { timeout: 30_000 });
  const state = await s.page.evaluate(() => document.body.dataset.ready);
  if (state !== 'true') throw new Error(`editor failed to start: ${await s.page.textContent('#fatal')}`);
}

/**
 * How much is drawn on the canvas: the share of pixels that differ from the most common colour
 * (the background). A blank canvas gives 0.
 */
export async function canvasInk(page: Page): Promise<number> {
  return page.evaluate(() => {
    const c = document.getElementById('graph-canvas') as HTMLCanvasElement;
    const data = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    const counts = new Map<number, number>();
    for (let i = 0; i < data.length; i += 4) {
      const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const top = Math.max(...counts.values());
    return 1 - top / (data.length / 4);
  });
}
