// The distributed prompt queue over BullMQ: what a front end needs for /prompt and /queue.
// A BullMQ job per prompt, its jobId the prompt_id; the job data carries the Job as exact JSON
// (engine/json.ts: BigInt seeds survive) and the prompt's model keys (affinity). Order is
// BullMQ's wait list: FIFO, `front` jobs LIFO at the head — which is ComfyUI's order, since a
// front job gets -n for a growing n (the later front job runs first).
import { randomUUID } from 'node:crypto';
import { Queue, type Job as BullJob } from 'bullmq';
import { ReplyError, type Redis } from 'ioredis';
import { parseJsonExact, stringifyJson } from '../engine/json.ts';
import { toQueueItem, type Job, type QueueItem } from '../host/types.ts';
import { QUEUE_NAME, type ClusterKeys } from './keys.ts';
import { LuaScript } from './script.ts';

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

/** The prompt id is claimed but has no job yet: another request is between its claim and its
 *  add, or one was cut there and is not settled yet. Not queued; worth retrying shortly. */
export class PromptIdPendingError extends Error {
  override name = 'PromptIdPendingError';
  constructor(readonly promptId: string) {
    super(`prompt_id '${promptId}' is being queued by another request (or by one cut from Redis whose outcome is not settled yet)`);
  }
}

/** A claim without a job this old is an orphan: its add was cut and its front end never
 *  settled it (it died). Far longer than a claim-to-add gap can be (the add is sent right after
 *  the claim's answer, or never). Measured on Redis's clock (front ends' clocks may differ). */
export const STALE_CLAIM_S = 60;

/**
 * A queue write was cut: the connection dropped (or the caller stopped waiting) before Redis
 * answered. `queued`: false when the prompt is certainly not queued (the BullMQ add was never
 * sent); 'unknown' when the add was sent and no answer came (Redis may have run it). Either way
 * the id's claim is settled once Redis answers again (ClusterJobs.settle()).
 */
