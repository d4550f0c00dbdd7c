// The supervised runner: one executor at a time behind a transport (a worker thread, thread.ts,
// or a child process, process.ts), one job at a time on it. It starts the executor, waits for
// it to load the nodes, relays the job's events, and when the executor dies turns the job it was
// running into an `execution_error` (WorkerCrashed, naming the node that was running) and starts
// a fresh one with back-off. The transports only move messages; every decision is made here.
import { jobErrorData, type JobMessage } from './protocol.ts';
import type { ExecutionHost, Job, JobHandlers, JobResult, StatusMessage } from './types.ts';

/** What a transport tells the runner about one executor it opened. */
export interface ExecutorEvents {
  /** The nodes are loaded; `warning`: the executor is up but reported a problem (logged). */
  ready(warning?: string): void;
  /** The executor cannot start (a broken node module); it will also report its death. */
  startFailed(err: Error): void;
  message(m: JobMessage): void;
  /** Out-of-band word that `node` of job `promptId` is about to run (see WorkerInit.traceFd). */
  trace(promptId: string, node: string): void;
  log(message: string): void;
  /**
   * The executor is gone. `reason` goes into the running job's error; `before` words the same
   * for start()'s rejection ("... before it was ready").
   */
  died(reason: string, before: string): void;
}

/** One running executor, as its transport exposes it. */
export interface ExecutorHandle {
  readonly pid: number | undefined;
  run(seq: number, job: Job): void;
  interrupt(seq: number): void;
  free(unloadModels: boolean, freeMemory: boolean): void;
  /** Ends the executor (killing it if it will not leave); resolves once it is gone. */
  close(): Promise<void>;
}

export interface Transport {
  /** What the executor is called in messages ("execution worker", "execution process"). */
  readonly name: string;
  open(events: ExecutorEvents): ExecutorHandle;
}

/** First restart delay after a death, doubled per further death, capped at RESTART_MAX_MS. */
export const RESTART_MIN_MS = 100;
export const RESTART_MAX_MS = 30_000;

/** The restart delay after `failures` consecutive deaths (1 = the first). */
export function restartDelay(failures: number): number {
  return Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** Math.min(Math.max(failures, 1) - 1, 16));
}

/** The job in flight, enough to report it when its executor dies. */
interface Running {
  seq: number;
  job: Job;
  handlers: JobHandlers;
  resolve(r: JobResult): void;
  messages: StatusMessage[];
  /** Node ids in `executing` order; the last one is the node that was running. */
  executed: string[];
  currentNode: string | undefined;
  /** Nodes named on the trace channel for this job, in order; ahead of `executed` when the
   *  executor died right after a node began (its IPC events were still queued). */
  traced: string[];
}

const HISTORY_TYPES = new Set(['execution_start', 'execution_cached', 'execution_success', 'execution_error', 'execution_interrupted']);

