// Job routes: POST/GET /prompt, GET/POST /queue, POST /interrupt, GET/POST /history,
// GET /history/{id} (spec §1.1-1.6).
import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { emptyOk, type AddRoute } from '../app.ts';
import { asObject } from '../body.ts';
import type { Job } from '../queue.ts';
import type { ServerState } from '../state.ts';

const SENSITIVE_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org'];
/** Longest client-chosen prompt_id kept (longer ones are replaced by a fresh UUID). */
const MAX_PROMPT_ID = 200;
/** Retry-After (seconds) when the queue is full. */
const QUEUE_FULL_RETRY_S = 5;

function promptError(reply: FastifyReply, type: string, message: string, details: string, nodeErrors: Record<string, unknown> = {}) {
  return reply.code(400).send({ error: { type, message, details, extra_info: {} }, node_errors: nodeErrors });
}

function stringList(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function intParam(q: Record<string, unknown>, name: string): number | undefined | 'bad' {
  const v = q[name];
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string' || !/^-?\d{1,9}$/.test(v)) return 'bad';
  return Number(v);
}

export function registerPromptRoutes(add: AddRoute, state: ServerState): void {
  const { queue, history, options } = state;

  add('GET', '/prompt', async () => state.statusPayload().status);

  add('POST', '/prompt', async (req: FastifyRequest, reply) => {
    const body = asObject(req.body);
    if (!('prompt' in body) || body.prompt === undefined || body.prompt === null) {
      return promptError(reply, 'no_prompt', 'No prompt provided', 'No prompt provided');
    }
    const prompt = body.prompt;
    if (typeof prompt !== 'object' || Array.isArray(prompt)) {
      return promptError(reply, 'invalid_prompt', 'Prompt must be an object keyed by node id', `received ${Array.isArray(prompt) ? 'an array' : typeof prompt}`);
    }
    const nodeCount = Object.keys(prompt).length;
    if (nodeCount > options.maxPromptNodes) {
      return promptError(reply, 'invalid_prompt', `Prompt has too many nodes (${nodeCount} > ${options.maxPromptNodes})`, `${nodeCount} nodes`);
    }
    if (queue.remaining() >= options.maxQueue) {
      // 429, not 503: the server is healthy, this client should come back later.
      return reply
        .code(429)
        .header('Retry-After', String(QUEUE_FULL_RETRY_S))
        .send({ error: { type: 'queue_full', message: `The queue is full (${options.maxQueue} jobs)`, details: 'Retry later', extra_info: { max_queue: options.maxQueue } }, node_errors: {} });
    }
    const requestedId = typeof body.prompt_id === 'string' && body.prompt_id !== '' && body.prompt_id.length <= MAX_PROMPT_ID ? body.prompt_id : undefined;
    if (requestedId !== undefined) {
      // A reused id would make /history/{id} and the client's events ambiguous, and replace the
      // earlier job's history entry.
      const where =
        queue.current?.promptId === requestedId ? 'running' : queue.snapshot().queue_pending.some((item) => item[1] === requestedId) ? 'queued' : history.has(requestedId) ? 'in history' : undefined;
      if (where !== undefined) {
        return reply.code(400).send({
          error: { type: 'prompt_id_in_use', message: `prompt_id '${requestedId}' is already ${where}`, details: 'Use a new prompt_id, or leave it out to get a fresh one.', extra_info: { prompt_id: requestedId, state: where } },
          node_errors: {},
        });
      }
    }
    // ComfyUI: absent or null runs every output; a list keeps the output nodes named in it
    // (ids that are not output nodes are ignored; none left is prompt_no_outputs).
    const rawTargets = body.partial_execution_targets;
    if (rawTargets !== undefined && rawTargets !== null && !Array.isArray(rawTargets)) {
      return promptError(reply, 'invalid_prompt', 'partial_execution_targets must be a list of node ids or null', `received ${typeof rawTargets}`);
    }
    const targets = Array.isArray(rawTargets) ? stringList(rawTargets) : undefined;
    const v = state.engine.validate(prompt, targets);
    if (!v.ok) return reply.code(400).send({ error: v.error, node_errors: v.nodeErrors });

    const extra = { ...asObject(body.extra_data) };
    const sensitive: Record<string, unknown> = {};
    for (const k of SENSITIVE_KEYS) {
      if (k in extra) {
        sensitive[k] = extra[k];
        delete extra[k];
      }
    }
    if (typeof body.client_id === 'string' && body.client_id !== '') extra.client_id = body.client_id;
    extra.create_time = Date.now();
    const explicit = typeof body.number === 'number' && Number.isFinite(body.number) ? body.number : typeof body.number === 'string' && body.number.trim() !== '' && Number.isFinite(Number(body.number)) ? Number(body.number) : undefined;
    const promptId = requestedId ?? randomUUID();
    const job: Job = {
      number: queue.nextNumber(explicit, body.front === true || body.front === 'true'),
      promptId,
      prompt: v.prompt,
      extraData: extra,
      outputs: v.outputs,
      sensitive,
      clientId: typeof extra.client_id === 'string' ? extra.client_id : undefined,
    };
    queue.put(job);
    state.queueChanged();
    return { prompt_id: promptId, number: job.number, node_errors: v.nodeErrors };
  });

  add('GET', '/queue', async () => queue.snapshot());

  add('POST', '/queue', async (req, reply) => {
    const body = asObject(req.body);
    let changed = 0;
    if (body.clear === true) changed += queue.clear();
    if (body.delete !== undefined) changed += queue.delete(stringList(body.delete));
    if (changed > 0) state.queueChanged();
    return emptyOk(reply);
  });

  add('POST', '/interrupt', async (req, reply) => {
    const body = asObject(req.body);
    const target = typeof body.prompt_id === 'string' ? body.prompt_id : undefined;
    state.interrupt(target);
    return emptyOk(reply);
  });

  add('GET', '/history', async (req, reply) => {
    const q = asObject(req.query);
    const maxItems = intParam(q, 'max_items');
    const offset = intParam(q, 'offset');
    if (maxItems === 'bad' || offset === 'bad' || (maxItems !== undefined && maxItems < 0)) {
      return reply.code(400).send({ error: { type: 'invalid_parameter', message: 'max_items and offset must be integers (max_items >= 0)', details: '', extra_info: {} } });
    }
    return history.list(maxItems, offset);
  });

  // A wildcard, not a :param: a parameter over the router's maxParamLength would fall through
  // to the static handler; any id is answered here ({} when unknown, as ComfyUI does).
  add('GET', '/history/*', async (req) => {
    const promptId = (req.params as { '*': string })['*'] ?? '';
    const entry = promptId.length <= MAX_PROMPT_ID ? history.get(promptId) : undefined;
    return entry ? { [promptId]: entry } : {};
  });

  add('POST', '/history', async (req, reply) => {
    const body = asObject(req.body);
    if (body.clear === true) history.clear();
    if (body.delete !== undefined) history.delete(stringList(body.delete));
    return emptyOk(reply);
  });
}
