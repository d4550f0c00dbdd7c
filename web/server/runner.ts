// The execution worker, seen from the execution process's main thread (the relay,
// worker/child.ts; the server reaches that process through process_runner.ts): starts
// web/server/worker/entry.ts in a worker_thread, runs one job at a time there, relays its
// events, interrupts it through shared memory (a node blocking the worker's event loop cannot
// receive messages), and restarts it when it dies, turning the lost job into an
// `execution_error`.
import { Worker } from 'node:worker_threads';
import type { HistoryEntry } from './history.ts';
import type { Job } from './queue.ts';
import type { FromWorker, ToWorker, WorkerInit } from './worker/protocol.ts';

/** `profile`: the op profile tables (SANA_PROFILE=1), carried back with the result because a
 *  worker thread's stderr may not be flushed before its process exits. */
export type JobResult = Pick<HistoryEntry, 'outputs' | 'status' | 'meta'> & { profile?: string };

export interface JobHandlers {
  event(e: { type: string; data: Record<string, unknown> }): void;
  preview(p: { node: string; displayNode: string; format: 'png' | 'jpeg'; data: Uint8Array; result?: boolean }): void;
}

interface Running extends LostJob {
  seq: number;
}

export const HISTORY_TYPES = new Set(['execution_start', 'execution_cached', 'execution_success', 'execution_error', 'execution_interrupted']);

/** What a runner tracks of the job in flight, enough to report it when its executor dies. */
export interface LostJob {
  job: Job;
  handlers: JobHandlers;
  resolve(r: JobResult): void;
  messages: HistoryEntry['status']['messages'];
  /** Node ids in `executing` order; the last one is the node that was running. */
  executed: string[];
  currentNode: string | undefined;
}

/** Notes a job event for history and crash reports, then hands it to the job's handlers. */
export function recordEvent(r: LostJob, event: { type: string; data: Record<string, unknown> }): void {
  if (HISTORY_TYPES.has(event.type)) r.messages.push([event.type, event.data]);
  if (event.type === 'executing') {
    const node = event.data.node;
    if (typeof node === 'string') {
      r.currentNode = node;
      r.executed.push(node);
    }
  }
  r.handlers.event(event);
}

/**
 * Ends a job whose executor died under it (or never started): an `execution_error` naming the
 * node that was running goes to the client and into the job's history messages.
 */
export function failLostJob(r: LostJob, reason: string, exceptionType = 'WorkerCrashed'): void {
  const node = r.currentNode;
  const data = {
    prompt_id: r.job.promptId,
    node_id: node ?? '',
    node_type: node ? String((r.job.prompt[node] as { class_type?: unknown } | undefined)?.class_type ?? '') : '',
    executed: r.executed.slice(0, -1),
    exception_message: reason,
    exception_type: exceptionType,
    traceback: [],
    current_inputs: {},
    current_outputs: [],
    timestamp: Date.now(),
  };
  r.messages.push(['execution_error', data]);
  r.handlers.event({ type: 'execution_error', data });
  r.resolve({ outputs: {}, meta: {}, status: { status_str: 'error', completed: false, messages: r.messages } });
}

export class WorkerRunner {
  private worker: Worker | undefined;
  private ready: Promise<void> | undefined;
  private running: Running | undefined;
  private seq = 0;
  private closed = false;
  private readonly interruptBuf = new SharedArrayBuffer(4);
  private readonly interruptView = new Int32Array(this.interruptBuf);
  /** Consecutive start failures, for the restart back-off. */
  private failures = 0;
  restarts = 0;

  constructor(
    private readonly init: Omit<WorkerInit, 'entry' | 'interrupt'>,
    private readonly log: (msg: string) => void,
  ) {}

  /** Starts the worker (if needed) and resolves once its nodes are loaded. */
  start(): Promise<void> {
    if (this.ready) return this.ready;
    const worker = new Worker(new URL('./worker/boot.mjs', import.meta.url), {
      workerData: { ...this.init, entry: new URL('./worker/entry.ts', import.meta.url).href, interrupt: this.interruptBuf } satisfies WorkerInit,
      stdout: false,
      stderr: false,
    });
    this.worker = worker;
    this.ready = new Promise<void>((resolve, reject) => {
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          this.failures = 0;
          resolve();
        } else if (m.type === 'init_error') reject(new Error(`execution worker failed to start: ${m.message}`));
        else this.onMessage(m);
      });
      worker.on('error', (err) => {
        this.log(`execution worker error: ${err.stack ?? err.message}`);
        reject(err);
        this.onDeath(worker, `the execution worker crashed: ${err.message}`);
      });
      worker.on('exit', (code) => {
        reject(new Error(`execution worker exited with code ${code} before it was ready`));
        this.onDeath(worker, `the execution worker exited unexpectedly (exit code ${code})`);
      });
    });
    // Handled by the callers of start()/run(); avoid an unhandled rejection when nobody waits.
    this.ready.catch(() => undefined);
    return this.ready;
  }

  private onMessage(m: FromWorker): void {
    const r = this.running;
    if (!r || !('seq' in m) || m.seq !== r.seq) return;
    if (m.type === 'event') {
      recordEvent(r, m.event);
    } else if (m.type === 'preview') {
      r.handlers.preview(m);
    } else if (m.type === 'done') {
      this.running = undefined;
      r.resolve(m.result);
    }
  }

  /** The worker died: fail the running job, then start a fresh worker (with back-off). */
  private onDeath(worker: Worker, reason: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.ready = undefined;
    const r = this.running;
    this.running = undefined;
    if (r) failLostJob(r, reason);
    if (this.closed) return;
    this.restarts++;
    this.failures++;
    const delay = Math.min(30_000, 100 * 2 ** Math.min(this.failures - 1, 8));
    setTimeout(() => {
      if (!this.closed && !this.worker) this.start().catch((e: Error) => this.log(e.message));
    }, delay).unref();
  }

  /** Read through a method: TypeScript narrows the field across the awaits above otherwise. */
  private current(): Running | undefined {
    return this.running;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  get currentNode(): { promptId: string; node: string } | undefined {
    const r = this.running;
    return r?.currentNode ? { promptId: r.job.promptId, node: r.currentNode } : undefined;
  }

  async run(job: Job, handlers: JobHandlers): Promise<JobResult> {
    if (this.running) throw new Error('WorkerRunner.run: a job is already running');
    const seq = ++this.seq;
    const result = new Promise<JobResult>((resolve) => {
      this.running = { seq, job, handlers, resolve, messages: [], executed: [], currentNode: undefined };
    });
    try {
      await this.start();
    } catch (e) {
      // The worker could not start (bad node module, ...): report it as this job's error.
      const r = this.current();
      if (r?.seq === seq) {
        this.running = undefined;
        failLostJob(r, (e as Error).message, 'WorkerStartError');
      }
      return result;
    }
    if (this.current()?.seq !== seq) return result;
    const msg: ToWorker = { type: 'run', seq, promptId: job.promptId, number: job.number, prompt: job.prompt, extraData: job.extraData, outputs: job.outputs, sensitive: job.sensitive };
    this.worker!.postMessage(msg);
    return result;
  }

  /** Interrupts the running job (only if it is `promptId`, when given). */
  interrupt(promptId?: string): boolean {
    const r = this.running;
    if (!r || (promptId !== undefined && r.job.promptId !== promptId)) return false;
    Atomics.store(this.interruptView, 0, r.seq);
    return true;
  }

  free(unloadModels: boolean, freeMemory: boolean): void {
    this.worker?.postMessage({ type: 'free', unloadModels, freeMemory } satisfies ToWorker);
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}
