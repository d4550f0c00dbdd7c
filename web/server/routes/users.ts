// ComfyUI's per-user storage (app/user_manager.py, app/app_settings.py), which its own frontend
// needs to start: GET/POST /users, /settings[/{id}], /userdata (list, read, write, delete, move)
// and /v2/userdata. Files live in <user-dir>/<user>/; single-user mode (the default) always uses
// the user "default" and ignores the Comfy-User header, as ComfyUI does without --multi-user.
// Status codes and plain-text bodies follow ComfyUI, because the frontend branches on them
// (a 404 listing is "no workflows yet", a 409 is "file exists").
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { asObject } from '../body.ts';
import { emptyOk, textReply as text, type RoutePlugin } from '../http.ts';
import { anyValue, invalidAs, objectBody, param, queryFlag, stringOrEmpty } from '../schema.ts';
import type { ServerState } from '../state.ts';
import { contentTypeFor } from './files.ts';
import { createFileAtomic, resolveInside, writeFileAtomic } from '../../../nodes/image/paths.ts';
import { walkSorted } from '../walk.ts';

const DEFAULT_USER = 'default';
/** ComfyUI's folder_paths.SYSTEM_USER_PREFIX: users that no request may act as. */
const SYSTEM_USER_PREFIX = '__';
/** Folders of <user-dir> that belong to the server, never to a user of that name. */
const RESERVED_USER_DIRS = new Set(['history']);
const SETTINGS_FILE = 'comfy.settings.json';
const MAX_LISTED = 10_000;

class UnknownUserError extends Error {}

/** The users known to the server and the folder each one's files live in. */
export class UserStore {
  private users: Record<string, string>;

  constructor(
    private readonly userDir: string,
    readonly multiUser: boolean,
  ) {
    this.users = multiUser ? this.readUsersFile() : { [DEFAULT_USER]: DEFAULT_USER };
  }

  private get usersFile(): string {
    return path.join(this.userDir, 'users.json');
  }

  private readUsersFile(): Record<string, string> {
    try {
      const parsed = JSON.parse(fs.readFileSync(this.usersFile, 'utf8')) as unknown;
      const out: Record<string, string> = {};
      for (const [id, name] of Object.entries(asObject(parsed))) if (typeof name === 'string' && isUsableUserId(id)) out[id] = name;
      return out;
    } catch {
      return {};
    }
  }

  list(): Record<string, string> {
    return { ...this.users };
  }

  /** The user a request acts as; throws UnknownUserError (same message for every refusal). */
  requestUser(req: FastifyRequest): string {
    let user = DEFAULT_USER;
    const header = req.headers['comfy-user'];
    if (this.multiUser && typeof header === 'string') user = header;
    if (!Object.hasOwn(this.users, user) || !isUsableUserId(user)) throw new UnknownUserError(`Unknown user: ${user}`);
    return user;
  }

  root(user: string): string {
    return path.join(this.userDir, user);
  }

  /** ComfyUI's add_user: a sanitised name plus a UUID, persisted to <user-dir>/users.json. */
  add(name: string): string {
    const trimmed = name.trim();
    if (!trimmed) throw new Error('username not provided');
    if (trimmed.startsWith(SYSTEM_USER_PREFIX)) throw new Error('System User prefix not allowed');
    const base = trimmed.replace(/[^a-zA-Z0-9\-_]+/g, '-');
    if (base.startsWith(SYSTEM_USER_PREFIX)) throw new Error('System User prefix not allowed');
    const id = `${base}_${randomUUID()}`;
    this.users[id] = trimmed;
    fs.mkdirSync(this.userDir, { recursive: true });
    writeFileAtomic(this.usersFile, JSON.stringify(this.users));
    return id;
  }
}

function isUsableUserId(id: string): boolean {
  return /^[A-Za-z0-9_-]{1,200}$/.test(id) && !id.startsWith(SYSTEM_USER_PREFIX) && !RESERVED_USER_DIRS.has(id);
}

const stores = new WeakMap<ServerState, UserStore>();

export function userStoreFor(state: ServerState): UserStore {
  let s = stores.get(state);
  if (!s) {
    s = new UserStore(state.options.userDir, state.options.multiUser);
    stores.set(state, s);
  }
  return s;
}

/** ComfyUI's get_file_info: times in integer milliseconds, path relative to `relativeTo`. */
function fileInfo(file: string, relativeTo: string, st = fs.statSync(file)) {
  return { path: path.relative(relativeTo, file).split(path.sep).join('/'), size: st.size, modified: Math.trunc(st.mtimeMs), created: Math.trunc(st.ctimeMs) };
}

