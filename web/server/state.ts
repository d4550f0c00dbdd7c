// Everything the routes share: options, queue, history, the WebSocket hub, the main-thread
// engine (registry, validation, object_info) and the execution process, plus the scheduler loop
// that moves jobs from the queue through the worker into history.
import os from 'node:os';
import type { FastifyBaseLogger } from 'fastify';
import { HistoryStore, type HistoryEntry } from './history.ts';
import type { MainEngine } from '../../host/registry.ts';
import type { ResolvedOptions } from './options.ts';
import { PromptQueue, QueueStore, toQueueItem, type Job } from './queue.ts';
import { processHost } from '../../host/process.ts';
import type { ExecutionHost } from '../../host/types.ts';
import { WsHub, wsLimits } from './ws.ts';
import { featureFlags } from './features.ts';

/** Events ComfyUI sends to the job's client, or to everyone when the job has no client. */
// Current ComfyUI (comfy_execution/progress.py) sends progress_state with the job's client_id
// like `progress`; only `status` goes to every socket regardless. Broadcasting it made a client
// that queued nothing receive every job's progress (GBs for one 5,000-node prompt).
const BROADCAST_IF_NO_CLIENT = new Set(['progress', 'progress_state', 'execution_interrupted']);

export class ServerState {
  readonly queue: PromptQueue;
  readonly history: HistoryStore;
  readonly hub: WsHub;
  readonly runner: ExecutionHost;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private pumping = false;
  private closed = false;
  log: Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'> = console;

  constructor(
    readonly options: ResolvedOptions,
    readonly engine: MainEngine,
    private readonly nativeDevices: () => Promise<unknown[] | undefined>,
    /** The execution host; by default a child process (tests pass a stub). */
    host?: ExecutionHost,
  ) {
    this.history = new HistoryStore(options.userDir, options.maxHistory);
    const store = new QueueStore(options.userDir);
    const left = store.load();
    if (left.interrupted) this.recordStopped(left.interrupted);
    this.queue = new PromptQueue(store, left.pending);
    this.hub = new WsHub(
      {
        status: () => this.statusPayload(),
        featureFlags: () => featureFlags(options),
        executingNodeFor: (sid) => {
          const cur = this.queue.current;
          const at = this.runner.currentNode;
          return cur && cur.clientId === sid && at && at.promptId === cur.promptId ? at.node : undefined;
        },
      },
      wsLimits(options.wsMaxBufferedBytes),
    );
    this.runner =
      host ??
      processHost(
        {
          folders: { output: options.outputDir, input: options.inputDir, temp: options.tempDir, models: options.modelsDir },
          cache: options.cache,
          cacheSize: options.cacheSize,
          extraNodeModules: options.extraNodeModules,
        },
        (m) => this.log.warn(m),
      );
  }

  /** The job a previous server was running when it stopped (killed, crashed): a failed entry. */
  private recordStopped(job: Job): void {
    // Killed after the job's history entry was written but before its marker went: it finished.
    const done = this.history.get(job.promptId);
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
      this.history.add(job.promptId, {
        prompt: toQueueItem(job),
        outputs: {},
        status: { status_str: 'error', completed: false, messages: [['execution_error', data]] },
        meta: {},
      });
    } catch (e) {
      console.error(`history: cannot record the stopped job ${job.promptId}: ${(e as Error).message}`);
    }
  }

  statusPayload(): { status: { exec_info: { queue_remaining: number } } } {
    return { status: { exec_info: { queue_remaining: this.queue.remaining() } } };
  }

  /** Call after the queue changed: tells every client, then starts the next job if idle. */
  queueChanged(): void {
    this.hub.broadcast({ type: 'status', data: this.statusPayload() });
    void this.pump();
  }

  interrupt(promptId: string | undefined): void {
    this.runner.interrupt(promptId);
  }

  free(unloadModels: boolean, freeMemory: boolean): void {
    if (unloadModels || freeMemory) this.runner.free(unloadModels, freeMemory);
  }

  async devices(): Promise<unknown[]> {
    const native = await this.nativeDevices().catch(() => undefined);
    if (native && native.length > 0) return native;
    return [{ name: 'cpu', type: 'cpu', index: 0, vram_total: os.totalmem(), vram_free: os.freemem(), torch_vram_total: 0, torch_vram_free: 0 }];
  }

  startBackground(): void {
    this.keepAliveTimer = setInterval(
      () => {
        if (this.queue.current) this.hub.keepAlive(this.options.keepAliveMs);
      },
      Math.max(250, Math.floor(this.options.keepAliveMs / 4)),
    );
    this.keepAliveTimer.unref();
    // Start the execution process now so the first prompt does not pay for loading the nodes.
    this.runner.start().catch((e: Error) => this.log.error(e.message));
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
        this.hub.broadcast({ type: 'status', data: this.statusPayload() });
        try {
          await this.runJob(job);
        } catch (e) {
          // Whatever went wrong around the job, the queue must move on and the process stay up.
          this.log.error(`job ${job.promptId}: ${(e as Error).stack ?? String(e)}`);
          this.queue.finish(job.promptId);
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private async runJob(job: Job): Promise<void> {
    const sid = job.clientId;
    const result = await this.runner.run(job, {
      event: (e) => {
        if (e.type === 'executing' && e.data.node === null) return; // sent below, after history
        const msg = { type: e.type, data: e.data };
        if (BROADCAST_IF_NO_CLIENT.has(e.type)) this.hub.sendOrBroadcast(sid, msg);
        else this.hub.send(sid, msg);
      },
      preview: (p) =>
        this.hub.sendPreview(
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
    if (result.profile) this.log.info(`job ${job.promptId} op profile:\n${result.profile}`);
    const entry: HistoryEntry = { prompt: toQueueItem(job), outputs: result.outputs, status: result.status, meta: result.meta };
    try {
      this.history.add(job.promptId, entry);
    } catch (e) {
      this.log.error(`history: cannot store ${job.promptId}: ${(e as Error).message}`);
    }
    this.queue.finish(job.promptId);
    this.hub.broadcast({ type: 'status', data: this.statusPayload() });
    this.hub.send(sid, { type: 'executing', data: { node: null, prompt_id: job.promptId } });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.keepAliveTimer) clearInterval(this.keepAliveTimer);
    this.hub.close();
    await this.runner.close();
  }
}
