// The editor bundle (web/editor/dist, built by `npm run build:editor`) at `/`, or another
// frontend's built files with --front-end-root (ComfyUI's own frontend). Not prefixed with /api.
// Missing bundle: `/` explains how to build it instead of failing silently.
import fs from 'node:fs';
import type { FastifyReply } from 'fastify';
import { z } from 'zod';
import { sendNotFound } from '../errors.ts';
import type { RoutePlugin } from '../http.ts';
import { param } from '../schema.ts';
import type { ServerState } from '../state.ts';
import { resolveInside } from '../../../nodes/image/paths.ts';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.ttf': 'font/ttf',
  '.webp': 'image/webp',
  '.jpg': 'image/jpeg',
  '.gif': 'image/gif',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
};

/** The folder served at `/`: --front-end-root when given, else our editor bundle. */
export function webRoot(state: ServerState): string {
  return state.options.frontEndRoot || state.options.staticDir;
}

export const staticRoutes: RoutePlugin = async (app, { state }) => {
  const root = webRoot(state);
  const serve = (rel: string, reply: FastifyReply) => {
    let file: string;
    try {
      file = resolveInside(root, [rel]);
    } catch {
      return sendNotFound(reply, 'not found');
    }
    let stat: fs.Stats | undefined;
    try {
      stat = fs.statSync(file);
    } catch {
      stat = undefined;
    }
    if (!stat?.isFile()) return sendNotFound(reply, `no file ${rel}`);
    const ext = file.slice(file.lastIndexOf('.')).toLowerCase();
    if (ext === '.html') reply.header('Cache-Control', 'no-store, no-cache, must-revalidate');
    else if (ext === '.js' || ext === '.css') reply.header('Cache-Control', 'no-cache');
    return reply
      .type(TYPES[ext] ?? 'application/octet-stream')
      .header('content-length', stat.size)
      .send(fs.createReadStream(file));
  };
  app.get('/', async (_req, reply) => {
    if (!fs.existsSync(`${root}/index.html`)) {
      return reply
        .type('text/html; charset=utf-8')
        .send(
          '<!doctype html><title>sana-graph</title><p>The editor bundle is not built. Run <code>npm run build:editor</code> (or <code>npm start</code>, which builds it), then reload.</p>',
        );
    }
    return serve('index.html', reply);
  });
  app.get('/*', { schema: { params: z.object({ '*': param }) } }, async (req, reply) => serve(req.params['*'], reply));
};