/** Route parameter as ComfyUI reads it: decoded once more when it still holds a '%'. */
function decodedParam(raw: string | undefined): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

type Resolved = { ok: true; user: string; root: string; file: string } | { ok: false; status: number; message: string };

/** The absolute path of `rel` inside the request user's folder, or the status to answer. */
function resolveUserPath(users: UserStore, req: FastifyRequest, rel: string | undefined, allowRoot = false): Resolved {
  let user: string;
  try {
    user = users.requestUser(req);
  } catch (e) {
    return { ok: false, status: 403, message: (e as Error).message };
  }
  const root = users.root(user);
  if (rel === undefined) return { ok: true, user, root, file: root };
  try {
    return { ok: true, user, root, file: resolveInside(root, [rel], allowRoot) };
  } catch {
    return { ok: false, status: 403, message: 'Invalid path' };
  }
}

/**
 * Files under `dir` (recursively when asked), skipping dot-names as ComfyUI's glob does, and
 * symlinks that lead outside the user's folder. Paths are absolute.
 */
function listFiles(root: string, dir: string, recurse: boolean): string[] {
  const out: string[] = [];
  walkSorted(dir, (e, full) => {
    if (out.length >= MAX_LISTED) return 'stop';
    if (e.name.startsWith('.')) return 'next';
    if (e.isSymbolicLink()) {
      try {
        resolveInside(root, [path.relative(root, full).split(path.sep).join('/')]);
      } catch {
        return 'next';
      }
    }
    let st: fs.Stats;
    try {
      st = fs.statSync(full);
    } catch {
      return 'next';
    }
    if (st.isFile()) out.push(full);
    return st.isDirectory() && recurse && !e.isSymbolicLink() ? 'descend' : 'next';
  });
  return out;
}

// --- schemas ---------------------------------------------------------------------------------

const newUserBody = objectBody({ username: z.string({ error: 'username not provided' }) });
const settingsBody = z.record(z.string(), z.unknown(), { error: 'settings must be a JSON object' });
const settingIdParams = z.object({ id: param.refine((id) => id !== '', '') });
const listQuery = z.object({
  dir: anyValue.refine((d) => typeof d === 'string' && d !== '', 'Directory not provided').transform((d) => d as string),
  recurse: queryFlag,
  full_info: queryFlag,
  split: queryFlag,
});
const v2ListQuery = z.object({ path: stringOrEmpty });
/** `overwrite` is true unless exactly "false", as in ComfyUI. */
const writeQuery = z.object({ overwrite: anyValue.transform((v) => v !== 'false'), full_info: queryFlag });
const fileParams = z.object({ file: param });
const moveParams = z.object({ file: param, dest: param });

/** ComfyUI's user routes refuse bad input with a plain-text 400 (the frontend shows the text). */
const textInvalid = invalidAs((reply, issue) => text(reply, 400, issue.message));

