// `serve --redis`: the server as a stateless front end of a cluster (cluster/README.md). The queue,
// history and events live in Redis; workers (`sana-graph worker --redis`) run the jobs. This
// front end validates prompts, queues them, answers /queue and /history from Redis, publishes
// interrupt/free to the workers, and delivers every job message it hears to its own WebSocket
// clients (each front end hears every message; a client may be connected to any of them).
//
// Redis down: every route that needs it answers 503 `backend_unavailable` promptly, also a
// request that was already waiting on Redis when it dropped (the command connection fails fast:
// connection.ts `failFast`; a connection that hangs without dropping is bounded by
// REQUEST_TIMEOUT_MS). The rest of the server (object_info, /view, the editor, settings) keeps
// serving, and the connection retries with back-off and recovers by itself.
//
// A /prompt cut mid-way says truthfully what became of it: "not queued", or, when the BullMQ add
// went out and no answer came, "may or may not be queued" with the prompt id to check. Such a
// cut is settled once Redis answers again (ClusterJobs.settle(): the id's claim is freed unless
// the job exists), so the same prompt_id can then be queued again, and only once.
import os from 'node:os';
import { MaxRetriesPerRequestError, ReplyError } from 'ioredis';
import { ClusterClient } from '../../cluster/client.ts';
import { statusLine, type RedisStatus } from '../../cluster/connection.ts';
import { routeFor, type ClusterMessage } from '../../cluster/events.ts';
import { PromptIdInUseError as ClusterPromptIdInUseError, PromptIdPendingError, QueueWriteCutError, type AddAttempt } from '../../cluster/jobs.ts';
import { modelKeys } from '../../cluster/models.ts';
import type { WorkerInfo } from '../../cluster/workers.ts';
import { BackendUnavailableError, PromptIdInUseError, type Backend, type BackendHistory, type PromptIdState, type QueueSnapshot } from './backend.ts';
import type { BackendContext } from './embedded_backend.ts';
import type { ResolvedOptions } from './options.ts';
import type { Job } from './queue.ts';

/** How long a request waits for Redis before answering 503. Only a connection that stays up but
 *  does not answer (Redis frozen, a network path lost without a reset) waits this long; a drop
 *  fails the request at once. */
const REQUEST_TIMEOUT_MS = 5000;
/** Queue state is re-read this often even without notices (pub/sub may drop them). */
const POLL_MS = 2000;
/** How long the worker list is reused within one /system_stats answer. */
const WORKERS_TTL_MS = 500;
/** Queue re-reads are at least this far apart: a busy fleet's notices cost each front end at
 *  most 10 reads a second, whatever the number of workers. */
const REFRESH_GAP_MS = 100;

interface RunningInfo {
  clientId: string | undefined;
  node: string | undefined;
}

/**
 * Connects to Redis (RedisUnavailableError when unreachable: the CLI exits with code 3) and
 * returns the factory ServerState builds the backend with. `onStatus` gets the connection's
 * status lines (reconnecting, ready) for the terminal.
 */
export async function openCluster(
  options: ResolvedOptions,
  onStatus: (line: string) => void = () => undefined,
): Promise<(ctx: BackendContext) => ClusterBackend> {
  let relay: (s: RedisStatus) => void = () => undefined;
  const client = new ClusterClient({
    redis: options.redis!,
    prefix: options.redisPrefix,
    maxHistory: options.maxHistory,
    connectionName: 'sana-front',
    onStatus: (s) => relay(s),
    failFast: true,
  });
  await client.start();
  return (ctx) => {
    const backend = new ClusterBackend(client, ctx, onStatus);
    relay = (s) => backend.onRedisStatus(s);
    return backend;
  };
}

export class ClusterBackend implements Backend {
  readonly mode = 'cluster' as const;
  readonly history: BackendHistory;
  private remainingCache = 0;
  /** Running jobs by prompt id, as last read (and the node from `executing` messages since). */
  private running = new Map<string, RunningInfo>();
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private lastRefresh = 0;
  /** prompt id -> client id, from the job messages heard (the running hash has no client id). */
  private clients = new Map<string, string | undefined>();
  private pollTimer: NodeJS.Timeout | undefined;
  private lastStatus = '';
  private wasDown = false;
  private closed = false;
  private workersCache: { at: number; list: Promise<WorkerInfo[]> } | undefined;

