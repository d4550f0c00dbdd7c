// Catalogue routes: /object_info[/{class}], /system_stats, /embeddings, /extensions,
// /models[/{folder}], /features, and POST /free (spec §1.7, §1.10-1.12).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { emptyOk, type AddRoute } from '../app.ts';
import { asObject } from '../body.ts';
import type { ServerState } from '../state.ts';
import { relativeSegments, resolveInside } from '../../../nodes/image/paths.ts';
import { webRoot } from './static.ts';
import { walkSorted } from '../walk.ts';

const VERSION = '0.1.0';
const MAX_MODEL_FILES = 10_000;

export function featureFlags(state: ServerState): Record<string, unknown> {
  return { supports_preview_metadata: true, max_upload_size: state.options.maxUploadBytes };
}

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

export function registerInfoRoutes(add: AddRoute, state: ServerState): void {
  add('GET', '/object_info', async () => state.engine.objectInfo());

  add('GET', '/object_info/:nodeClass', async (req) => {
    const { nodeClass } = req.params as { nodeClass: string };
    const info = state.engine.objectInfoFor(nodeClass);
    return info ? { [nodeClass]: info } : {};
  });

  add('GET', '/system_stats', async () => ({
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
    devices: await state.devices(),
  }));

  add('GET', '/embeddings', async () => []);
  // ComfyUI lists the web root's extensions/**/*.js, which a frontend then imports as plugins.
  add('GET', '/extensions', async () => listExtensionScripts(webRoot(state)));
  add('GET', '/features', async () => featureFlags(state));

  add('GET', '/models', async () => {
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

  add('GET', '/models/:folder', async (req, reply) => {
    const { folder } = req.params as { folder: string };
    let dir: string;
    try {
      if (relativeSegments(folder).length !== 1) throw new Error('not a single folder name');
      dir = resolveInside(state.options.modelsDir, [folder]);
    } catch {
      return reply.code(404).send({ error: { type: 'not_found', message: `unknown model folder ${JSON.stringify(folder)}`, details: '', extra_info: {} } });
    }
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
      return reply.code(404).send({ error: { type: 'not_found', message: `unknown model folder ${JSON.stringify(folder)}`, details: '', extra_info: {} } });
    }
    return listModelFiles(dir);
  });

  add('POST', '/free', async (req, reply) => {
    const body = asObject(req.body);
    state.free(body.unload_models === true, body.free_memory === true);
    return emptyOk(reply);
  });
}
