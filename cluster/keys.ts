// Every Redis key and channel the cluster uses, in one place, so the README's table and the code
// cannot drift apart. `prefix` (default "sana") lets several clusters share one Redis database.

/** The BullMQ queue that holds the prompts (its keys are `<prefix>:prompts:*`). */
export const QUEUE_NAME = 'prompts';

export class ClusterKeys {
  constructor(readonly prefix = 'sana') {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(prefix)) throw new Error(`cluster prefix must be 1-64 letters, digits, "_", "." or "-", got ${JSON.stringify(prefix)}`);
  }

  private k(rest: string): string {
    return `${this.prefix}:cluster:${rest}`;
  }

  /** INCR counter: the ComfyUI `number` of new prompts. */
  get number(): string {
    return this.k('number');
  }
  /** HASH prompt_id -> "1" while the id is queued, running or in history (prompt_id_in_use). */
  get ids(): string {
    return this.k('ids');
  }
  /** HASH prompt_id -> JSON {workerId, hostname, pid, node, since}: who runs a job, where it is. */
  get running(): string {
    return this.k('running');
  }
  /** HASH prompt_id -> history entry JSON (engine/json.ts stringifyJson: BigInts stay exact). */
  get history(): string {
    return this.k('history');
  }
  /** ZSET prompt_id scored by completion sequence: the history order and the retention. */
  get historyOrder(): string {
    return this.k('history:order');
  }
  /** INCR counter behind historyOrder's scores. */
  get historySeq(): string {
    return this.k('history:seq');
  }
  /** SET of worker ids that have announced themselves (pruned when their key expired). */
  get workers(): string {
    return this.k('workers');
  }
  /** STRING (JSON, with a TTL renewed by the heartbeat): one worker's /system_stats facts. */
  worker(id: string): string {
    return this.k(`worker:${id}`);
  }
  /** Pub/sub, binary: job events and previews, workers -> front ends. */
  get eventsChannel(): string {
    return this.k('events');
  }
  /** Pub/sub, JSON: "the queue changed" (added, started, finished, deleted...). */
  get queueChannel(): string {
    return this.k('queue');
  }
  /** Pub/sub, JSON: interrupt / free, front ends -> workers. */
  get controlChannel(): string {
    return this.k('control');
  }
  /** HASH {data, size, mtime, sha256}: one file of the Redis output store (redis_store.ts), `rel` its
   *  "/"-separated path inside the folder type. Temp files (and all, with a retention) expire. */
  file(type: string, rel: string): string {
    return this.k(`file:${type}:${rel}`);
  }
  /** HASH written before a file's commit renames it into place: a writer killed mid-upload leaves
   *  only this, which expires. */
  fileUpload(id: string): string {
    return this.k(`file-upload:${id}`);
  }
  /** ZSET rel -> 0 of one folder type: listing by lexicographic range (subfolders, name prefixes). */
  files(type: string): string {
    return this.k(`files:${type}`);
  }
  /** ZSET rel -> expiry (epoch ms) of the files of a type written with a time to live: the entries
   *  listing drops from files(type) once Redis has expired the file itself. */
  filesExpiry(type: string): string {
    return this.k(`files:${type}:expiry`);
  }
  /** BullMQ's lock key of a running job (value: the token of the worker holding it). The history
   *  write checks it, so only the lock holder can record a result. Mirrors BullMQ's layout
   *  (`queue.toKey(jobId) + ':lock'`), checked by test/cluster/jobs.test.ts. */
  lock(promptId: string): string {
    return `${this.prefix}:${QUEUE_NAME}:${promptId}:lock`;
  }
}
