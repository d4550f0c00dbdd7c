// ComfyUI's jobs API (server.py GET /api/jobs, /api/jobs/{id}; comfy_execution/jobs.py), which
// its frontend's queue and history panels read instead of /queue and /history: one list of job
// objects built from the running job, the pending queue and the history, filtered by status,
// sorted by creation time or duration, paginated.
import type { FastifyReply } from 'fastify';
import { z } from 'zod';
import { asObject } from '../body.ts';
import type { HistoryEntry } from '../history.ts';
import type { RoutePlugin } from '../http.ts';
import type { QueueItem } from '../queue.ts';
import { anyValue, fail, invalidAs, param } from '../schema.ts';

export const JOB_STATUSES = ['pending', 'in_progress', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

const PREVIEWABLE = new Set(['images', 'video', 'audio', '3d']);
const THREE_D_EXT = ['.obj', '.fbx', '.gltf', '.glb', '.usdz'];

type Json = Record<string, unknown>;

/** ComfyUI's prune_dict: keys whose value is null/undefined are left out of a job object. */
function pruned(o: Json): Json {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null));
}

function has3dExt(name: string): boolean {
  const lower = name.toLowerCase();
  return THREE_D_EXT.some((e) => lower.endsWith(e));
}

/** A bare 3D file name becomes a file item; other strings are not files; dicts pass. */
function normalizeItem(item: unknown): Json | undefined {
  if (typeof item === 'string') return has3dExt(item) ? { filename: item, type: 'output', subfolder: '', mediaType: '3d' } : undefined;
  if (typeof item === 'object' && item !== null && !Array.isArray(item)) return item as Json;
  return undefined;
}

function isPreviewable(mediaType: string, item: Json): boolean {
  if (PREVIEWABLE.has(mediaType)) return true;
  const fmt = typeof item.format === 'string' ? item.format : '';
  if (fmt.startsWith('video/') || fmt.startsWith('audio/')) return true;
  return typeof item.filename === 'string' && has3dExt(item.filename);
}

/** How many output items a job has, and the one the frontend shows (an `output` file first). */
function outputsSummary(outputs: Json): { count: number; preview: Json | undefined } {
  let count = 0;
  let preview: Json | undefined;
  let fallback: Json | undefined;
  for (const [nodeId, nodeOutputs] of Object.entries(outputs)) {
    if (typeof nodeOutputs !== 'object' || nodeOutputs === null || Array.isArray(nodeOutputs)) continue;
    for (const [mediaType, items] of Object.entries(nodeOutputs as Json)) {
      if (mediaType === 'animated' || !Array.isArray(items)) continue;
      for (const raw of items) {
        const item = normalizeItem(raw);
        if (!item) continue;
        count++;
        if (preview || !isPreviewable(mediaType, item)) continue;
        const enriched = { ...item, nodeId, ...('mediaType' in item ? {} : { mediaType }) };
        if (item.type === 'output') preview = enriched;
        else fallback ??= enriched;
      }
    }
  }
  return { count, preview: preview ?? fallback };
}

/** Outputs as the detail endpoint returns them: 3D names made file items, nulls dropped. */
function normalizeOutputs(outputs: Json): Json {
  const out: Json = {};
  for (const [nodeId, nodeOutputs] of Object.entries(outputs)) {
    if (typeof nodeOutputs !== 'object' || nodeOutputs === null || Array.isArray(nodeOutputs)) {
      out[nodeId] = nodeOutputs;
      continue;
    }
    const node: Json = {};
    for (const [mediaType, items] of Object.entries(nodeOutputs as Json)) {
      node[mediaType] =
        mediaType === 'animated' || !Array.isArray(items) ? items : items.filter((i) => i !== null && i !== undefined).map((i) => normalizeItem(i) ?? i);
    }
    out[nodeId] = node;
  }
  return out;
}

function metadata(extra: Json): { createTime: unknown; workflowId: unknown } {
  const workflow = asObject(asObject(extra.extra_pnginfo).workflow);
  return { createTime: extra.create_time, workflowId: workflow.id };
}

export function queueItemToJob(item: QueueItem, status: 'pending' | 'in_progress'): Json {
  const [priority, id, , extra] = item;
  const { createTime, workflowId } = metadata(extra);
  return pruned({ id, status, priority, create_time: createTime, outputs_count: 0, workflow_id: workflowId });
}

export function historyToJob(id: string, entry: HistoryEntry, includeOutputs = false): Json {
  const [priority, , prompt, extra] = entry.prompt;
  const { createTime, workflowId } = metadata(extra);
  const { count, preview } = outputsSummary(entry.outputs ?? {});
  let start: unknown;
  let end: unknown;
  let error: unknown;
  let interrupted = false;
  for (const m of entry.status?.messages ?? []) {
    if (!Array.isArray(m) || m.length < 2 || typeof m[1] !== 'object' || m[1] === null) continue;
    const [name, data] = m;
    if (name === 'execution_start') start = data.timestamp;
    else if (name === 'execution_success' || name === 'execution_error' || name === 'execution_interrupted') {
      end = data.timestamp;
      if (name === 'execution_error') error = data;
      else if (name === 'execution_interrupted') interrupted = true;
    }
  }
  const statusStr = entry.status?.status_str;
  const status: JobStatus = statusStr === 'error' ? (interrupted ? 'cancelled' : 'failed') : 'completed';
  const job = pruned({
    id,
    status,
    priority,
    create_time: createTime,
    execution_start_time: start,
    execution_end_time: end,
    execution_error: error,
    outputs_count: count,
    preview_output: preview,
    workflow_id: workflowId,
  });
  if (includeOutputs) {
    job.outputs = normalizeOutputs(entry.outputs ?? {});
    job.execution_status = entry.status;
    job.workflow = { prompt, extra_data: extra };
  }
  return job;
}

