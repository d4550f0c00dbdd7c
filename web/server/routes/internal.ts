// The rest of what ComfyUI's frontend calls at start-up and from its side panels, answered as
// ComfyUI answers when there is nothing more to report: /i18n (custom-node translations: none),
// /global_subgraphs (subgraph blueprints: none), /experiment/models[/{folder}] (the model
// library), /view_metadata/{folder} (a safetensors file's __metadata__), and the /internal/*
// routes of its terminal and settings panels (logs, log subscription, folder paths).
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { emptyOk, type AddRoute } from '../app.ts';
import { asObject } from '../body.ts';
import { logRingFor } from '../logs.ts';
import type { ServerState } from '../state.ts';
import { relativeSegments, resolveInside } from '../../../nodes/image/paths.ts';
import { walkSorted } from '../walk.ts';

/** ComfyUI's folder_paths.supported_pt_extensions: what the model library lists. */
const MODEL_EXTENSIONS = new Set(['.ckpt', '.pt', '.pt2', '.bin', '.pth', '.safetensors', '.pkl', '.sft']);
/** comfy.utils.safetensors_header's max_size for /view_metadata. */
const MAX_HEADER_BYTES = 1024 * 1024;
const MAX_MODEL_FILES = 10_000;
const MAX_LOG_SUBSCRIBERS = 1000;

/** Model folders: the folders present under --models-dir (as GET /models lists them). */
function modelFolders(modelsDir: string): string[] {
  try {
    return fs
      .readdirSync(modelsDir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

/** The folder's directory when `name` is one of the model folders, else undefined. */
function modelFolder(modelsDir: string, name: string): string | undefined {
  if (!modelFolders(modelsDir).includes(name)) return undefined;
  try {
    return resolveInside(modelsDir, [name]);
  } catch {
    return undefined;
  }
}

/** ComfyUI's recursive_search_models_: model files below `dir`, times in float seconds. */
function modelFiles(root: string, dir: string): Array<{ name: string; pathIndex: number; modified: number; created: number; size: number }> {
  const out: Array<{ name: string; pathIndex: number; modified: number; created: number; size: number }> = [];
  walkSorted(dir, (e, full, depth) => {
    if (out.length >= MAX_MODEL_FILES) return 'stop';
    if (e.name.startsWith('.')) return 'next';
    const rel = path.relative(dir, full).split(path.sep).join('/');
    let st: fs.Stats;
    try {
      // Symlinked model folders are common; ones that lead out of --models-dir are not listed.
      resolveInside(root, [path.relative(root, full).split(path.sep).join('/')]);
      st = fs.statSync(full);
    } catch {
      return 'next';
    }
    if (st.isDirectory()) return depth < 8 ? 'descend' : 'next';
    if (st.isFile() && MODEL_EXTENSIONS.has(path.extname(e.name).toLowerCase())) {
      out.push({ name: rel, pathIndex: 0, modified: st.mtimeMs / 1000, created: st.ctimeMs / 1000, size: st.size });
    }
    return 'next';
  });
  return out;
}

/** The `__metadata__` of a safetensors file, or undefined (unreadable, too big, none). */
export function safetensorsMetadata(file: string): Record<string, unknown> | undefined {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const lenBuf = Buffer.alloc(8);
    if (fs.readSync(fd, lenBuf, 0, 8, 0) !== 8) return undefined;
    const len = lenBuf.readBigUInt64LE(0);
    if (len > BigInt(MAX_HEADER_BYTES)) return undefined;
    const header = Buffer.alloc(Number(len));
    if (fs.readSync(fd, header, 0, header.length, 8) !== header.length) return undefined;
    const parsed = JSON.parse(header.toString('utf8')) as Record<string, unknown>;
    const meta = parsed.__metadata__;
    return typeof meta === 'object' && meta !== null && !Array.isArray(meta) ? (meta as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

// ComfyUI answers these with an empty 404, and the frontend reads a non-empty body as data
// (viewMetadata JSON-parses whatever text comes back), so no JSON error body here.
const emptyNotFound = (reply: FastifyReply) => reply.code(404).header('content-type', 'text/plain; charset=utf-8').send('');

/** What the frontend's terminal sizes itself to; shutil.get_terminal_size's fallback off a TTY. */
function terminalSize(): { cols: number; rows: number } {
  return process.stdout.isTTY ? { cols: process.stdout.columns, rows: process.stdout.rows } : { cols: 80, rows: 24 };
}

export function registerInternalRoutes(app: FastifyInstance, add: AddRoute, state: ServerState): void {
  const modelsDir = () => state.options.modelsDir;

  add('GET', '/i18n', async () => ({}));
  add('GET', '/global_subgraphs', async () => ({}));
  add('GET', '/global_subgraphs/:id', async (_req, reply) => emptyNotFound(reply));

  add('GET', '/experiment/models', async () => modelFolders(modelsDir()).map((name) => ({ name, folders: [path.join(modelsDir(), name)] })));
  add('GET', '/experiment/models/:folder', async (req, reply) => {
    const dir = modelFolder(modelsDir(), (req.params as { folder: string }).folder);
    return dir === undefined ? emptyNotFound(reply) : modelFiles(modelsDir(), dir);
  });

  add('GET', '/view_metadata/:folder', async (req, reply) => {
    const { folder } = req.params as { folder: string };
    const filename = asObject(req.query).filename;
    if (typeof filename !== 'string' || !filename.endsWith('.safetensors')) return emptyNotFound(reply);
    const dir = modelFolder(modelsDir(), folder);
    if (dir === undefined) return emptyNotFound(reply);
    let file: string;
    try {
      relativeSegments(filename);
      file = resolveInside(dir, [filename]);
    } catch {
      return emptyNotFound(reply);
    }
    const meta = safetensorsMetadata(file);
    return meta === undefined ? emptyNotFound(reply) : meta;
  });

  // --- /internal: mounted without the /api prefix, as in ComfyUI --------------------------
  const logs = logRingFor(state);
  const subscribers = new Set<string>();
  logs.onEntry((entry) => {
    for (const sid of subscribers) state.hub.send(sid, { type: 'logs', data: { entries: [entry], size: terminalSize() } });
  });

  app.get('/internal/logs', async (_req, reply) =>
    reply.type('application/json').send(JSON.stringify(logs.list().map((e) => `${e.t} - ${e.m}`).join(''))),
  );
  app.get('/internal/logs/raw', async () => ({ entries: logs.list(), size: terminalSize() }));
  app.patch('/internal/logs/subscribe', async (req, reply) => {
    const body = asObject(req.body);
    if (typeof body.clientId !== 'string' || typeof body.enabled !== 'boolean') {
      return reply.code(400).send({ error: { type: 'bad_request', message: 'expected {"clientId": string, "enabled": boolean}', details: '', extra_info: {} } });
    }
    if (!body.enabled) subscribers.delete(body.clientId);
    else if (subscribers.size < MAX_LOG_SUBSCRIBERS) subscribers.add(body.clientId);
    return emptyOk(reply);
  });
  app.get('/internal/folder_paths', async () => Object.fromEntries(modelFolders(modelsDir()).map((name) => [name, [path.join(modelsDir(), name)]])));
}