  constructor(
    readonly client: ClusterClient,
    private readonly ctx: BackendContext,
    private readonly onStatusLine: (line: string) => void,
  ) {
    const h = client.history;
    this.history = {
      list: (maxItems, offset) => this.request(() => h.list(maxItems, offset)),
      get: (id) => this.request(() => h.get(id)),
      // Each script call is atomic and repeating them is harmless: a cut one is retried as is.
      delete: (ids) => this.request(() => h.delete(ids)),
      clear: () => this.request(() => h.clear()),
    };
  }

  /** The command connection's status: logged (once per change); a recovery re-reads the queue. */
  onRedisStatus(s: RedisStatus): void {
    if (s.state === 'connected') return; // 'ready' follows at once
    const line = statusLine(this.client.target.display, s);
    if (line !== this.lastStatus) {
      this.lastStatus = line;
      this.onStatusLine(line);
      if (s.state === 'reconnecting') this.ctx.log().warn(line);
      else this.ctx.log().info(line);
    }
    if (s.state === 'reconnecting' || s.state === 'closed') this.wasDown = true;
    if (s.state === 'ready' && this.wasDown) {
      // Notices published while we were cut off are lost (pub/sub); the queue is not.
      this.wasDown = false;
      this.refresh(true);
    }
  }

  /** Settles the writes cut while Redis was away (runs on every queue re-read while any is left). */
  private async settle(): Promise<void> {
    for (const s of await this.client.jobs.settle()) {
      this.ctx
        .log()
        .info(
          s.outcome === 'queued'
            ? `prompt ${s.promptId}, answered 503 when Redis dropped mid-queueing, was queued after all; it runs once`
            : `prompt ${s.promptId}, answered 503 when Redis dropped mid-queueing, was not queued; its prompt_id is free again`,
        );
    }
  }

  /** Throws BackendUnavailableError unless the command connection is ready. */
  private up(): void {
    const status = this.client.redis.status;
    if (status !== 'ready') {
      throw new BackendUnavailableError(
        `the cluster's Redis at ${this.client.target.display} is unreachable (${status}); the queue and history are unavailable until it is back — retry shortly`,
      );
    }
  }