export class SupervisedRunner implements ExecutionHost {
  private handle: ExecutorHandle | undefined;
  private ready: Promise<void> | undefined;
  private running: Running | undefined;
  private seq = 0;
  private closed = false;
  /**
   * Deaths since a job last finished, for the restart back-off. It resets when a job completes
   * on the executor, not when one becomes ready: loading the nodes proves little (an executor
   * that starts fine and then dies idle, or on every job, would otherwise restart every 100 ms
   * for ever); finishing a job shows the restarted executor does its work.
   */
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  restarts = 0;
  /** Milliseconds from opening the executor to its nodes being loaded, for the last start. */
  lastStartMs: number | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly log: (msg: string) => void,
  ) {}

  /** Starts the executor (if needed) and resolves once it has loaded the nodes. */
  start(): Promise<void> {
    if (this.ready) return this.ready;
    if (this.closed) return Promise.reject(new Error(`${this.transport.name}: the host is closed`));
    const t0 = performance.now();
    let handle: ExecutorHandle | undefined;
    // Events are only honoured from the executor this runner currently holds: a dead one's
    // late messages (or a closed one's) must not touch the next job.
    const mine = () => handle !== undefined && this.handle === handle;
    this.ready = new Promise<void>((resolve, reject) => {
      handle = this.transport.open({
        ready: (warning) => {
          if (!mine()) return;
          this.lastStartMs = performance.now() - t0;
          if (warning) this.log(`${this.transport.name}: ${warning}`);
          resolve();
        },
        startFailed: (err) => mine() && reject(err),
        message: (m) => mine() && this.onMessage(m),
        trace: (promptId, node) => {
          const r = this.running;
          if (mine() && r && r.job.promptId === promptId) r.traced.push(node);
        },
        log: (message) => this.log(message),
        died: (reason, before) => {
          if (!mine()) return;
          reject(new Error(`${this.transport.name} ${before}`));
          this.onDeath(reason);
        },
      });
    });
    this.handle = handle;
    // Handled by the callers of start()/run(); avoid an unhandled rejection when nobody waits.
    this.ready.catch(() => undefined);
    return this.ready;
  }

  private onMessage(m: JobMessage): void {
    const r = this.running;
    if (!r || m.seq !== r.seq) return;
    if (m.type === 'event') {
      const event = m.event;
      if (HISTORY_TYPES.has(event.type)) r.messages.push([event.type, event.data]);
      if (event.type === 'executing' && typeof event.data.node === 'string') {
        r.currentNode = event.data.node;
        r.executed.push(event.data.node);
      }
      r.handlers.event(event);
    } else if (m.type === 'preview') {
      const { type: _t, seq: _s, ...preview } = m;
      r.handlers.preview(preview);
    } else {
      this.running = undefined;
      this.failures = 0;
      r.resolve(m.result);
    }
  }

  /** The executor died: fail the running job, then start a fresh executor (with back-off). */
  private onDeath(reason: string): void {
    this.handle = undefined;
    this.ready = undefined;
    const r = this.running;
    this.running = undefined;
    if (r) this.failJob(r, reason, 'WorkerCrashed');
    if (this.closed) return;
    // A running job's client already hears the reason through its execution_error.
    if (!r) this.log(reason);
    this.restarts++;
    this.failures++;
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.closed && !this.handle) this.start().catch((e: Error) => this.log(e.message));
    }, restartDelay(this.failures));
    // A waiting restart must not keep a process alive that has nothing else to do.
    this.restartTimer.unref();
  }

  /**
   * Ends a job whose executor died under it (or never started): an `execution_error` naming the
   * node that was running goes to the client and into the job's history messages.
   */
  private failJob(r: Running, reason: string, exceptionType: string): void {
    if (r.traced.length > r.executed.length) {
      r.executed = r.traced;
      r.currentNode = r.traced.at(-1);
    }
    const node = r.currentNode;
    const data = jobErrorData({
      promptId: r.job.promptId,
      node,
      nodeType: node ? String((r.job.prompt[node] as { class_type?: unknown } | undefined)?.class_type ?? '') : '',
      executed: r.executed.slice(0, -1),
      message: reason,
      type: exceptionType,
    });
    r.messages.push(['execution_error', data]);
    r.handlers.event({ type: 'execution_error', data });
    r.resolve({ outputs: {}, meta: {}, status: { status_str: 'error', completed: false, messages: r.messages } });
  }

  /** Read through a method: TypeScript narrows the field across the awaits below otherwise. */
  private current(): Running | undefined {
    return this.running;
  }

  get pid(): number | undefined {
    return this.handle?.pid;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  get currentNode(): { promptId: string; node: string } | undefined {
    const r = this.running;
    return r?.currentNode ? { promptId: r.job.promptId, node: r.currentNode } : undefined;
  }

  async run(job: Job, handlers: JobHandlers): Promise<JobResult> {
    if (this.running) throw new Error(`${this.transport.name}: a job is already running`);
    const seq = ++this.seq;
    const result = new Promise<JobResult>((resolve) => {
      this.running = { seq, job, handlers, resolve, messages: [], executed: [], currentNode: undefined, traced: [] };
    });
    try {
      await this.start();
    } catch (e) {
      // The executor could not start (bad node module, closed host...): this job's error.
      const r = this.current();
      if (r?.seq === seq) {
        this.running = undefined;
        this.failJob(r, (e as Error).message, 'WorkerStartError');
      }
      return result;
    }
    if (this.current()?.seq !== seq) return result;
    this.handle!.run(seq, job);
    return result;
  }

  /** Interrupts the running job (only if it is `promptId`, when given); false when there is none. */
  interrupt(promptId?: string): boolean {
    const r = this.running;
    if (!r || !this.handle || (promptId !== undefined && r.job.promptId !== promptId)) return false;
    this.handle.interrupt(r.seq);
    return true;
  }

  free(unloadModels: boolean, freeMemory: boolean): void {
    this.handle?.free(unloadModels, freeMemory);
  }

  /** Ends the executor; no restart is pending afterwards and none starts. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const h = this.handle;
    this.handle = undefined;
    this.ready = undefined;
    // A job still running never resolves: nothing may be recorded for it after close() (the
    // server's next start reports it as ServerStopped from the queue's running marker).
    this.running = undefined;
    if (h) await h.close();
  }
}
