// The fastify application: body parsers that accept what real ComfyUI clients send, the
// loopback origin check (or CORS headers), one error shape, and every route registered at both
// `/x` and `/api/x`. Routes live in routes/*.ts; state (queue, history, hub, engine) in ServerState.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type RouteHandlerMethod } from 'fastify';
import { stringifyJson } from '../../engine/json.ts';
import { BodyError, parseJsonBody } from './body.ts';
import type { ServerState } from './state.ts';
import { registerFileRoutes } from './routes/files.ts';
import { registerInfoRoutes } from './routes/info.ts';
import { registerInternalRoutes } from './routes/internal.ts';
import { registerJobRoutes } from './routes/jobs.ts';
import { registerPromptRoutes } from './routes/prompt.ts';
import { registerStaticRoutes } from './routes/static.ts';
import { registerTemplateRoutes } from './routes/templates.ts';
import { registerUserRoutes } from './routes/users.ts';
import { registerWorkflowRoutes } from './routes/workflows.ts';

export type Method = 'GET' | 'POST' | 'DELETE' | 'PATCH' | 'PUT';

/** Registers a route at `path` and at `/api${path}`, as ComfyUI does for every API route. */
export type AddRoute = (method: Method, path: string, handler: RouteHandlerMethod, opts?: { bodyLimit?: number }) => void;

const LOOPBACK = /^(localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]|::1)$/i;

function hostnameOf(hostHeader: string): string {
  if (hostHeader.startsWith('[')) return hostHeader.slice(0, hostHeader.indexOf(']') + 1);
  return hostHeader.replace(/:\d+$/, '');
}

/**
 * ComfyUI's CSRF guard: on a loopback Host, a browser request whose Origin names another host
 * (or that is marked cross-site) is refused. Returns true when the request must be rejected.
 */
export function isCrossOriginOnLoopback(headers: Record<string, string | string[] | undefined>): boolean {
  const host = String(headers.host ?? '').toLowerCase();
  if (!LOOPBACK.test(hostnameOf(host))) return false;
  if (headers['sec-fetch-site'] === 'cross-site') return true;
  const origin = headers.origin;
  if (typeof origin !== 'string' || origin === '') return false;
  let originHost: string;
  try {
    originHost = new URL(origin).host.toLowerCase();
  } catch {
    return true;
  }
  return originHost !== host;
}

export function buildApp(state: ServerState): FastifyInstance {
  const { options } = state;
  const app = Fastify({
    logger: options.logger,
    bodyLimit: options.maxJsonBytes,
    // Slow or stuck clients must not hold sockets for ever.
    requestTimeout: 120_000,
    // Query strings and paths are attacker-controlled; keep them bounded.
    routerOptions: { maxParamLength: 1000 },
    forceCloseConnections: true,
    // The router's own refusals (a malformed %-escape, an over-long parameter) would otherwise
    // answer in fastify's shape ({statusCode, code: FST_ERR_BAD_URL, ...}).
    frameworkErrors: (err, _req, rawReply) => {
      const reply = rawReply as FastifyReply;
      const e = err as Error & { code?: string };
      const status = e.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : 400;
      const type = e.code === 'FST_ERR_BAD_URL' ? 'invalid_url' : e.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'url_too_long' : 'bad_request';
      void reply.code(status).send({ error: { type, message: e.message, details: '', extra_info: {} }, node_errors: {} });
    },
  });
  // Prompts, history and object_info may hold integers beyond 2^53 as BigInt (seeds up to
  // 2^64 - 1), which JSON.stringify refuses; they go out as exact digits.
  app.setReplySerializer((payload) => stringifyJson(payload));

  // --- body parsers -------------------------------------------------------------------
  app.removeAllContentTypeParsers();
  const jsonParser = (_req: FastifyRequest, body: string, done: (err: Error | null, body?: unknown) => void) => {
    try {
      done(null, parseJsonBody(body));
    } catch (e) {
      done(e as Error);
    }
  };
  app.addContentTypeParser(['application/json', 'text/plain', 'application/x-www-form-urlencoded'], { parseAs: 'string' }, jsonParser);
  // Buffered under the route's limit: the upload routes raise it to --max-upload-size.
  app.addContentTypeParser('multipart/form-data', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  // Anything else: treated as JSON text too (clients that send no or odd content types).
  app.addContentTypeParser('*', { parseAs: 'string' }, jsonParser);

  // --- origin check / CORS ------------------------------------------------------------
  app.addHook('onRequest', async (req, reply) => {
    if (options.corsOrigin !== undefined) {
      reply.header('Access-Control-Allow-Origin', options.corsOrigin);
      reply.header('Access-Control-Allow-Methods', 'POST, GET, DELETE, PUT, OPTIONS, PATCH');
      reply.header('Access-Control-Allow-Headers', 'Content-Type, Authorization');
      reply.header('Access-Control-Allow-Credentials', 'true');
    } else if (isCrossOriginOnLoopback(req.headers)) {
      return reply.code(403).send('');
    }
    if (req.method === 'OPTIONS') return reply.code(200).send('');
  });

  // --- errors: always JSON, never a 500 for a client mistake ---------------------------
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    const status = err instanceof BodyError ? 400 : err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) req.log.error(err);
    const type = err instanceof BodyError ? err.code : (err.code ?? (status >= 500 ? 'server_error' : 'bad_request'));
    const message = status >= 500 ? 'Internal server error' : err.message;
    void reply.code(status).send({ error: { type, message, details: message, extra_info: {} }, node_errors: {} });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: { type: 'not_found', message: `no route for ${req.method} ${req.url.split('?')[0]}`, details: '', extra_info: {} } });
  });

  const add: AddRoute = (method, path, handler, opts) => {
    for (const p of [path, `/api${path}`]) app.route({ method, url: p, handler, bodyLimit: opts?.bodyLimit });
  };
  registerPromptRoutes(add, state);
  registerInfoRoutes(add, state);
  registerFileRoutes(add, state);
  registerWorkflowRoutes(add, state);
  // What ComfyUI's own frontend needs besides the API above (--front-end-root).
  registerUserRoutes(app, add, state);
  registerJobRoutes(add, state);
  registerTemplateRoutes(app, add, state);
  registerInternalRoutes(app, add, state);
  registerStaticRoutes(app, state);
  return app;
}

/** An empty 200, which ComfyUI answers for POST /queue, /history, /interrupt, /free. */
export function emptyOk(reply: FastifyReply): FastifyReply {
  return reply.code(200).header('content-type', 'text/plain; charset=utf-8').send('');
}
