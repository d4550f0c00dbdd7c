// The single-process backend (`sana-graph serve` without --redis): the queue and history on
// disk under the user dir, one execution host, and the scheduler loop ("pump") that moves jobs
// from the queue through the host into history, routing the host's events to WebSocket clients.
import os from 'node:os';
import type { FastifyBaseLogger } from 'fastify';
import { HistoryStore, type HistoryEntry } from './history.ts';
import type { ResolvedOptions } from './options.ts';
import { PromptQueue, QueueStore, toQueueItem, type Job } from './queue.ts';
import { processHost } from '../../host/process.ts';
import type { ExecutionHost } from '../../host/types.ts';
import type { WsHub } from './ws.ts';
import type { Backend, BackendHistory, PromptIdState, QueueSnapshot } from './backend.ts';

/** Events ComfyUI sends to the job's client, or to everyone when the job has no client. */
// Current ComfyUI (comfy_execution/progress.py) sends progress_state with the job's client_id
// like `progress`; only `status` goes to every socket regardless. Broadcasting it made a client
// that queued nothing receive every job's progress (GBs for one 5,000-node prompt).
const BROADCAST_IF_NO_CLIENT = new Set(['progress', 'progress_state', 'execution_interrupted']);

export type Logger = Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>;

/** What a backend gets from the server around it. */
export interface BackendContext {
  hub: WsHub;
  /** The server's logger (replaced once the app exists, hence a function). */
  log: () => Logger;
  /** Sends `status` (queue_remaining) to every socket. */
  broadcastStatus: () => void;
}

