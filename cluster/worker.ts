// The worker role: takes prompts from the BullMQ queue one at a time, runs each on an
// ExecutionHost (the executor in a child process, so this event loop stays free to renew the
// job's lock), publishes its events and previews, writes its history entry, then completes the
// BullMQ job. See README.md for the keys, the lock settings and the exactly-once argument.
import os from 'node:os';
import { randomUUID } from 'node:crypto';
import { Worker, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { toQueueItem, type ExecutionHost, type Job, type JobResult } from '../host/types.ts';
import { checkRedis, connect, parseRedisUrl, type RedisStatus, type RedisTarget } from './connection.ts';
import { ClusterEvents, encodeQueueNotice, type ClusterMessage, type ControlMessage } from './events.ts';
import { FILE_INPUTS, FileSync, promptInputFiles, type LocalFolders } from './file_sync.ts';
import { RedisHistory, type HistoryEntry } from './history.ts';
import { ClusterJobs, decodeJob, type JobData } from './jobs.ts';
import { ClusterKeys, QUEUE_NAME } from './keys.ts';
import { holdsAll } from './models.ts';
import { RedisStore, type RedisStoreOptions } from './redis_store.ts';
import { LuaScript } from './script.ts';
import { WorkerRegistry, type WorkerInfo } from './workers.ts';

// A job's start in one round trip: 0 when the job already has a history entry (an earlier
// attempt recorded it and died before completing it: nothing to run); else the running record
// and the `started` queue notice. KEYS: history hash, running hash. ARGV: prompt id, running
// record, queue channel, notice JSON.
const START = new LuaScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`);

export interface ClusterWorkerOptions {
  /** redis://HOST:PORT[/DB], or a parsed target. */
  redis: string | RedisTarget;
  /** Makes the execution host (the real one: ProcessRunner; tests: a stub). */
  createHost: () => ExecutionHost;
  /** Key prefix shared by the cluster's front ends and workers (default "sana"). */
  prefix?: string;
  /** Unique per worker; default <hostname>-<pid>-<random>. */
  workerId?: string;
  /** /system_stats devices of this machine. */
  devices?: () => Promise<unknown[]>;
  /** History entries kept (the front ends' --max-history; default 1000). */
  maxHistory?: number;
  /** BullMQ lock of a running job, renewed every third of it (default 5000 ms). A worker killed
   *  mid-job loses its job to another worker within about lockDuration + 2 x stalledInterval. */
  lockDurationMs?: number;
  /** How often some worker looks for jobs whose lock expired (default 2500 ms). */
  stalledIntervalMs?: number;
  /** Worker deaths a job survives (BullMQ maxStalledCount, default 2): at the next one it fails
   *  with a history entry naming the reason. A job is thus started at most N + 1 times. */
  maxStalledCount?: number;
  /** How long an idle worker without the head job's models lets an idle worker that holds them
   *  take it first (default 300 ms; 0 turns affinity off). */
  affinityGraceMs?: number;
  /** Registry heartbeat period (default 1000 ms) and time to live (default 5000 ms). */
  heartbeatMs?: number;
  registryTtlMs?: number;
  /** Idle workers look at the queue this often even without a notice (default 1000 ms). */
  pollMs?: number;
  /** Start-up check timeout (default 3000 ms). */
  connectTimeoutMs?: number;
  log?: (msg: string) => void;
  /** The main Redis connection's status (connected / reconnecting / ready). */
  onStatus?: (s: RedisStatus) => void;
  /**
   * `--store redis` (redis_store.ts): before a job, the input files its prompt names are copied
   * from Redis into `folders`; its output and temp images go into Redis before each `executed`
   * message and before the history entry, under the names the store gives them (file_sync.ts).
   * Unset: the folders are shared by every machine (SharedDirStore) and nothing is copied.
   */
  redisStore?: RedisStoreOptions & {
    folders: LocalFolders;
    /** Node inputs naming files to copy in, by class (default FILE_INPUTS: LoadImage's image). */
    fileInputs?: Readonly<Record<string, readonly string[]>>;
  };
}

interface Current {
  job: Job;
  bull: BullJob<JobData>;
  token: string;
  models: string[];
  since: number;
  node: string | undefined;
  /** The lock went to someone else (we were presumed dead): results and events are dropped. */
  lost: boolean;
  /** An interrupt came before the host was running the job. */
  interruptRequested: boolean;
}

export interface WorkerCounters {
  completed: number;
  failedStalled: number;
  lostLocks: number;
  /** Jobs found already in history (an earlier attempt recorded it and died): completed unrun. */
  alreadyRecorded: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class ClusterWorker {
  readonly id: string;
  readonly keys: ClusterKeys;
  readonly counters: WorkerCounters = { completed: 0, failedStalled: 0, lostLocks: 0, alreadyRecorded: 0 };
  private readonly target: RedisTarget;
  private readonly o: Required<Omit<ClusterWorkerOptions, 'redis' | 'createHost' | 'prefix' | 'workerId' | 'devices' | 'onStatus' | 'redisStore'>>;
  private redis!: Redis;
  private sub!: Redis;
  private jobs!: ClusterJobs;
  private history!: RedisHistory;
  private events!: ClusterEvents;
  private registry!: WorkerRegistry;
  private bull!: Worker<JobData>;
  private host!: ExecutionHost;
  /** Copies files in and out when the store is Redis; undefined with shared folders. */
  private files: FileSync | undefined;
  private devices: unknown[] = [];
  private readonly started = Date.now();
  private loaded = new Set<string>();
  private current: Current | undefined;
  /** Interrupts heard while a fetch is in flight: BullMQ makes the job active (front ends list it
   *  as running) before the fetch's reply reaches this worker, so an interrupt for it can come
   *  before `current` is set. `all`: one without a prompt id. */
  private fetchInterrupts: { all: boolean; ids: Set<string> } | undefined;
  private closing = false;
  private state: WorkerInfo['state'] = 'starting';
  private loop: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private beating = false;
  private unsubscribe: (() => Promise<void>) | undefined;
  /** Set by a queue notice; consumed by idle(). A notice during a fetch is not lost. */
  private poked = false;
  private wake: (() => void) | undefined;
  private seq = 0;
  /** Workers in the registry at the last heartbeat (this one included): alone, there is nobody
   *  to defer to, and the head peek (2 round trips per job) is skipped. */
  private fleetSize = Number.POSITIVE_INFINITY;
  /** The head job this worker already deferred to a model holder (it waits once per job). */
  private deferredFor: string | undefined;

  constructor(private readonly options: ClusterWorkerOptions) {
    this.target = typeof options.redis === 'string' ? parseRedisUrl(options.redis) : options.redis;
    this.keys = new ClusterKeys(options.prefix);
    this.id = options.workerId ?? `${os.hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
    if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(this.id))
      throw new Error(`worker id must be 1-128 letters, digits, "_", ".", ":" or "-", got ${JSON.stringify(this.id)}`);
    this.o = {
      maxHistory: options.maxHistory ?? 1000,
      lockDurationMs: options.lockDurationMs ?? 5000,
      stalledIntervalMs: options.stalledIntervalMs ?? 2500,
      maxStalledCount: options.maxStalledCount ?? 2,
      affinityGraceMs: options.affinityGraceMs ?? 300,
      heartbeatMs: options.heartbeatMs ?? 1000,
      registryTtlMs: options.registryTtlMs ?? 5000,
      pollMs: options.pollMs ?? 1000,
      connectTimeoutMs: options.connectTimeoutMs ?? 3000,
      log: options.log ?? ((m) => process.stderr.write(`worker: ${m}\n`)),
    };
  }

  /**
   * Checks Redis (RedisUnavailableError when unreachable: nothing else is started), starts the
   * execution host, announces the worker and starts taking jobs.
   */
  async start(): Promise<void> {
    await checkRedis(this.target, this.o.connectTimeoutMs);
    const log = this.o.log;
    this.redis = connect(this.target, { onStatus: this.options.onStatus, connectionName: `sana-worker-${this.id}` });
    this.sub = connect(this.target, { connectionName: `sana-worker-${this.id}-sub` });
    this.jobs = new ClusterJobs(this.redis, this.keys);
    this.history = new RedisHistory(this.redis, this.keys, this.o.maxHistory);
    this.events = new ClusterEvents(this.redis, this.keys);
    this.registry = new WorkerRegistry(this.redis, this.keys, this.o.registryTtlMs);
    const rs = this.options.redisStore;
    if (rs) {
      // Never fail fast here: an output must wait for a reconnect, as the history write does.
      const store = RedisStore.open(this.target, this.keys, { ...rs, failFast: false }, `sana-worker-${this.id}-files`);
      this.files = new FileSync(store, rs.folders, log);
    }
    // Manual fetching (no processor): the worker decides when to take a job (model affinity)
    // and renews the lock itself; BullMQ's stalled checker still runs (startStalledCheckTimer).
    this.bull = new Worker<JobData>(QUEUE_NAME, null, {
      connection: this.redis,
      prefix: this.keys.prefix,
      name: this.id,
      autorun: false,
      lockDuration: this.o.lockDurationMs,
      stalledInterval: this.o.stalledIntervalMs,
      maxStalledCount: this.o.maxStalledCount,
      skipLockRenewal: true,
    });
    this.bull.on('error', (e) => log(`queue: ${e.message}`));
    this.bull.on('stalled', (jobId) => {
      log(`job ${jobId} lost its worker (lock expired); it goes back to the head of the queue`);
      void this.events.publishQueue({ reason: 'requeued', promptId: jobId, workerId: this.id }).catch(() => undefined);
    });
    this.host = this.options.createHost();
    // Loading the nodes now, so the first job does not pay for it; a failure here is reported
    // by the host as each job's error.
    await this.host.start().catch((e: Error) => log(`execution host failed to start: ${e.message}`));
    this.devices = (await this.options.devices?.().catch(() => undefined)) ?? [];
    this.unsubscribe = await this.events.subscribe(this.sub, { queue: () => this.poke(), control: (c) => this.onControl(c) }, (e) =>
      log(`bad message: ${e.message}`),
    );
    this.state = 'idle';
    await this.beat();
    this.heartbeat = setInterval(() => void this.beat(), this.o.heartbeatMs);
    await this.bull.startStalledCheckTimer();
    this.loop = this.run();
  }

  /** What the registry shows for this worker. */
  info(): WorkerInfo {
    const c = this.current;
    return {
      id: this.id,
      hostname: os.hostname(),
      pid: process.pid,
      started: this.started,
      devices: this.devices,
      loadedModels: [...this.loaded].sort(),
      state: this.state,
      current: c ? { promptId: c.job.promptId, node: c.node, since: c.since } : undefined,
      executorPid: this.host?.pid,
      restarts: this.host?.restarts ?? 0,
    };
  }

  private async beat(): Promise<void> {
    // One beat in flight at most: while Redis is down they would queue up.
    if (this.beating || !this.registry) return;
    this.beating = true;
    try {
      this.fleetSize = await this.registry.beat(this.info());
    } catch (e) {
      this.o.log(`heartbeat: ${(e as Error).message}`);
    } finally {
      this.beating = false;
    }
  }

  private poke(): void {
    this.poked = true;
    this.wake?.();
  }

  /** Waits for a queue notice, at most `ms`. */
  private idle(ms: number): Promise<void> {
    if (this.poked || this.closing) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.wake = done;
    });
  }

  private async run(): Promise<void> {
    while (!this.closing) {
      try {
        if (await this.shouldDefer()) await sleep(this.o.affinityGraceMs);
        if (this.closing) break;
        this.poked = false;
        const token = `${this.id}:${++this.seq}`;
        const heard = (this.fetchInterrupts = { all: false, ids: new Set<string>() });
        let job: BullJob<JobData> | undefined;
        try {
          job = await this.bull.getNextJob(token, { block: false });
        } finally {
          this.fetchInterrupts = undefined;
        }
        if (!job) {
          await this.idle(this.o.pollMs);
          continue;
        }
        await this.process(job, token, heard.all || heard.ids.has(job.id!));
      } catch (e) {
        // Redis down mid-fetch and the like: the connection reconnects on its own.
        this.o.log(`worker loop: ${(e as Error).message}`);
        await sleep(500);
      }
    }
  }

  /**
   * Model affinity: true when the head job's models are not all held here but an idle live
   * worker holds them all; this worker then waits affinityGraceMs (once per head job) so that
   * one takes it first. A heuristic (README.md): only the head job is considered, the registry
   * may be a heartbeat old, and a busy holder is never waited for.
   */
  private async shouldDefer(): Promise<boolean> {
    if (this.o.affinityGraceMs <= 0 || this.fleetSize <= 1) return false;
    const head = await this.jobs.head();
    if (!head || head.models.length === 0 || head.id === this.deferredFor) return false;
    if (holdsAll(this.loaded, head.models)) return false;
    const others = await this.registry.list();
    if (!others.some((w) => w.id !== this.id && w.state === 'idle' && holdsAll(w.loadedModels, head.models))) return false;
    this.deferredFor = head.id;
    return true;
  }

  private async process(bull: BullJob<JobData>, token: string, interruptRequested = false): Promise<void> {
    let job: Job;
    try {
      job = decodeJob(bull.data);
    } catch (e) {
      // Not something a front end of this version queued: fail it, nothing to run.
      this.o.log(`job ${bull.id}: unreadable data (${(e as Error).message}); failed`);
      await bull.moveToFailed(new Error(`unreadable job data: ${(e as Error).message}`), token, false).catch(() => undefined);
      await this.redis.hdel(this.keys.ids, bull.id!).catch(() => undefined);
      return;
    }
    const cur: Current = { job, bull, token, models: bull.data.models ?? [], since: Date.now(), node: undefined, lost: false, interruptRequested };
    this.current = cur;
    this.state = 'busy';
    const renew = setInterval(() => void this.renewLock(cur), Math.max(100, Math.floor(this.o.lockDurationMs / 3)));
    try {
      if (bull.deferredFailure) {
        await this.failStalled(cur);
        return;
      }
      const started = encodeQueueNotice({ reason: 'started', promptId: job.promptId, workerId: this.id });
      const fresh = await START.run(
        this.redis,
        [this.keys.history, this.keys.running],
        [job.promptId, this.runningRecord(cur), this.keys.queueChannel, started],
      );
      if (fresh === 0) {
        // An earlier attempt wrote the entry and died before completing the BullMQ job.
        this.counters.alreadyRecorded++;
        await this.finish(cur);
        return;
      }
      void this.beat();
      // The nodes read local files only: what the prompt names comes from the store first.
      if (this.files) await this.files.pull(promptInputFiles(job.prompt, this.options.redisStore?.fileInputs ?? FILE_INPUTS), job.promptId);
      const result = await this.execute(cur);
      if (cur.lost) return;
      const entry: HistoryEntry = { prompt: toQueueItem(job), outputs: result.outputs, status: result.status, meta: result.meta };
      const written = await this.history.add(job.promptId, entry, { token });
      if (written === 'lock-lost') {
        this.markLost(cur);
        return;
      }
      if (result.status.status_str === 'success' && cur.models.length > 0) this.loaded = new Set(cur.models);
      // Last, as the single-process server does: the client's "done" comes after history (the
      // entry is written; the publish goes out after finish's commands on the same connection).
      const done =
        written === 'added'
          ? { kind: 'event' as const, promptId: job.promptId, clientId: job.clientId, type: 'executing', data: { node: null, prompt_id: job.promptId } }
          : undefined;
      await this.finish(cur, done);
      this.counters.completed++;
    } finally {
      clearInterval(renew);
      this.current = undefined;
      this.state = this.closing ? 'stopping' : 'idle';
      void this.beat();
    }
  }

  private runningRecord(cur: Current): string {
    return JSON.stringify({ workerId: this.id, hostname: os.hostname(), pid: process.pid, since: cur.since, node: cur.node });
  }

  private async execute(cur: Current): Promise<JobResult> {
    const { job } = cur;
    const restarts = this.host.restarts;
    const publish = (p: Promise<unknown>) => p.catch((e: Error) => this.o.log(`publish: ${e.message}`));
    const files = this.files;
    // With a Redis store, an `executed` message goes out once its images are in the store (a
    // client fetches them from /view as soon as it hears it), and every message after it waits
    // its turn, so the order is kept. While nothing waits, messages go out at once, in order on
    // the one connection.
    const pushed = new Map<string, string>();
    let waiting = 0;
    let tail: Promise<void> = Promise.resolve();
    const inOrder = (send: () => Promise<unknown>) => {
      if (waiting === 0) return void publish(send());
      waiting++;
      tail = tail.then(() => publish(send())).then(() => void waiting--);
    };
    const running = this.host.run(job, {
      event: (e) => {
        if (cur.lost) return;
        if (e.type === 'executing') {
          if (e.data.node === null) return; // sent after the history entry
          if (typeof e.data.node === 'string') {
            cur.node = e.data.node;
            // Where the job is, for /queue and for the report if this worker dies here.
            void publish(this.redis.hset(this.keys.running, job.promptId, this.runningRecord(cur)));
          }
        }
        const send = (data: Record<string, unknown>) =>
          publish(this.events.publish({ kind: 'event', promptId: job.promptId, clientId: job.clientId, type: e.type, data }));
        if (files && e.type === 'executed' && e.data.output !== undefined) {
          waiting++;
          tail = tail
            .then(async () => {
              const output = await files.push(e.data.output, pushed, job.promptId);
              if (!cur.lost) await send({ ...e.data, output });
            })
            .then(
              () => void waiting--,
              (err: Error) => {
                waiting--;
                this.o.log(`job ${job.promptId}: ${err.message}`);
              },
            );
          return;
        }
        inOrder(() => send(e.data));
      },
      preview: (p) => {
        if (cur.lost) return;
        inOrder(() =>
          this.events.publish({
            kind: 'preview',
            promptId: job.promptId,
            clientId: job.clientId,
            node: p.node,
            displayNode: p.displayNode,
            format: p.format,
            result: p.result === true,
            image: p.data,
          }),
        );
      },
    });
    if (cur.interruptRequested) this.host.interrupt(job.promptId);
    const result = await running;
    // A restarted executor lost its model cache.
    if (this.host.restarts !== restarts) this.loaded.clear();
    await tail;
    // Before the history entry: every image it names is in the store, under the store's name.
    if (files && !cur.lost) return { ...result, outputs: await files.push(result.outputs, pushed, job.promptId) };
    return result;
  }

  /** Completes the BullMQ job (removing it) and says so. */
  /** Completes the BullMQ job, drops the running record and tells everyone; `last` (the
   *  client's `executing null`) is published after those. */
  private async finish(cur: Current, last?: ClusterMessage): Promise<void> {
    try {
      await cur.bull.moveToCompleted('done', cur.token, false);
    } catch (e) {
      // The lock went to another worker between our history write and here: it finds the entry
      // and completes the job without running it.
      this.o.log(`job ${cur.job.promptId}: cannot complete (${(e as Error).message})`);
    }
    // Sent back to back on the one connection: Redis runs them in this order, in one round trip.
    await Promise.all([
      this.redis.hdel(this.keys.running, cur.job.promptId),
      this.events.publishQueue({ reason: 'finished', promptId: cur.job.promptId, workerId: this.id }),
      last ? this.events.publish(last) : undefined,
    ]);
  }

  /** The job's workers died more than maxStalledCount times: fail it, once, with the reason. */
  private async failStalled(cur: Current): Promise<void> {
    const { job, bull } = cur;
    const raw = await this.redis.hget(this.keys.running, job.promptId);
    const last = raw ? (JSON.parse(raw) as { workerId?: string; hostname?: string; pid?: number; node?: string }) : {};
    const deaths = bull.stalledCounter;
    const node = last.node;
    const nodeType = node ? String((job.prompt[node] as { class_type?: unknown } | undefined)?.class_type ?? '') : '';
    const where = last.workerId
      ? `worker ${last.workerId} on ${last.hostname}, pid ${last.pid}${node ? `, in node ${node}${nodeType ? ` (${nodeType})` : ''}` : ''}`
      : 'unknown worker';
    const reason = `the job's worker died ${deaths} time${deaths === 1 ? '' : 's'} (last: ${where}); it is not retried again (max stalled count ${this.o.maxStalledCount})`;
    const data = {
      prompt_id: job.promptId,
      node_id: node ?? '',
      node_type: nodeType,
      executed: [],
      exception_message: reason,
      exception_type: 'WorkerLost',
      traceback: [],
      current_inputs: {},
      current_outputs: [],
      timestamp: Date.now(),
    };
    const entry: HistoryEntry = {
      prompt: toQueueItem(job),
      outputs: {},
      status: { status_str: 'error', completed: false, messages: [['execution_error', data]] },
      meta: {},
    };
    const written = await this.history.add(job.promptId, entry, { token: cur.token });
    if (written === 'lock-lost') return this.markLost(cur);
    this.o.log(`job ${job.promptId} failed: ${reason}`);
    try {
      await bull.moveToFailed(new Error(reason), cur.token, false);
    } catch (e) {
      this.o.log(`job ${job.promptId}: cannot mark failed (${(e as Error).message})`);
    }
    await this.redis.hdel(this.keys.running, job.promptId);
    this.counters.failedStalled++;
    await this.events.publishQueue({ reason: 'finished', promptId: job.promptId, workerId: this.id });
    if (written === 'added') {
      await this.events.publish({ kind: 'event', promptId: job.promptId, clientId: job.clientId, type: 'execution_error', data });
      await this.events.publish({
        kind: 'event',
        promptId: job.promptId,
        clientId: job.clientId,
        type: 'executing',
        data: { node: null, prompt_id: job.promptId },
      });
    }
  }

  private renewing = false;

  private async renewLock(cur: Current): Promise<void> {
    if (cur.lost || this.renewing) return;
    this.renewing = true;
    try {
      if ((await cur.bull.extendLock(cur.token, this.o.lockDurationMs)) !== 1) this.markLost(cur);
    } catch (e) {
      // Redis unreachable: the next tick tries again (the lock may survive a short outage).
      this.o.log(`lock renewal for ${cur.job.promptId}: ${(e as Error).message}`);
    } finally {
      this.renewing = false;
    }
  }

  /** Another worker owns the job now: stop it here and keep its result and events out. */
  private markLost(cur: Current): void {
    if (cur.lost) return;
    cur.lost = true;
    this.counters.lostLocks++;
    this.o.log(`job ${cur.job.promptId}: lock lost (this worker was presumed dead); stopping it here, another worker runs it`);
    this.host.interrupt(cur.job.promptId);
  }

  private onControl(c: ControlMessage): void {
    if (c.type === 'free') {
      this.host.free(c.unloadModels, c.freeMemory);
      if (c.unloadModels) this.loaded.clear();
      void this.beat();
      return;
    }
    const cur = this.current;
    if (!cur && this.fetchInterrupts) {
      if (c.promptId === undefined) this.fetchInterrupts.all = true;
      else this.fetchInterrupts.ids.add(c.promptId);
      return;
    }
    // Without a prompt id: every worker interrupts the job it runs (README.md).
    if (!cur || cur.lost || (c.promptId !== undefined && c.promptId !== cur.job.promptId)) return;
    cur.interruptRequested = true;
    this.host.interrupt(cur.job.promptId);
  }

  /**
   * Stops taking jobs, lets the running one finish (history written, job completed), leaves the
   * registry and closes. `force`: does not wait for the running job; its lock expires and
   * another worker takes it (it counts as one of its stalls).
   */
  async close(force = false): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.state = 'stopping';
    this.wake?.();
    if (!force) await this.loop?.catch(() => undefined);
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.registry) await this.registry.remove(this.id).catch(() => undefined);
    await this.unsubscribe?.().catch(() => undefined);
    await this.bull?.close(force).catch(() => undefined);
    await this.jobs?.close().catch(() => undefined);
    await this.host?.close().catch(() => undefined);
    await this.files?.store.close?.().catch(() => undefined);
    this.sub?.disconnect();
    this.redis?.disconnect();
  }
}
