// The rest of what ComfyUI's frontend calls at start-up and from its side panels, answered as
// ComfyUI answers when there is nothing more to report: /i18n (custom-node translations: none),
// /global_subgraphs (subgraph blueprints: none), /experiment/models[/{folder}] (the model
// library), /view_metadata/{folder} (a safetensors file's __metadata__), and the /internal/*
// routes of its terminal and settings panels (logs, log subscription, folder paths).
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { sendComfyError } from '../errors.ts';
import { emptyNotFound, emptyOk, type RoutePlugin } from '../http.ts';
import { logRingFor } from '../logs.ts';
import { anyValue, invalidAs, objectBody, param } from '../schema.ts';
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

// ComfyUI answers unknown folders and files here with an empty 404, and the frontend reads a
// non-empty body as data (viewMetadata JSON-parses whatever text comes back): no JSON error body.

const SUBSCRIBE_SHAPE = 'expected {"clientId": string, "enabled": boolean}';
const subscribeBody = objectBody({ clientId: z.string({ error: SUBSCRIBE_SHAPE }), enabled: z.boolean({ error: SUBSCRIBE_SHAPE }) });

/** What the frontend's terminal sizes itself to; shutil.get_terminal_size's fallback off a TTY. */
function terminalSize(): { cols: number; rows: number } {
  return process.stdout.isTTY ? { cols: process.stdout.columns, rows: process.stdout.rows } : { cols: 80, rows: 24 };
}

/** The model library and the frontend's start-up extras, under both prefixes. */
export const internalRoutes: RoutePlugin = async (app, { state }) => {
  const modelsDir = () => state.options.modelsDir;

  app.get('/i18n', async () => ({}));
  app.get('/global_subgraphs', async () => ({}));
  app.get('/global_subgraphs/:id', async (_req, reply) => emptyNotFound(reply));

  app.get('/experiment/models', async () => modelFolders(modelsDir()).map((name) => ({ name, folders: [path.join(modelsDir(), name)] })));
  app.get('/experiment/models/:folder', { schema: { params: z.object({ folder: param }) } }, async (req, reply) => {
    const dir = modelFolder(modelsDir(), req.params.folder);
    return dir === undefined ? emptyNotFound(reply) : modelFiles(modelsDir(), dir);
  });

  app.get('/view_metadata/:folder', { schema: { params: z.object({ folder: param }), querystring: z.object({ filename: anyValue }) } }, async (req, reply) => {
    const { folder } = req.params;
    const { filename } = req.query;
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
};

/** /internal/*: mounted once, without the /api prefix, as in ComfyUI. */
export const internalUnprefixedRoutes: RoutePlugin = async (app, { state }) => {
  const modelsDir = () => state.options.modelsDir;
  const logs = logRingFor(state);
  const subscribers = new Set<string>();
  logs.onEntry((entry) => {
    for (const sid of subscribers) state.hub.send(sid, { type: 'logs', data: { entries: [entry], size: terminalSize() } });
  });

  app.get('/internal/logs', async (_req, reply) =>
    reply.type('application/json').send(
      JSON.stringify(
        logs
          .list()
          .map((e) => `${e.t} - ${e.m}`)
          .join(''),
      ),
    ),
  );
  app.get('/internal/logs/raw', async () => ({ entries: logs.list(), size: terminalSize() }));
  app.patch(
    '/internal/logs/subscribe',
    { schema: { body: subscribeBody }, errorHandler: invalidAs((reply, issue) => sendComfyError(reply, 400, 'bad_request', issue.message)) },
    async (req, reply) => {
      const { clientId, enabled } = req.body;
      if (!enabled) subscribers.delete(clientId);
      else if (subscribers.size < MAX_LOG_SUBSCRIBERS) subscribers.add(clientId);
      return emptyOk(reply);
    },
  );
  app.get('/internal/folder_paths', async () => Object.fromEntries(modelFolders(modelsDir()).map((name) => [name, [path.join(modelsDir(), name)]])));
};