export const userRoutes: RoutePlugin = async (app, { state }) => {
  const users = userStoreFor(state);

  // --- users -----------------------------------------------------------------------------
  app.get('/users', async (req, reply) => {
    if (users.multiUser) return { storage: 'server', users: users.list() };
    const r = resolveUserPath(users, req, undefined);
    if (!r.ok) return text(reply, r.status, r.message);
    // "migrated": the frontend copies its browser-stored settings to the server when false.
    return { storage: 'server', migrated: fs.existsSync(r.root) };
  });

  app.post(
    '/users',
    { schema: { body: newUserBody }, errorHandler: invalidAs((reply, issue) => reply.code(400).send({ error: issue.message })) },
    async (req, reply) => {
      const { username } = req.body;
      if (Object.values(users.list()).includes(username)) return reply.code(400).send({ error: 'Duplicate username.' });
      try {
        return reply.type('application/json').send(JSON.stringify(users.add(username)));
      } catch (e) {
        return reply.code(400).send({ error: (e as Error).message });
      }
    },
  );

  // --- settings ----------------------------------------------------------------------------
  const settingsPath = (req: FastifyRequest): string | undefined => {
    const r = resolveUserPath(users, req, SETTINGS_FILE);
    return r.ok ? r.file : undefined;
  };
  const readSettings = (file: string): Record<string, unknown> => {
    try {
      return asObject(JSON.parse(fs.readFileSync(file, 'utf8')));
    } catch {
      // Missing or corrupt: ComfyUI starts from empty settings rather than failing the frontend.
      return {};
    }
  };
  const writeSettings = (file: string, settings: Record<string, unknown>) => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    writeFileAtomic(file, JSON.stringify(settings, null, 4));
  };

  // An unknown user is a 401 before anything about the request is checked.
  const settingsFile = (req: FastifyRequest): string => {
    const file = settingsPath(req);
    if (file === undefined) throw new Error('settingsFile() before the user check');
    return file;
  };
  const knownUser = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!settingsPath(req)) return text(reply, 401, 'Unauthorized');
  };

  app.get('/settings', { preValidation: knownUser }, async (req) => readSettings(settingsFile(req)));
  app.get('/settings/:id', { preValidation: knownUser, schema: { params: z.object({ id: param }) } }, async (req, reply) => {
    const { id } = req.params;
    const settings = readSettings(settingsFile(req));
    return reply.type('application/json').send(JSON.stringify(Object.hasOwn(settings, id) ? settings[id] : null));
  });
  app.post('/settings', { preValidation: knownUser, schema: { body: settingsBody }, errorHandler: textInvalid }, async (req, reply) => {
    const file = settingsFile(req);
    writeSettings(file, { ...readSettings(file), ...req.body });
    return emptyOk(reply);
  });
  app.post('/settings/:id', { preValidation: knownUser, schema: { params: settingIdParams }, errorHandler: textInvalid }, async (req, reply) => {
    const file = settingsFile(req);
    const settings = readSettings(file);
    settings[req.params.id] = req.body;
    writeSettings(file, settings);
    return emptyOk(reply);
  });

  // --- userdata ----------------------------------------------------------------------------
  app.get('/userdata', { schema: { querystring: listQuery }, errorHandler: textInvalid }, async (req, reply) => {
    const { dir, full_info: fullInfo, split, recurse } = req.query;
    const r = resolveUserPath(users, req, dir, true);
    if (!r.ok) return text(reply, 403, 'Invalid directory');
    if (!fs.existsSync(r.file)) return text(reply, 404, 'Directory not found');
    return listFiles(r.root, r.file, recurse).map((f) => {
      if (fullInfo) return fileInfo(f, r.file);
      const rel = path.relative(r.file, f).split(path.sep).join('/');
      return split ? [rel, ...rel.split('/')] : rel;
    });
  });

  app.get('/v2/userdata', { schema: { querystring: v2ListQuery } }, async (req, reply) => {
    const rel = req.query.path;
    const base = resolveUserPath(users, req, undefined);
    if (!base.ok) return text(reply, 403, 'Invalid user specified in request');
    const r = rel ? resolveUserPath(users, req, rel, true) : base;
    if (!r.ok) return text(reply, 400, 'Invalid path requested');
    if (!fs.existsSync(r.file)) return r.file === base.root ? [] : text(reply, 404, 'Requested path not found');
    if (!fs.statSync(r.file).isDirectory()) return text(reply, 400, 'Requested path is not a directory');
    // os.walk semantics: everything below, hidden names included, symlinked folders not entered.
    const out: Array<{ name: string; path: string; type: 'file' | 'directory'; size?: number; modified?: number }> = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (out.length >= MAX_LISTED) return;
        const full = path.join(d, e.name);
        const relPath = path.relative(base.root, full).split(path.sep).join('/');
        if (e.isDirectory()) {
          out.push({ name: e.name, path: relPath, type: 'directory' });
          walk(full);
        } else if (e.isFile() || e.isSymbolicLink()) {
          try {
            resolveInside(base.root, [relPath]);
            const st = fs.statSync(full);
            if (st.isDirectory()) out.push({ name: e.name, path: relPath, type: 'directory' });
            else out.push({ name: e.name, path: relPath, type: 'file', size: st.size, modified: st.mtimeMs / 1000 });
          } catch {
            // A link leading out of the user's folder (or a dangling one) is not listed.
          }
        }
      }
    };
    walk(r.file);
    out.sort(
      (a, b) =>
        Number(a.type !== 'directory') - Number(b.type !== 'directory') ||
        (a.name.toLowerCase() < b.name.toLowerCase() ? -1 : a.name.toLowerCase() > b.name.toLowerCase() ? 1 : 0),
    );
    return out;
  });

  const fileParam = (req: FastifyRequest, reply: FastifyReply, value: string, mustExist: boolean): Extract<Resolved, { ok: true }> | undefined => {
    const raw = decodedParam(value);
    if (raw === undefined) {
      void text(reply, 400);
      return undefined;
    }
    const r = resolveUserPath(users, req, raw);
    if (!r.ok) {
      void text(reply, r.status, r.message);
      return undefined;
    }
    if (mustExist && !fs.existsSync(r.file)) {
      void text(reply, 404);
      return undefined;
    }
    return r;
  };

  app.get('/userdata/:file', { schema: { params: fileParams } }, async (req, reply) => {
    const r = fileParam(req, reply, req.params.file, true);
    if (!r) return reply;
    const st = fs.statSync(r.file);
    if (!st.isFile()) return text(reply, 404);
    const isUserCss = r.file === path.join(r.root, 'user.css');
    // User files are arbitrary content served from the app's origin: never rendered inline
    // (ComfyUI's stored-XSS guard), except the user.css the frontend links as a stylesheet.
    let type = isUserCss ? 'text/css' : contentTypeFor(r.file);
    if (type === 'image/svg+xml') type = 'application/octet-stream';
    return reply
      .type(type)
      .header('X-Content-Type-Options', 'nosniff')
      .header('Content-Disposition', isUserCss ? 'inline' : 'attachment')
      .header('content-length', st.size)
      .send(fs.createReadStream(r.file));
  });

  app.delete('/userdata/:file', { schema: { params: fileParams } }, async (req, reply) => {
    const r = fileParam(req, reply, req.params.file, true);
    if (!r) return reply;
    if (!fs.lstatSync(r.file).isFile() && !fs.lstatSync(r.file).isSymbolicLink()) return text(reply, 400, 'Not a file');
    fs.rmSync(r.file);
    return reply.code(204).send();
  });

  const respondWithPath = (reply: FastifyReply, file: string, root: string, fullInfo: boolean) =>
    reply.type('application/json').send(JSON.stringify(fullInfo ? fileInfo(file, root) : path.relative(root, file).split(path.sep).join('/')));

  // Written as raw bytes whatever the content type: the frontend stores JSON workflows, but also
  // user.css and other files, and a re-serialised JSON would not be the file it sent.
  const postUserdata = async (req: FastifyRequest<{ Params: z.output<typeof fileParams>; Querystring: z.output<typeof writeQuery> }>, reply: FastifyReply) => {
    const r = fileParam(req, reply, req.params.file, false);
    if (!r) return reply;
    const q = req.query;
    const data = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    try {
      fs.mkdirSync(path.dirname(r.file), { recursive: true });
      // The folder just created may be a symlink swapped in meanwhile: check again.
      resolveInside(r.root, [path.relative(r.root, r.file).split(path.sep).join('/')]);
      if (q.overwrite) writeFileAtomic(r.file, data);
      else if (!createFileAtomic(r.file, data)) return text(reply, 409, 'File already exists');
    } catch (e) {
      if ((e as Error).name === 'UnsafePathError') return text(reply, 403, 'Invalid path');
      return text(reply, 400, `Invalid filename: ${(e as Error).message}`);
    }
    return respondWithPath(reply, r.file, r.root, q.full_info);
  };

  const moveUserdata = async (req: FastifyRequest<{ Params: z.output<typeof moveParams>; Querystring: z.output<typeof writeQuery> }>, reply: FastifyReply) => {
    const src = fileParam(req, reply, req.params.file, true);
    if (!src) return reply;
    const dest = fileParam(req, reply, req.params.dest, false);
    if (!dest) return reply;
    const q = req.query;
    if (!q.overwrite && fs.existsSync(dest.file)) return text(reply, 409, 'File already exists');
    try {
      fs.mkdirSync(path.dirname(dest.file), { recursive: true });
      resolveInside(dest.root, [path.relative(dest.root, dest.file).split(path.sep).join('/')]);
      fs.renameSync(src.file, dest.file);
    } catch (e) {
      if ((e as Error).name === 'UnsafePathError') return text(reply, 403, 'Invalid path');
      return text(reply, 400, `Cannot move: ${(e as Error).message}`);
    }
    state.log.info(`userdata: moved ${path.relative(src.root, src.file)} -> ${path.relative(dest.root, dest.file)}`);
    return respondWithPath(reply, dest.file, dest.root, q.full_info);
  };

  // These two take the body as bytes, so they live in a child context with its own parser
  // (the app's parsers read every body as JSON).
  await app.register(async (child) => {
    child.removeAllContentTypeParsers();
    child.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    child.post('/userdata/:file', { bodyLimit: state.options.maxUploadBytes, schema: { params: fileParams, querystring: writeQuery } }, postUserdata);
    child.post('/userdata/:file/move/:dest', { schema: { params: moveParams, querystring: writeQuery } }, moveUserdata);
  });
};
