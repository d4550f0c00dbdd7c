// Job routes: POST/GET /prompt, GET/POST /queue, POST /interrupt, GET/POST /history,
// GET /history/{id} (spec §1.1-1.6).
import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { emptyOk, type AddRoute } from '../app.ts';
import { asObject } from '../body.ts';
import type { Job } from '../queue.ts';
import type { ServerState } from '../state.ts';

const SENSITIVE_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org'];

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
      return reply.code(503).send({ error: { type: 'queue_full', message: `The queue is full (${options.maxQueue} jobs)`, details: '', extra_info: {} }, node_errors: {} });
    }
    const targets = body.partial_execution_targets === undefined ? undefined : stringList(body.partial_execution_targets);
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
    const promptId = typeof body.prompt_id === 'string' && body.prompt_id !== '' && body.prompt_id.length <= 200 ? body.prompt_id : randomUUID();
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

  add('GET', '/history/:promptId', async (req) => {
    const { promptId } = req.params as { promptId: string };
    const entry = history.get(promptId);
    return entry ? { [promptId]: entry } : {};
  });

  add('POST', '/history', async (req, reply) => {
    const body = asObject(req.body);
    if (body.clear === true) history.clear();
    if (body.delete !== undefined) history.delete(stringList(body.delete));
    return emptyOk(reply);
  });
}
