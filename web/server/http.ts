// Reply helpers and the route-plugin contract shared by app.ts and routes/*.ts (kept out of
// app.ts so that no route imports the module that registers it).
import type { FastifyPluginAsync, FastifyReply, RawServerDefault } from 'fastify';
import type { ServerState } from './state.ts';
import type { ZodTypeProvider } from './schema.ts';

/** ComfyUI serves every API route at `/x` and at `/api/x`; each route plugin is registered under both. */
export const API_PREFIXES = ['', '/api'] as const;

export interface RouteOptions {
  state: ServerState;
}

/** A routes/*.ts plugin: registered once per prefix, its schemas are zod types. */
export type RoutePlugin = FastifyPluginAsync<RouteOptions, RawServerDefault, ZodTypeProvider>;

/** An empty 200, which ComfyUI answers for POST /queue, /history, /interrupt, /free. */
export function emptyOk(reply: FastifyReply): FastifyReply {
  return reply.code(200).header('content-type', 'text/plain; charset=utf-8').send('');
}

/** A plain-text answer (ComfyUI's user routes answer web.Response(status=..., text=...)). */
export function textReply(reply: FastifyReply, status: number, body = ''): FastifyReply {
  return reply.code(status).header('content-type', 'text/plain; charset=utf-8').send(body);
}

/** The empty 404 ComfyUI's static routes answer; the frontend only looks at the status. */
export function emptyNotFound(reply: FastifyReply): FastifyReply {
  return textReply(reply, 404);
}
