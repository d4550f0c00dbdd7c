// The fastify application: body parsers that accept what real ComfyUI clients send, the
// loopback origin check (or CORS headers), zod schemas compiled for every route (schema.ts), one
// error shape (errors.ts), and the route plugins of routes/*.ts, each registered at `/x` and at
// `/api/x`. State (queue, history, hub, execution host) lives in ServerState.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { stringifyJson } from '../../engine/json.ts';
import { parseJsonBody } from './body.ts';
import { comfyError, handleError, sendNotFound } from './errors.ts';
import { API_PREFIXES } from './http.ts';
import { zodSerializerCompiler, zodValidatorCompiler } from './schema.ts';
import type { ServerState } from './state.ts';
import { fileRoutes } from './routes/files.ts';
import { infoRoutes } from './routes/info.ts';
import { internalRoutes, internalUnprefixedRoutes } from './routes/internal.ts';
import { jobRoutes } from './routes/jobs.ts';
import { promptRoutes } from './routes/prompt.ts';
import { staticRoutes } from './routes/static.ts';
import { templateFileRoutes, templateRoutes } from './routes/templates.ts';
import { userRoutes } from './routes/users.ts';
import { workflowRoutes } from './routes/workflows.ts';

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
      void reply.code(status).send(comfyError(type, e.message, { nodeErrors: {} }));
    },
  });
  app.setValidatorCompiler(zodValidatorCompiler);
  app.setSerializerCompiler(zodSerializerCompiler);
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
  app.setErrorHandler(handleError);
  app.setNotFoundHandler((req, reply) => {
    void sendNotFound(reply, `no route for ${req.method} ${req.url.split('?')[0]}`);
  });

  for (const prefix of API_PREFIXES) {
    for (const plugin of [promptRoutes, infoRoutes, fileRoutes, workflowRoutes, userRoutes, jobRoutes, templateRoutes, internalRoutes]) {
      void app.register(plugin, { prefix, state });
    }
  }
  // Not under /api, as in ComfyUI: template files next to the frontend's, /internal/*, and `/`.
  void app.register(templateFileRoutes, { state });
  void app.register(internalUnprefixedRoutes, { state });
  void app.register(staticRoutes, { state });
  return app;
}
