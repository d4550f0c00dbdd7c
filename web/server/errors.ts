// ComfyUI's error object, built in one place. Every JSON error the API answers in ComfyUI's shape
// ({error: {type, message, details, extra_info}} plus node_errors on the routes whose clients read
// it: /prompt, the error handler, the router's refusals) comes from here, so the shape cannot drift
// between routes. Routes whose ComfyUI counterparts answer {error: "text"} or plain text (users,
// jobs, userdata) keep those bodies: the frontend branches on them.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ErrorObject } from '../../engine/index.ts';
import { BodyError } from './body.ts';

export interface ComfyErrorBody {
  error: ErrorObject;
  node_errors?: Record<string, unknown>;
}

export interface ComfyErrorOptions {
  details?: string;
  extraInfo?: Record<string, unknown>;
  /** Present on /prompt's answers (and the generic handlers'), absent elsewhere, as today. */
  nodeErrors?: Record<string, unknown>;
}

export function comfyError(type: string, message: string, opts: ComfyErrorOptions = {}): ComfyErrorBody {
  const body: ComfyErrorBody = { error: { type, message, details: opts.details ?? '', extra_info: opts.extraInfo ?? {} } };
  if (opts.nodeErrors !== undefined) body.node_errors = opts.nodeErrors;
  return body;
}

export function sendComfyError(reply: FastifyReply, status: number, type: string, message: string, opts: ComfyErrorOptions = {}): FastifyReply {
  return reply.code(status).send(comfyError(type, message, opts));
}

/** The 404 of a missing resource: `not_found`, no node_errors. */
export function sendNotFound(reply: FastifyReply, message: string): FastifyReply {
  return sendComfyError(reply, 404, 'not_found', message);
}

/**
 * The app's error handler (and routes' fallback): always JSON, never a 500 for a client mistake.
 * An error with a 4xx statusCode (a bad body, a failed schema, fastify's own refusals) keeps its
 * status and its code as the type; anything else is a logged 500 that tells the client nothing.
 */
export function handleError(err: Error & { statusCode?: number; code?: string }, req: FastifyRequest, reply: FastifyReply): void {
  const status = err instanceof BodyError ? 400 : err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
  // 503: a dependency is down (Redis, for a cluster front end); its message says which and is
  // what the client needs. Other 5xx tell the client nothing.
  const unavailable = status === 503;
  if (status >= 500 && !unavailable) req.log.error(err);
  const type = err instanceof BodyError ? err.code : (err.code ?? (status >= 500 ? 'server_error' : 'bad_request'));
  const message = status >= 500 && !unavailable ? 'Internal server error' : err.message;
  if (unavailable) void reply.header('Retry-After', '5');
  void sendComfyError(reply, status, type, message, { details: message, nodeErrors: {} });
}
