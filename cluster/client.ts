// The cluster as a front end (`serve --redis`) uses it: one object holding the connections and
// the APIs the HTTP/WS layer needs — jobs (add/list/delete/clear/remaining), history, the event
// and queue-notice subscription, interrupt/free publishing, the worker list. Stateless: any
// number of front ends share the same Redis, and a restarted one picks up where it was.
import type { Redis } from 'ioredis';
import { checkRedis, connect, parseRedisUrl, type RedisStatus, type RedisTarget } from './connection.ts';
import { ClusterEvents, type Subscription } from './events.ts';
import { RedisHistory } from './history.ts';
import { ClusterJobs } from './jobs.ts';
import { ClusterKeys } from './keys.ts';
import { WorkerRegistry } from './workers.ts';

export interface ClusterClientOptions {
  redis: string | RedisTarget;
  prefix?: string;
  /** History entries kept (--max-history; default 1000). */
  maxHistory?: number;
  /** Start-up check timeout (default 3000 ms). */
  connectTimeoutMs?: number;
  /** The command connection's status, for the status line / logs. */
  onStatus?: (s: RedisStatus) => void;
  connectionName?: string;
  /** The command connection fails fast while Redis is down (connection.ts ConnectOptions): what a
   *  front end answering HTTP requests needs. Subscriptions always wait and resubscribe. */
  failFast?: boolean;
}

export class ClusterClient {
  readonly target: RedisTarget;
  readonly keys: ClusterKeys;
  redis!: Redis;
  jobs!: ClusterJobs;
  history!: RedisHistory;
  events!: ClusterEvents;
  workers!: WorkerRegistry;
  private sub: Redis | undefined;
  private unsubscribe: (() => Promise<void>) | undefined;

  constructor(private readonly o: ClusterClientOptions) {
    this.target = typeof o.redis === 'string' ? parseRedisUrl(o.redis) : o.redis;
    this.keys = new ClusterKeys(o.prefix);
  }

  /** Checks Redis (RedisUnavailableError: exit code 3 in the CLI), then connects. */
  async start(): Promise<void> {
    await checkRedis(this.target, this.o.connectTimeoutMs);
    const name = this.o.connectionName ?? 'sana-front';
    this.redis = connect(this.target, { onStatus: this.o.onStatus, connectionName: name, failFast: this.o.failFast });
    this.jobs = new ClusterJobs(this.redis, this.keys);
    this.history = new RedisHistory(this.redis, this.keys, this.o.maxHistory ?? 1000);
    this.events = new ClusterEvents(this.redis, this.keys);
    this.workers = new WorkerRegistry(this.redis, this.keys);
  }

  /** Job messages and queue notices (one subscription per client object; a second replaces it). */
  async subscribe(s: Subscription, onError?: (e: Error) => void): Promise<void> {
    await this.unsubscribe?.();
    this.sub ??= connect(this.target, { connectionName: `${this.o.connectionName ?? 'sana-front'}-sub` });
    this.unsubscribe = await this.events.subscribe(this.sub, s, onError);
  }

  /** POST /interrupt: the worker running `promptId`, or every running job when undefined. */
  interrupt(promptId?: string): Promise<number> {
    return this.events.publishControl({ type: 'interrupt', promptId });
  }

  /** POST /free: every worker. */
  free(unloadModels: boolean, freeMemory: boolean): Promise<number> {
    return this.events.publishControl({ type: 'free', unloadModels, freeMemory });
  }

  async close(): Promise<void> {
    await this.unsubscribe?.();
    await this.jobs?.close().catch(() => undefined);
    this.sub?.disconnect();
    this.redis?.disconnect();
  }
}
