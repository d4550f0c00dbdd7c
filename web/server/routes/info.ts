// Catalogue routes: /object_info[/{class}], /system_stats, /embeddings, /extensions,
// /models[/{folder}], /features, and POST /free (shared/spec/comfyui-api.md §1.7, §1.10-1.12).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { sendNotFound } from '../errors.ts';
import { featureFlags } from '../features.ts';
import { emptyOk, type RoutePlugin } from '../http.ts';
import { jsonTrue, objectBody, param } from '../schema.ts';
import { relativeSegments, resolveInside } from '../../../nodes/image/paths.ts';
import { webRoot } from './static.ts';
import { walkSorted } from '../walk.ts';

const VERSION = '0.1.0';
const MAX_MODEL_FILES = 10_000;

/** Files under a models folder, relative "/"-paths, depth-limited; hidden entries skipped. */
function listModelFiles(dir: string): string[] {
  const out: string[] = [];
  walkSorted(dir, (e, full, depth) => {
    if (out.length >= MAX_MODEL_FILES) return 'stop';
    if (e.name.startsWith('.')) return 'next';
    if (e.isDirectory()) return depth < 6 ? 'descend' : 'next';
    if (e.isFile()) out.push(path.relative(dir, full).split(path.sep).join('/'));
    return 'next';
  });
  return out;
}

/** "/extensions/…/x.js" URLs of the scripts under <root>/extensions (none for our editor). */
function listExtensionScripts(root: string): string[] {
  const base = path.join(root, 'extensions');
  const out: string[] = [];
  walkSorted(base, (e, full, depth) => {
    if (out.length >= 1000) return 'stop';
    if (e.isDirectory()) return depth < 8 ? 'descend' : 'next';
    if (e.isFile() && e.name.endsWith('.js')) out.push(`/extensions/${path.relative(base, full).split(path.sep).join('/')}`);
    return 'next';
  });
  return out;
}

const featuresSchema = z.object({ supports_preview_metadata: z.boolean(), max_upload_size: z.number() });

export const infoRoutes: RoutePlugin = async (app, { state }) => {
  // refreshInputFiles: LoadImage's list, when the input files are in a store (state.ts).
  app.get('/object_info', async () => {
    await state.refreshInputFiles();
    return state.engine.objectInfo();
  });

  app.get('/object_info/:nodeClass', { schema: { params: z.object({ nodeClass: param }) } }, async (req) => {
    const { nodeClass } = req.params;
    await state.refreshInputFiles();
    const info = state.engine.objectInfoFor(nodeClass);
    return info ? { [nodeClass]: info } : {};
  });

  app.get('/system_stats', async () => ({
    ...(await state.backend.systemExtra()),
    system: {
      os: process.platform,
      ram_total: os.totalmem(),
      ram_free: os.freemem(),
      comfyui_version: VERSION,
      required_frontend_version: '',
      python_version: `Node.js ${process.version}`,
      pytorch_version: 'sana-graph native',
      embedded_python: false,
      argv: process.argv.slice(1),
    },
    devices: await state.backend.devices(),
  }));

  app.get('/embeddings', async () => []);
  // ComfyUI lists the web root's extensions/**/*.js, which a frontend then imports as plugins.
  app.get('/extensions', async () => listExtensionScripts(webRoot(state)));
  app.get('/features', { schema: { response: { 200: featuresSchema } } }, async () => featureFlags(state.options) as z.input<typeof featuresSchema>);

  app.get('/models', async () => {
    try {
      return fs
        .readdirSync(state.options.modelsDir, { withFileTypes: true })
        .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
        .map((e) => e.name)
        .sort();
    } catch {
      return [];
    }
  });

  app.get('/models/:folder', { schema: { params: z.object({ folder: param }) } }, async (req, reply) => {
    const { folder } = req.params;
    const unknown = () => sendNotFound(reply, `unknown model folder ${JSON.stringify(folder)}`);
    let dir: string;
    try {
      if (relativeSegments(folder).length !== 1) throw new Error('not a single folder name');
      dir = resolveInside(state.options.modelsDir, [folder]);
    } catch {
      return unknown();
    }
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return unknown();
    return listModelFiles(dir);
  });

  app.post('/free', { schema: { body: objectBody({ unload_models: jsonTrue, free_memory: jsonTrue }) } }, async (req, reply) => {
    await state.backend.free(req.body.unload_models, req.body.free_memory);
    return emptyOk(reply);
  });
};