export class EmbeddedBackend implements Backend {
  readonly mode = 'embedded' as const;
  readonly queue: PromptQueue;
  readonly store: HistoryStore;
  readonly runner: ExecutionHost;
  readonly history: BackendHistory;
  private pumping = false;
  private closed = false;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly ctx: BackendContext,
    private readonly nativeDevices: () => Promise<unknown[] | undefined>,
    /** The execution host; by default a child process (tests pass a stub). */
    host?: ExecutionHost,
  ) {
    this.store = new HistoryStore(options.userDir, options.maxHistory);
    const qs = new QueueStore(options.userDir);
    const left = qs.load();
    if (left.interrupted) this.recordStopped(left.interrupted);
    this.queue = new PromptQueue(qs, left.pending);
    this.runner =
      host ??
      processHost(
        {
          folders: { output: options.outputDir, input: options.inputDir, temp: options.tempDir, models: options.modelsDir },
          cache: options.cache,
          cacheSize: options.cacheSize,
          extraNodeModules: options.extraNodeModules,
        },
        (m) => this.ctx.log().warn(m),
      );
    const store = this.store;
    this.history = {
      list: async (maxItems, offset) => store.list(maxItems, offset),
      get: async (id) => store.get(id),
      delete: async (ids) => store.delete(ids),
      clear: async () => store.clear(),
    };
  }

  /** The job a previous server was running when it stopped (killed, crashed): a failed entry. */
  private recordStopped(job: Job): void {
    // Killed after the job's history entry was written but before its marker went: it finished.
    const done = this.store.get(job.promptId);
    if (done && done.prompt[0] === job.number && done.prompt[3].create_time === job.extraData.create_time) return;
    const data = {
      prompt_id: job.promptId,
      node_id: '',
      node_type: '',
      executed: [],
      exception_message: 'The server stopped during execution of this prompt (it was killed, crashed or shut down); it did not finish.',
      exception_type: 'ServerStopped',
      traceback: [],
      current_inputs: {},
      current_outputs: [],
      timestamp: Date.now(),
    };
    try {
      this.store.add(job.promptId, {
        prompt: toQueueItem(job),
        outputs: {},
        status: { status_str: 'error', completed: false, messages: [['execution_error', data]] },
        meta: {},
      });
    } catch (e) {
      console.error(`history: cannot record the stopped job ${job.promptId}: ${(e as Error).message}`);
    }
  }

  remainingNow(): number {
    return this.queue.remaining();
  }

  async remaining(): Promise<number> {
    return this.queue.remaining();
  }

  busy(): boolean {
    return this.queue.current !== undefined;
  }

  executingNodeFor(sid: string): string | undefined {
    const cur = this.queue.current;
    const at = this.runner.currentNode;
    return cur && cur.clientId === sid && at && at.promptId === cur.promptId ? at.node : undefined;
  }

  async promptIdState(promptId: string): Promise<PromptIdState | undefined> {
    if (this.queue.current?.promptId === promptId) return 'running';
    if (this.queue.snapshot().queue_pending.some((item) => item[1] === promptId)) return 'queued';
    return this.store.has(promptId) ? 'in history' : undefined;
  }

  async nextNumber(explicit: number | undefined, front: boolean): Promise<number> {
    return this.queue.nextNumber(explicit, front);
  }

  async enqueue(job: Job): Promise<void> {
    // One process: nothing can take the id between promptIdState() and here.
    this.queue.put(job);
    this.queueChanged();
  }

  async snapshot(): Promise<QueueSnapshot> {
    return this.queue.snapshot();
  }

  async deletePending(ids: readonly string[]): Promise<number> {
    const n = this.queue.delete(ids);
    if (n > 0) this.queueChanged();
    return n;
  }

  async clearPending(): Promise<number> {
    const n = this.queue.clear();
    if (n > 0) this.queueChanged();
    return n;
  }

  async interrupt(promptId: string | undefined): Promise<void> {
    this.runner.interrupt(promptId);
  }

  async free(unloadModels: boolean, freeMemory: boolean): Promise<void> {
    if (unloadModels || freeMemory) this.runner.free(unloadModels, freeMemory);
  }

  async devices(): Promise<unknown[]> {
    const native = await this.nativeDevices().catch(() => undefined);
    if (native && native.length > 0) return native;
    return [{ name: 'cpu', type: 'cpu', index: 0, vram_total: os.totalmem(), vram_free: os.freemem(), torch_vram_total: 0, torch_vram_free: 0 }];
  }

  async systemExtra(): Promise<Record<string, unknown>> {
    return {};
  }

  /** Call after the queue changed: tells every client, then starts the next job if idle. */
  private queueChanged(): void {
    this.ctx.broadcastStatus();
    void this.pump();
  }

  async start(): Promise<void> {
    // Start the execution process now so the first prompt does not pay for loading the nodes.
    this.runner.start().catch((e: Error) => this.ctx.log().error(e.message));
    // Jobs restored from the previous run's queue.
    if (this.queue.remaining() > 0) this.queueChanged();
  }

  /** Runs queued jobs one after another until the queue is empty. */
  private async pump(): Promise<void> {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    try {
      for (;;) {
        // After close() the pending jobs stay queued (on disk) for the next start.
        if (this.closed) break;
        const job = this.queue.take();
        if (!job) break;
        this.ctx.broadcastStatus();
        try {
          await this.runJob(job);
        } catch (e) {
          // Whatever went wrong around the job, the queue must move on and the process stay up.
          this.ctx.log().error(`job ${job.promptId}: ${(e as Error).stack ?? String(e)}`);
          this.queue.finish(job.promptId);
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private async runJob(job: Job): Promise<void> {
    const sid = job.clientId;
    const hub = this.ctx.hub;
    const result = await this.runner.run(job, {
      event: (e) => {
        if (e.type === 'executing' && e.data.node === null) return; // sent below, after history
        const msg = { type: e.type, data: e.data };
        if (BROADCAST_IF_NO_CLIENT.has(e.type)) hub.sendOrBroadcast(sid, msg);
        else hub.send(sid, msg);
      },
      preview: (p) =>
        hub.sendPreview(
          sid,
          p.data,
          p.format,
          {
            node_id: p.node,
            prompt_id: job.promptId,
            display_node_id: p.displayNode,
            parent_node_id: null,
            real_node_id: p.node,
          },
          p.result === true,
        ),
    });
    if (result.profile) this.ctx.log().info(`job ${job.promptId} op profile:\n${result.profile}`);
    const entry: HistoryEntry = { prompt: toQueueItem(job), outputs: result.outputs, status: result.status, meta: result.meta };
    try {
      this.store.add(job.promptId, entry);
    } catch (e) {
      this.ctx.log().error(`history: cannot store ${job.promptId}: ${(e as Error).message}`);
    }
    this.queue.finish(job.promptId);
    this.ctx.broadcastStatus();
    hub.send(sid, { type: 'executing', data: { node: null, prompt_id: job.promptId } });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.runner.close();
  }
}
