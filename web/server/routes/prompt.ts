// Job routes: POST/GET /prompt, GET/POST /queue, POST /interrupt, GET/POST /history,
// GET /history/{id} (shared/spec/comfyui-api.md §1.1-1.6).
import { randomUUID } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import { z } from 'zod';
import { comfyError, sendComfyError } from '../errors.ts';
import { emptyOk, type RoutePlugin } from '../http.ts';
import type { Job } from '../queue.ts';
import { BackendUnavailableError, PromptIdInUseError } from '../backend.ts';
import { anyValue, fail, invalidAs, jsonTrue, objectBody, objectOrEmpty, optNonEmptyString, optString, optStringList, param, paramsOf } from '../schema.ts';

const SENSITIVE_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org'];
/** Longest client-chosen prompt_id kept (longer ones are replaced by a fresh UUID). */
const MAX_PROMPT_ID = 200;
/** Retry-After (seconds) when the queue is full. */
const QUEUE_FULL_RETRY_S = 5;
/** Retry-After (seconds) when the cluster's Redis is away (as errors.ts sends for every 503). */
const UNAVAILABLE_RETRY_S = 5;

/** /prompt's refusals: ComfyUI's error object and (empty) node_errors, 400. */
function promptError(reply: FastifyReply, type: string, message: string, details: string, nodeErrors: Record<string, unknown> = {}) {
  return sendComfyError(reply, 400, type, message, { details, nodeErrors });
}

/** POST /prompt's body. Failures carry the ComfyUI error type and details for promptError. */
function promptBody(maxNodes: number) {
  return objectBody({
    prompt: anyValue.transform((p, ctx) => {
      if (p === undefined || p === null) return fail(ctx, 'No prompt provided', { type: 'no_prompt', details: 'No prompt provided' });
      if (typeof p !== 'object' || Array.isArray(p)) {
        return fail(ctx, 'Prompt must be an object keyed by node id', {
          type: 'invalid_prompt',
          details: `received ${Array.isArray(p) ? 'an array' : typeof p}`,
        });
      }
      const nodeCount = Object.keys(p).length;
      if (nodeCount > maxNodes)
        return fail(ctx, `Prompt has too many nodes (${nodeCount} > ${maxNodes})`, { type: 'invalid_prompt', details: `${nodeCount} nodes` });
      return p as Record<string, unknown>;
    }),
    // ComfyUI: absent or null runs every output; a list keeps the output nodes named in it
    // (ids that are not output nodes are ignored; none left is prompt_no_outputs).
    partial_execution_targets: anyValue.transform((t, ctx) => {
      if (t === undefined || t === null) return undefined;
      if (!Array.isArray(t))
        return fail(ctx, 'partial_execution_targets must be a list of node ids or null', { type: 'invalid_prompt', details: `received ${typeof t}` });
      return t.filter((x): x is string => typeof x === 'string');
    }),
    prompt_id: anyValue.transform((v) => (typeof v === 'string' && v !== '' && v.length <= MAX_PROMPT_ID ? v : undefined)),
    client_id: optNonEmptyString,
    extra_data: objectOrEmpty,
    // Python clients send numbers as strings; anything else is "no number" (the next one).
    number: anyValue.transform((n) =>
      typeof n === 'number' && Number.isFinite(n) ? n : typeof n === 'string' && n.trim() !== '' && Number.isFinite(Number(n)) ? Number(n) : undefined,
    ),
    front: anyValue.transform((f) => f === true || f === 'true'),
  });
}

function promptIdInUse(reply: FastifyReply, promptId: string, where: string) {
  return reply.code(400).send(
    comfyError('prompt_id_in_use', `prompt_id '${promptId}' is already ${where}`, {
      details: 'Use a new prompt_id, or leave it out to get a fresh one.',
      extraInfo: { prompt_id: promptId, state: where },
      nodeErrors: {},
    }),
  );
}

const queueOps = objectBody({ clear: jsonTrue, delete: optStringList });

/** ?max_items / ?offset: absent or '' is none; else a signed integer of at most 9 digits. */
const intQuery = anyValue.transform((v, ctx) => {
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string' || !/^-?\d{1,9}$/.test(v)) return fail(ctx, 'max_items and offset must be integers (max_items >= 0)');
  return Number(v);
});
const historyQuery = z
  .object({ max_items: intQuery, offset: intQuery })
  .refine((q) => q.max_items === undefined || q.max_items >= 0, 'max_items and offset must be integers (max_items >= 0)');

