// The fastify application: body parsers that accept what real ComfyUI clients send, the
// loopback origin check (or CORS headers), one error shape, and every route registered at both
// `/x` and `/api/x`. Routes live in routes/*.ts; state (queue, history, hub, engine) in ServerState.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type RouteHandlerMethod } from 'fastify';
import { BodyError, parseJsonBody } from './body.ts';
import type { ServerState } from './state.ts';
import { registerFileRoutes } from './routes/files.ts';
import { registerInfoRoutes } from './routes/info.ts';
import { registerPromptRoutes } from './routes/prompt.ts';
import { registerStaticRoutes } from './routes/static.ts';
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
  });

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
    const type = err instanceof BodyError ? err.code : (err.code ?? 'server_error');
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
  registerStaticRoutes(app, state);
  return app;
}

/** An empty 200, which ComfyUI answers for POST /queue, /history, /interrupt, /free. */
export function emptyOk(reply: FastifyReply): FastifyReply {
  return reply.code(200).header('content-type', 'text/plain; charset=utf-8').send('');
}