export class QueueWriteCutError extends Error {
  override name = 'QueueWriteCutError';
  constructor(
    readonly promptId: string,
    readonly queued: false | 'unknown',
    cause: unknown,
  ) {
    super(`queueing prompt ${promptId}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/** Shared by add() and a caller that may stop waiting for it (a bounded wait). */
export interface AddAttempt {
  /** Set by add() just before the BullMQ add goes out: from then on a cut leaves the outcome unknown. */
  sent: boolean;
  /** Set by the caller when it stops waiting: an add() not yet `sent` then never sends it. */
  abandoned: boolean;
}

/** What settle() found for a cut write. */
export interface Settled {
  promptId: string;
  /** 'queued': the cut add did reach Redis (the job exists or already ran); 'not queued': it
   *  did not, and the id's claim is freed (the same prompt_id can be queued again). */
  outcome: 'queued' | 'not queued';
}

// A cut write's claim, settled once Redis answers. KEYS: ids hash, the job's BullMQ hash, history
// hash. ARGV: prompt id, the claim's token ('' = whatever claim there is), sent ('1' when the add
// may have run). One script: the check and the release cannot interleave with a worker finishing
// the job (whose history write sets the claim) or another front end claiming the id.
const SETTLE = new LuaScript(`
if ARGV[3] == '1' and (redis.call('EXISTS', KEYS[2]) == 1 or redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1) then return 'queued' end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and (ARGV[2] == '' or string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. ':') then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 'not queued'
`);

// The claim: HSETNX with the value "<token>:<Redis time, s>". KEYS: ids hash. ARGV: id, token.
const CLAIM = new LuaScript(`
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2] .. ':' .. redis.call('TIME')[1])
`);

// Frees an orphan claim: no job, no history entry, claimed more than ARGV[2] s ago. KEYS: ids
// hash, the job's BullMQ hash, history hash. ARGV: id, age. Returns 1 when freed.
const RELEASE_STALE = new LuaScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or redis.call('EXISTS', KEYS[2]) == 1 or redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
local since = tonumber(string.match(v, ':(%d+)$'))
if not since or tonumber(redis.call('TIME')[1]) - since <= tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
`);

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
  /** Claims are tokens unique to one add() call, so settling a cut add frees its own claim and
   *  never another request's (its HSETNX may not have run, and someone else may hold the id). */
  private readonly claimPrefix = randomUUID().slice(0, 8);
  private claims = 0;
  /** Writes cut before Redis answered, by prompt id: token ('' = any claim) and whether the
   *  job may exist. Settled by settle() once Redis answers. */
  private readonly unsettled = new Map<string, { token: string; sent: boolean }>();

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
  async add(job: Job, opts: { front?: boolean; models?: readonly string[]; attempt?: AddAttempt; retried?: boolean } = {}): Promise<void> {
    const id = job.promptId;
    const attempt = opts.attempt ?? { sent: false, abandoned: false };
    // The claim makes the id check atomic across front ends (two adds of one id: one wins).
    // Two steps, not one script: BullMQ's add is its own script. A cut between them leaves a
    // claim without a job, which settle() frees.
    const token = `${this.claimPrefix}:${++this.claims}`;
    let claimed: number;
    try {
      claimed = (await CLAIM.run(this.redis, [this.keys.ids], [id, token])) as number;
    } catch (e) {
      if (e instanceof ReplyError) throw e; // Redis refused it: nothing written
      this.cut(id, token, false);
      throw new QueueWriteCutError(id, false, e);
    }
    if (claimed === 0) {
      const state = await this.state(id);
      if (state) throw new PromptIdInUseError(id, state);
      // Claimed without a job. An orphan (old enough) is freed and the claim tried once more;
      // a fresh one belongs to a request in progress.
      const freed = !opts.retried && (await RELEASE_STALE.run(this.redis, [this.keys.ids, this.queue.toKey(id), this.keys.history], [id, STALE_CLAIM_S])) === 1;
      if (freed) return this.add(job, { ...opts, attempt, retried: true });
      throw new PromptIdPendingError(id);
    }
    if (attempt.abandoned) {
      this.cut(id, token, false);
      throw new QueueWriteCutError(id, false, new Error('the caller stopped waiting before the add was sent'));
    }
    attempt.sent = true;
    try {
      await this.queue.add('prompt', encodeJob(job, opts.models ?? []), { ...JOB_OPTS, jobId: id, lifo: opts.front === true });
    } catch (e) {
      this.cut(id, token, true);
      // An error reply: Redis ran the script and refused; the claim is freed right away.
      if (e instanceof ReplyError) throw e;
      throw new QueueWriteCutError(id, 'unknown', e);
    }
  }

  /** Remembers a cut write and settles it at once if Redis still answers (else settle() later). */
  private cut(promptId: string, token: string, sent: boolean): void {
    const had = this.unsettled.get(promptId);
    // A delete cut after a cut add of the same id: the add's "may exist" must not be forgotten.
    this.unsettled.set(promptId, { token: had && !token ? had.token : token, sent: sent || had?.sent === true });
    if (this.redis.status === 'ready') void this.settle().catch(() => undefined);
  }

  /** Cut writes not settled yet (their ids may be claimed without a job). */
  get unsettledCount(): number {
    return this.unsettled.size;
  }

  isUnsettled(promptId: string): boolean {
    return this.unsettled.has(promptId);
  }

  /**
   * Settles the writes cut before Redis answered: a cut add whose job exists (or already ran) is
   * 'queued'; otherwise its claim is freed ('not queued'). Stops at the first failure (Redis
   * still down): the rest wait for the next call. Returns what it settled.
   */
  async settle(): Promise<Settled[]> {
    const out: Settled[] = [];
    const k = this.keys;
    for (const [promptId, u] of [...this.unsettled]) {
      const r = (await SETTLE.run(this.redis, [k.ids, this.queue.toKey(promptId), k.history], [promptId, u.token, u.sent ? '1' : '0'])) as Settled['outcome'];
      // A newer cut of the same id (a request meanwhile) is kept for the next round.
      if (this.unsettled.get(promptId) === u) this.unsettled.delete(promptId);
      out.push({ promptId, outcome: r });
    }
    return out;
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
      try {
        if ((await this.queue.remove(id)) === 1) {
          await this.redis.hdel(this.keys.ids, id);
          removed++;
        }
      } catch (e) {
        // The removal may have run without the claim's release: settle() frees the claim if
        // the job is gone (nobody else can hold it: the claim still stands).
        if (!(e instanceof ReplyError)) this.cut(id, '', true);
        throw e;
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
