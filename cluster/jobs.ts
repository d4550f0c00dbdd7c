// The distributed prompt queue over BullMQ: what a front end needs for /prompt and /queue.
// A BullMQ job per prompt, its jobId the prompt_id; the job data carries the Job as exact JSON
// (engine/json.ts: BigInt seeds survive) and the prompt's model keys (affinity). Order is
// BullMQ's wait list: FIFO, `front` jobs LIFO at the head — which is ComfyUI's order, since a
// front job gets -n for a growing n (the later front job runs first).
import { Queue, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { parseJsonExact, stringifyJson } from '../engine/json.ts';
import { toQueueItem, type Job, type QueueItem } from '../host/types.ts';
import { QUEUE_NAME, type ClusterKeys } from './keys.ts';

export type { Job, QueueItem };

/** What a BullMQ job holds. `job`: stringifyJson(Job) (sensitive keys included: the worker
 *  passes them to the nodes; never listed). */
export interface JobData {
  v: 1;
  job: string;
  models: string[];
}

export type PromptIdState = 'queued' | 'running' | 'in history';

/** The prompt id is taken (the front end answers 400 prompt_id_in_use). */
export class PromptIdInUseError extends Error {
  override name = 'PromptIdInUseError';
  constructor(
    readonly promptId: string,
    readonly state: PromptIdState,
  ) {
    super(`prompt_id '${promptId}' is already ${state}`);
  }
}

export interface RunningJob {
  job: Job;
  /** The worker running it (its --worker-id). */
  workerId: string | undefined;
  /** The node it is executing, as the worker last reported. */
  node: string | undefined;
}

export function encodeJob(job: Job, models: readonly string[]): JobData {
  return { v: 1, job: stringifyJson(job), models: [...models] };
}

export function decodeJob(data: JobData): Job {
  const j = parseJsonExact(data.job) as Job;
  return { ...j, extraData: j.extraData ?? {}, sensitive: j.sensitive ?? {}, outputs: (j.outputs ?? []).map(String) };
}

/** The BullMQ options every job gets: removed once finished (history is the record, and the id
 *  must be free again once its history entry is deleted). */
const JOB_OPTS = { removeOnComplete: true, removeOnFail: true } as const;

export class ClusterJobs {
  readonly queue: Queue<JobData>;

  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
  ) {
    // The connection is shared (BullMQ does not close a connection it was given).
    this.queue = new Queue<JobData>(QUEUE_NAME, { connection: redis, prefix: keys.prefix, streams: { events: { maxLen: 1000 } } });
    // Connection errors are reported by the connection's status; keep them off the process.
    this.queue.on('error', () => undefined);
  }

  /** The `number` of a new prompt: an explicit one wins, else a global counter (negated for front). */
  async nextNumber(explicit: number | undefined, front: boolean): Promise<number> {
    if (explicit !== undefined) return explicit;
    const n = await this.redis.incr(this.keys.number);
    return front ? -n : n;
  }

  /**
   * Queues `job` (its number from nextNumber). Throws PromptIdInUseError when the prompt id is
   * queued, running or in history. `front`: at the head of the queue. An explicit number does
   * not reorder: jobs run in arrival order (front jobs first), see README.md.
   */
  async add(job: Job, opts: { front?: boolean; models?: readonly string[] } = {}): Promise<void> {
    // The claim makes the id check atomic across front ends (two adds of one id: one wins).
    if ((await this.redis.hsetnx(this.keys.ids, job.promptId, '1')) === 0) {
      throw new PromptIdInUseError(job.promptId, (await this.state(job.promptId)) ?? 'queued');
    }
    try {
      await this.queue.add('prompt', encodeJob(job, opts.models ?? []), { ...JOB_OPTS, jobId: job.promptId, lifo: opts.front === true });
    } catch (e) {
      await this.redis.hdel(this.keys.ids, job.promptId).catch(() => undefined);
      throw e;
    }
  }

  /** Where a prompt id is: queued, running, in history, or unknown (undefined). */
  async state(promptId: string): Promise<PromptIdState | undefined> {
    if ((await this.redis.hexists(this.keys.history, promptId)) === 1) return 'in history';
    const s = await this.queue.getJobState(promptId);
    if (s === 'active') return 'running';
    if (s === 'waiting' || s === 'prioritized' || s === 'delayed' || s === 'waiting-children') return 'queued';
    return undefined;
  }

  /** Pending jobs in execution order. */
  async pending(): Promise<Job[]> {
    const jobs = await this.queue.getJobs(['wait'], 0, -1, true);
    return jobs.filter((j): j is BullJob<JobData> => !!j?.data).map((j) => decodeJob(j.data));
  }

  /** Running jobs with the worker each runs on. */
  async running(): Promise<RunningJob[]> {
    const jobs = (await this.queue.getActive()).filter((j): j is BullJob<JobData> => !!j?.data);
    if (jobs.length === 0) return [];
    const infos = await this.redis.hmget(this.keys.running, ...jobs.map((j) => j.id!));
    return jobs.map((j, i) => {
      const info = infos[i] ? (JSON.parse(infos[i]!) as { workerId?: string; node?: string }) : {};
      return { job: decodeJob(j.data), workerId: info.workerId ?? j.processedBy, node: info.node };
    });
  }

  /** The /queue answer. Running items are ordered by number, like pending ones. */
  async snapshot(): Promise<{ queue_running: QueueItem[]; queue_pending: QueueItem[] }> {
    const [running, pending] = await Promise.all([this.running(), this.pending()]);
    return {
      queue_running: running
        .map((r) => r.job)
        .sort((a, b) => a.number - b.number)
        .map(toQueueItem),
      queue_pending: pending.map(toQueueItem),
    };
  }

  /** Removes these pending jobs (running ones stay: interrupt them); returns how many went. */
  async delete(ids: readonly string[]): Promise<number> {
    let removed = 0;
    for (const id of new Set(ids)) {
      // Queue.remove refuses a locked (running) job atomically, so a job a worker takes at this
      // moment is not deleted under it; only a waiting one is.
      if ((await this.queue.getJobState(id)) !== 'waiting') continue;
      if ((await this.queue.remove(id)) === 1) {
        await this.redis.hdel(this.keys.ids, id);
        removed++;
      }
    }
    return removed;
  }

  /** Removes every pending job present now; returns how many went. */
  async clear(): Promise<number> {
    const ids = (await this.queue.getJobs(['wait'], 0, -1, true)).filter((j) => !!j).map((j) => j.id!);
    return this.delete(ids);
  }

  /** Pending + running: the `queue_remaining` of status messages. */
  async remaining(): Promise<number> {
    return this.queue.getJobCountByTypes('waiting', 'active');
  }

  /** The next job a worker would take: its id and model keys (affinity), without taking it. */
  async head(): Promise<{ id: string; models: string[] } | undefined> {
    const [j] = await this.queue.getJobs(['wait'], 0, 0, true);
    if (!j?.data) return undefined;
    return { id: j.id!, models: j.data.models ?? [] };
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