export const promptRoutes: RoutePlugin = async (app, { state }) => {
  const { backend, options } = state;
  const { history } = backend;

  app.get('/prompt', async () => state.statusPayload(await backend.remaining()).status);

  app.post(
    '/prompt',
    {
      schema: { body: promptBody(options.maxPromptNodes) },
      errorHandler: invalidAs((reply, issue) => {
        const { type, details } = paramsOf(issue);
        return promptError(reply, String(type ?? 'invalid_prompt'), issue.message, String(details ?? ''));
      }),
    },
    async (req, reply) => {
      const body = req.body;
      const requestedId = body.prompt_id;
      const promptId = requestedId ?? randomUUID();
      try {
        return await submit(body, requestedId, promptId, reply);
      } catch (e) {
        if (!(e instanceof BackendUnavailableError)) throw e;
        // The client needs the id and the prompt's fate: a 503 before the queue write queued
        // nothing; one cut mid-write says whether it was queued (possibly "unknown").
        return reply
          .code(503)
          .header('Retry-After', String(UNAVAILABLE_RETRY_S))
          .send(
            comfyError('backend_unavailable', e.message, { details: e.message, extraInfo: { prompt_id: promptId, queued: e.queued ?? false }, nodeErrors: {} }),
          );
      }
    },
  );

  async function submit(body: z.infer<ReturnType<typeof promptBody>>, requestedId: string | undefined, promptId: string, reply: FastifyReply) {
    if ((await backend.remaining()) >= options.maxQueue) {
      // 429, not 503: the server is healthy, this client should come back later.
      return reply
        .code(429)
        .header('Retry-After', String(QUEUE_FULL_RETRY_S))
        .send(
          comfyError('queue_full', `The queue is full (${options.maxQueue} jobs)`, {
            details: 'Retry later',
            extraInfo: { max_queue: options.maxQueue },
            nodeErrors: {},
          }),
        );
    }
    // A reused id would make /history/{id} and the client's events ambiguous, and replace the
    // earlier job's history entry. Checked before validation (cheap answer first) and again,
    // atomically, by enqueue (another front end may take the id meanwhile).
    const where = requestedId === undefined ? undefined : await backend.promptIdState(requestedId);
    if (where !== undefined) return promptIdInUse(reply, requestedId!, where);
    // LoadImage's choices: a file uploaded through another front end counts at once.
    await state.refreshInputFiles();
    const v = state.engine.validate(body.prompt, body.partial_execution_targets);
    if (!v.ok) return reply.code(400).send({ error: v.error, node_errors: v.nodeErrors });

    const extra = { ...body.extra_data };
    const sensitive: Record<string, unknown> = {};
    for (const k of SENSITIVE_KEYS) {
      if (k in extra) {
        sensitive[k] = extra[k];
        delete extra[k];
      }
    }
    if (body.client_id !== undefined) extra.client_id = body.client_id;
    extra.create_time = Date.now();
    const job: Job = {
      number: await backend.nextNumber(body.number, body.front),
      promptId,
      prompt: v.prompt,
      extraData: extra,
      outputs: v.outputs,
      sensitive,
      clientId: typeof extra.client_id === 'string' ? extra.client_id : undefined,
    };
    try {
      await backend.enqueue(job, body.front);
    } catch (e) {
      if (e instanceof PromptIdInUseError) return promptIdInUse(reply, e.promptId, e.state);
      throw e;
    }
    return { prompt_id: promptId, number: job.number, node_errors: v.nodeErrors };
  }

  app.get('/queue', async () => backend.snapshot());

  app.post('/queue', { schema: { body: queueOps } }, async (req, reply) => {
    if (req.body.clear) await backend.clearPending();
    if (req.body.delete !== undefined) await backend.deletePending(req.body.delete);
    return emptyOk(reply);
  });

  app.post('/interrupt', { schema: { body: objectBody({ prompt_id: optString }) } }, async (req, reply) => {
    await backend.interrupt(req.body.prompt_id);
    return emptyOk(reply);
  });

  app.get(
    '/history',
    {
      schema: { querystring: historyQuery },
      errorHandler: invalidAs((reply, issue) => sendComfyError(reply, 400, 'invalid_parameter', issue.message)),
    },
    async (req) => history.list(req.query.max_items, req.query.offset),
  );

  // A wildcard, not a :param: a parameter over the router's maxParamLength would fall through
  // to the static handler; any id is answered here ({} when unknown, as ComfyUI does).
  app.get('/history/*', { schema: { params: z.object({ '*': param }) } }, async (req) => {
    const promptId = req.params['*'];
    const entry = promptId.length <= MAX_PROMPT_ID ? await history.get(promptId) : undefined;
    return entry ? { [promptId]: entry } : {};
  });

  app.post('/history', { schema: { body: queueOps } }, async (req, reply) => {
    if (req.body.clear) await history.clear();
    if (req.body.delete !== undefined) await history.delete(req.body.delete);
    return emptyOk(reply);
  });
};
