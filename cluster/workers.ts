// The worker registry: each worker heartbeats its facts (a JSON key with a TTL, renewed every
// beat), so a worker that dies drops out within the TTL; /system_stats lists the live ones.
import type { Redis } from 'ioredis';
import type { ClusterKeys } from './keys.ts';

export interface WorkerInfo {
  id: string;
  hostname: string;
  pid: number;
  /** Epoch ms. */
  started: number;
  /** As /system_stats `devices` (the worker's native devices, or its CPU). */
  devices: unknown[];
  /** Model keys (models.ts) the worker's executor holds in memory, as far as it knows. */
  loadedModels: string[];
  state: 'starting' | 'idle' | 'busy' | 'stopping';
  /** The job it runs, and the node last reported. */
  current: { promptId: string; node?: string; since: number } | undefined;
  /** The execution process (ExecutionHost.pid) and how often it was restarted. */
  executorPid: number | undefined;
  restarts: number;
}

export class WorkerRegistry {
  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    /** A worker that has not beaten for this long counts as gone. */
    readonly ttlMs = 5000,
  ) {}

  /** Returns how many ids the registry's set holds (this one included; ids that died are counted
   *  until a list() prunes them), at no extra round trip: a worker alone skips model affinity. */
  async beat(info: WorkerInfo): Promise<number> {
    const r = await this.redis
      .multi()
      .set(this.keys.worker(info.id), JSON.stringify(info), 'PX', this.ttlMs)
      .sadd(this.keys.workers, info.id)
      .scard(this.keys.workers)
      .exec();
    const n = r?.[2]?.[1];
    return typeof n === 'number' ? n : Number.POSITIVE_INFINITY;
  }

  async remove(id: string): Promise<void> {
    await this.redis.multi().del(this.keys.worker(id)).srem(this.keys.workers, id).exec();
  }

  /** Live workers, by id. Ids whose key expired are pruned from the set. */
  async list(): Promise<WorkerInfo[]> {
    const ids = (await this.redis.smembers(this.keys.workers)).sort();
    if (ids.length === 0) return [];
    const raws = await this.redis.mget(...ids.map((id) => this.keys.worker(id)));
    const gone = ids.filter((_, i) => raws[i] === null);
    if (gone.length > 0) await this.redis.srem(this.keys.workers, ...gone);
    return raws.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as WorkerInfo);
  }
}