// ComfyUI's jobs routes answer a bad parameter with {error: "text"}, 400.
function badRequest(reply: FastifyReply, message: string) {
  return reply.code(400).send({ error: message });
}

/** An integer query value ("+3", " 7 " allowed, as Python's int() reads it), or undefined when absent. */
function intValue(name: string) {
  return anyValue.transform((v, ctx) => {
    if (v === undefined) return undefined;
    const s = String(v).trim();
    return /^[-+]?\d+$/.test(s) ? Number(s) : fail(ctx, `${name} must be an integer`);
  });
}

// Keys in the order ComfyUI checks them: the first failing one is the answer.
const jobsQuery = z.object({
  status: anyValue.transform((v, ctx): string[] => {
    if (typeof v !== 'string' || v === '') return [...JOB_STATUSES];
    const statuses = v
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s !== '');
    const invalid = statuses.filter((s) => !(JOB_STATUSES as readonly string[]).includes(s));
    return invalid.length ? fail(ctx, `Invalid status value(s): ${invalid.join(', ')}. Valid values: ${JOB_STATUSES.join(', ')}`) : statuses;
  }),
  sort_by: anyValue.transform((v, ctx) => {
    const s = (typeof v === 'string' ? v : 'created_at').toLowerCase();
    return s === 'created_at' || s === 'execution_duration' ? s : fail(ctx, "sort_by must be 'created_at' or 'execution_duration'");
  }),
  sort_order: anyValue.transform((v, ctx) => {
    const s = (typeof v === 'string' ? v : 'desc').toLowerCase();
    return s === 'asc' || s === 'desc' ? s : fail(ctx, "sort_order must be 'asc' or 'desc'");
  }),
  limit: intValue('limit').refine((n) => n === undefined || n > 0, 'limit must be a positive integer'),
  offset: intValue('offset').transform((n) => Math.max(0, n ?? 0)),
  workflow_id: anyValue.transform((v) => (typeof v === 'string' && v !== '' ? v : undefined)),
});

const invalidJobsRequest = invalidAs((reply, issue) => badRequest(reply, issue.message));

export const jobRoutes: RoutePlugin = async (app, { state }) => {
  app.get('/jobs', { schema: { querystring: jobsQuery }, errorHandler: invalidJobsRequest }, async (req) => {
    const { status: statuses, sort_by: sortBy, sort_order: sortOrder, limit = null, offset, workflow_id: workflowId } = req.query;
    const { queue_running, queue_pending } = await state.backend.snapshot();
    let jobs: Json[] = [];
    if (statuses.includes('in_progress')) jobs.push(...queue_running.map((i) => queueItemToJob(i, 'in_progress')));
    if (statuses.includes('pending')) jobs.push(...queue_pending.map((i) => queueItemToJob(i, 'pending')));
    const wantHistory: string[] = statuses.filter((s) => s === 'completed' || s === 'failed' || s === 'cancelled');
    if (wantHistory.length) {
      for (const [id, entry] of Object.entries(await state.backend.history.list())) {
        const job = historyToJob(id, entry);
        if (wantHistory.includes(job.status as string)) jobs.push(job);
      }
    }
    if (workflowId !== undefined) jobs = jobs.filter((j) => j.workflow_id === workflowId);
    const num = (v: unknown) => (typeof v === 'number' ? v : 0);
    const key =
      sortBy === 'execution_duration'
        ? (j: Json) => {
            const s = num(j.execution_start_time);
            const e = num(j.execution_end_time);
            return s && e ? e - s : 0;
          }
        : (j: Json) => num(j.create_time);
    // Array.prototype.sort is stable, like Python's sorted(reverse=True) on equal keys.
    jobs.sort((a, b) => (sortOrder === 'desc' ? key(b) - key(a) : key(a) - key(b)));
    const total = jobs.length;
    const page = jobs.slice(offset, limit === null ? undefined : offset + limit);
    return { jobs: page, pagination: { offset, limit, total, has_more: offset + page.length < total } };
  });

  app.get(
    '/jobs/:jobId',
    { schema: { params: z.object({ jobId: param.refine((id) => id !== '', 'job_id is required') }) }, errorHandler: invalidJobsRequest },
    async (req, reply) => {
      const { jobId } = req.params;
      const entry = await state.backend.history.get(jobId);
      if (entry) return historyToJob(jobId, entry, true);
      const { queue_running, queue_pending } = await state.backend.snapshot();
      const running = queue_running.find((i) => i[1] === jobId);
      if (running) return queueItemToJob(running, 'in_progress');
      const pending = queue_pending.find((i) => i[1] === jobId);
      if (pending) return queueItemToJob(pending, 'pending');
      return reply.code(404).send({ error: 'Job not found' });
    },
  );
};