  /**
   * A request's Redis work: 503 at once when Redis is not connected, when the connection drops
   * meanwhile (the fail-fast connection rejects what is in flight) or after REQUEST_TIMEOUT_MS
   * without an answer. `onTimeout` says what the abandoned work became (enqueue).
   */
  private async request<T>(fn: () => Promise<T>, onTimeout?: () => Error): Promise<T> {
    this.up();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                onTimeout?.() ??
                  new BackendUnavailableError(`the cluster's Redis at ${this.client.target.display} did not answer within ${REQUEST_TIMEOUT_MS} ms`),
              ),
            REQUEST_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (e) {
      throw this.unavailable(e);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A command cut by the connection's loss, as a 503; anything else (an error reply, a bug) as is. */
  private unavailable(e: unknown): unknown {
    if (e instanceof BackendUnavailableError || e instanceof ReplyError || e instanceof ClusterPromptIdInUseError || e instanceof QueueWriteCutError) return e;
    if (!(e instanceof Error)) return e;
    const status = this.client.redis.status;
    if (status === 'ready' && !(e instanceof MaxRetriesPerRequestError)) return e;
    return new BackendUnavailableError(
      `the cluster's Redis at ${this.client.target.display} was lost during the request (${e.message}); the queue and history are unavailable until it is back — retry shortly`,
    );
  }

  remainingNow(): number {
    return this.remainingCache;
  }

  remaining(): Promise<number> {
    return this.request(() => this.client.jobs.remaining());
  }

  busy(): boolean {
    return this.running.size > 0;
  }

  executingNodeFor(sid: string): string | undefined {
    for (const r of this.running.values()) if (r.clientId === sid && r.node !== undefined) return r.node;
    return undefined;
  }

  promptIdState(promptId: string): Promise<PromptIdState | undefined> {
    return this.request(() => this.client.jobs.state(promptId));
  }

  async nextNumber(explicit: number | undefined, front: boolean): Promise<number> {
    if (explicit !== undefined) return explicit;
    // A cut INCR at most skips a number.
    return this.request(() => this.client.jobs.nextNumber(undefined, front));
  }

  async enqueue(job: Job, front: boolean): Promise<void> {
    const id = job.promptId;
    const attempt: AddAttempt = { sent: false, abandoned: false };
    try {
      await this.request(
        async () => {
          // The same id resubmitted after a cut: its fate is settled first, so the answer is
          // definite (queued before: 400 prompt_id_in_use; not queued: queued now, once).
          if (this.client.jobs.isUnsettled(id)) await this.settle();
          await this.client.jobs.add(job, { front, models: modelKeys(job.prompt), attempt });
        },
        () => {
          // From here on add() sends nothing that was not sent yet.
          attempt.abandoned = true;
          return this.cutError(id, attempt.sent ? 'unknown' : false, `no answer within ${REQUEST_TIMEOUT_MS} ms`);
        },
      );
    } catch (e) {
      if (e instanceof ClusterPromptIdInUseError) throw new PromptIdInUseError(e.promptId, e.state);
      if (e instanceof QueueWriteCutError) throw this.cutError(id, e.queued, (e.cause as Error | undefined)?.message ?? e.message);
      if (e instanceof PromptIdPendingError) {
        throw new BackendUnavailableError(`${e.message}; this request queued nothing — retry shortly: it then gets a definite answer`, false);
      }
      // Cut before the claim went out (in the settle of an earlier cut): nothing was queued.
      if (e instanceof BackendUnavailableError && e.queued === undefined) throw new BackendUnavailableError(e.message, false);
      throw e;
    }
    await this.notice({ reason: 'added', promptId: id });
  }

  /** The 503 of a /prompt cut while queueing: what became of the prompt, truthfully. */
  private cutError(promptId: string, queued: false | 'unknown', why: string): BackendUnavailableError {
    const redis = `the cluster's Redis at ${this.client.target.display}`;
    if (queued === false) {
      return new BackendUnavailableError(`${redis} was lost while queueing prompt ${promptId} (${why}); it was not queued — retry shortly`, false);
    }
    return new BackendUnavailableError(
      `${redis} was lost after prompt ${promptId} was sent to the queue and before Redis confirmed it (${why}): it may or may not be queued. ` +
        `Once the cluster answers again, GET /history/${promptId} and /queue tell; or submit it again with "prompt_id": "${promptId}" ` +
        `(400 prompt_id_in_use then means it was queued), which can never queue it twice`,
      'unknown',
    );
  }

  snapshot(): Promise<QueueSnapshot> {
    return this.request(() => this.client.jobs.snapshot());
  }

  // A cut delete/clear may have removed some jobs; repeating it removes the rest (or nothing).
  async deletePending(ids: readonly string[]): Promise<number> {
    const n = await this.request(() => this.client.jobs.delete(ids));
    if (n > 0) await this.notice({ reason: 'deleted' });
    return n;
  }

  async clearPending(): Promise<number> {
    const n = await this.request(() => this.client.jobs.clear());
    if (n > 0) await this.notice({ reason: 'cleared' });
    return n;
  }

  /** Tells every front end (this one included: it broadcasts `status` when it hears it) and idle worker. */
  private async notice(n: Parameters<ClusterClient['events']['publishQueue']>[0]): Promise<void> {
    // The change is made; a lost notice only delays the status (the poll re-reads the queue).
    await this.client.events.publishQueue(n).catch((e: Error) => this.ctx.log().warn(`queue notice: ${e.message}`));
  }

  async interrupt(promptId: string | undefined): Promise<void> {
    await this.request(() => this.client.interrupt(promptId));
  }

  async free(unloadModels: boolean, freeMemory: boolean): Promise<void> {
    if (!unloadModels && !freeMemory) return;
    await this.request(() => this.client.free(unloadModels, freeMemory));
  }

  private workers(): Promise<WorkerInfo[]> {
    const now = Date.now();
    if (!this.workersCache || now - this.workersCache.at > WORKERS_TTL_MS) {
      this.workersCache = { at: now, list: this.request(() => this.client.workers.list()) };
      this.workersCache.list.catch(() => (this.workersCache = undefined));
    }
    return this.workersCache.list;
  }

  /** Every live worker's devices, ComfyUI's device shape, named after their worker. */
  async devices(): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const w of await this.workers()) {
      for (const d of w.devices as Array<Record<string, unknown>>) {
        const num = (v: unknown) => (typeof v === 'number' ? v : 0);
        out.push({
          ...d,
          name: `${w.id}: ${String(d.name ?? 'device')}`,
          type: d.type ?? 'cpu',
          index: out.length,
          vram_total: num(d.vram_total ?? (d.info as Record<string, unknown> | undefined)?.totalMemory),
          vram_free: num(d.vram_free ?? (d.info as Record<string, unknown> | undefined)?.freeMemory),
          torch_vram_total: 0,
          torch_vram_free: 0,
          worker: w.id,
        });
      }
    }
    return out;
  }

  /** /system_stats `cluster`: this front end, Redis, and each worker's state, models and job. */
  async systemExtra(): Promise<Record<string, unknown>> {
    const workers = await this.workers();
    return {
      cluster: {
        redis: this.client.target.display,
        prefix: this.client.keys.prefix,
        front_end: { hostname: os.hostname(), pid: process.pid },
        workers: workers.map((w) => ({
          id: w.id,
          hostname: w.hostname,
          pid: w.pid,
          state: w.state,
          started: w.started,
          loaded_models: w.loadedModels,
          current: w.current ? { prompt_id: w.current.promptId, node: w.current.node ?? null, since: w.current.since } : null,
          executor_pid: w.executorPid ?? null,
          restarts: w.restarts,
          devices: w.devices.length,
        })),
      },
    };
  }

  async start(): Promise<void> {
    const redis = this.client.redis;
    if (redis.status !== 'ready') {
      // The start-up check passed a moment ago; the long-lived connection is still handshaking.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, REQUEST_TIMEOUT_MS);
        redis.once('ready', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await this.client.subscribe(
      {
        message: (m) => this.deliver(m),
        queue: () => this.refresh(true),
      },
      (e) => this.ctx.log().warn(`cluster message: ${e.message}`),
    );
    this.refresh(false);
    await this.refreshing;
    this.pollTimer = setInterval(() => this.refresh(false), POLL_MS);
    this.pollTimer.unref();
  }

  /** A job message to this front end's sockets: ComfyUI's routing rule (routeFor). */
  private deliver(m: ClusterMessage): void {
    if (!this.clients.has(m.promptId)) this.clients.set(m.promptId, m.clientId);
    if (m.kind === 'event' && m.type === 'executing') {
      // The replay for a reconnecting client, kept current between queue reads.
      const node = (m.data as { node?: unknown }).node;
      const r = this.running.get(m.promptId);
      if (node === null || node === undefined) {
        if (r) r.node = undefined;
      } else if (r) r.node = String(node);
      else this.running.set(m.promptId, { clientId: m.clientId, node: String(node) });
    }
    const route = routeFor(m);
    if (route.to === 'nobody') return;
    const sid = route.to === 'client' ? route.clientId : undefined;
    const hub = this.ctx.hub;
    if (m.kind === 'preview') {
      const meta = { node_id: m.node, prompt_id: m.promptId, display_node_id: m.displayNode, parent_node_id: null, real_node_id: m.node };
      hub.sendPreview(sid, m.image, m.format, meta, m.result);
    } else {
      hub.sendOrBroadcast(sid, { type: m.type, data: m.data });
    }
  }

  /**
   * Re-reads the queue count and the running jobs (the workers' small `running` records, not the
   * jobs' data: this runs on every queue notice). Calls while one runs fold into one more run
   * after it, at least REFRESH_GAP_MS later. `announce`: broadcast `status` afterwards (a queue
   * notice); else only on a change.
   */
  private refresh(announce: boolean): void {
    if (this.closed) return;
    if (this.refreshing) {
      this.refreshAgain ||= announce;
      return;
    }
    const wait = Math.max(0, this.lastRefresh + REFRESH_GAP_MS - Date.now());
    this.refreshing = (async () => {
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      this.lastRefresh = Date.now();
      try {
        const redis = this.client.redis;
        if (redis.status !== 'ready' || this.closed) return;
        if (this.client.jobs.unsettledCount > 0) await this.settle().catch((e: Error) => this.ctx.log().warn(`settling cut writes: ${e.message}`));
        const before = this.remainingCache;
        const [remaining, records] = await Promise.all([this.client.jobs.remaining(), redis.hgetall(this.client.keys.running)]);
        const next = new Map<string, RunningInfo>();
        for (const [promptId, raw] of Object.entries(records)) {
          let node: string | undefined;
          try {
            node = (JSON.parse(raw) as { node?: string }).node;
          } catch {
            // A record this version cannot read: still a running job.
          }
          next.set(promptId, { clientId: this.clients.get(promptId), node: node ?? this.running.get(promptId)?.node });
        }
        this.running = next;
        // Client ids are needed only while a job runs; forget the rest (bounded memory).
        for (const id of this.clients.keys()) if (!next.has(id)) this.clients.delete(id);
        this.remainingCache = remaining;
        if (announce || remaining !== before) this.ctx.broadcastStatus();
      } catch (e) {
        this.ctx.log().warn(`cluster queue read: ${(e as Error).message}`);
      }
    })().finally(() => {
      this.refreshing = undefined;
      if (this.refreshAgain) {
        this.refreshAgain = false;
        this.refresh(true);
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    await this.refreshing;
    await this.client.close();
  }
}
