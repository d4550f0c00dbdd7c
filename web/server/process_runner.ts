// The executor in a child process, seen from the server: forks web/server/worker/child_boot.mjs
// (a relay hosting the worker-thread executor, worker/child.ts), runs one job at a time there
// and relays its events. Worker threads share their process, so a native crash (SIGSEGV, abort,
// the OOM killer) inside a node would take a thread-hosted executor's server down with it; here
// it only ends the child: the job becomes an `execution_error` (WorkerCrashed, with the signal
// or exit code), and a fresh child is started with back-off. The engine cache lives in the
// child and is lost with it.
import { fork, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { failLostJob, recordEvent, type JobHandlers, type JobResult, type LostJob } from './runner.ts';
import type { Job } from './queue.ts';
import type { ChildInit, FromChild, ToChild } from './worker/protocol.ts';

interface Running extends LostJob {
  seq: number;
  /** Nodes the child named on its trace pipe for this job, in order (see WorkerInit.traceFd). */
  traced: string[];
}

/** The child's stdio: fd 3 is the IPC channel, fd 4 the trace pipe its worker writes to. */
const STDIO = ['ignore', 'inherit', 'inherit', 'ipc', 'pipe'] as const;
const TRACE_FD = 4;

/** How long close() waits for the child to leave on its own before killing it. */
const CLOSE_GRACE_MS = 2000;

export class ProcessRunner {
  private child: ChildProcess | undefined;
  private ready: Promise<void> | undefined;
  private running: Running | undefined;
  private seq = 0;
  private closed = false;
  /** Consecutive deaths without a job finishing in between, for the restart back-off. */
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  restarts = 0;
  /** Milliseconds from fork to the child's worker having loaded the nodes, for the last start. */
  lastStartMs: number | undefined;

  constructor(
    private readonly init: ChildInit,
    private readonly log: (msg: string) => void,
  ) {}

  /** Starts the child (if needed) and resolves once its worker has loaded the nodes. */
  start(): Promise<void> {
    if (this.ready) return this.ready;
    const t0 = performance.now();
    const child = fork(new URL('./worker/child_boot.mjs', import.meta.url), [], {
      // 'advanced' so preview bytes travel as Uint8Array, not as a JSON array of numbers.
      serialization: 'advanced',
      // The boot module registers tsx itself; the parent's flags (test runners, inspectors) stay out.
      execArgv: [],
      stdio: [...STDIO],
    });
    this.child = child;
    this.readTrace(child);
    this.ready = new Promise<void>((resolve, reject) => {
      child.on('message', (m: FromChild) => {
        if (m.type === 'ready') {
          this.lastStartMs = performance.now() - t0;
          if (m.workerError) this.log(`execution process: worker failed to start: ${m.workerError}`);
          resolve();
        } else if (m.type === 'log') this.log(m.message);
        else this.onMessage(m);
      });
      child.on('error', (err) => {
        // Spawn failures and IPC send errors; an exit, when one follows, is handled below.
        this.log(`execution process error: ${err.message}`);
        if (child.pid === undefined) {
          reject(new Error(`execution process failed to start: ${err.message}`));
          this.onDeath(child, `the execution process failed to start: ${err.message}`);
        }
      });
      // 'close', not 'exit': it comes once the trace pipe is drained, so the last node is known.
      child.on('close', (code, signal) => {
        const how = signal ? `was killed by signal ${signal}` : `exited with code ${code}`;
        reject(new Error(`execution process ${how} before it was ready`));
        this.onDeath(child, `the execution process ${how} (a native crash or an out-of-memory kill in the running node); a fresh one is being started`);
      });
    });
    // Handled by the callers of start()/run(); avoid an unhandled rejection when nobody waits.
    this.ready.catch(() => undefined);
    this.send(child, { type: 'init', init: { ...this.init, traceFd: TRACE_FD } });
    return this.ready;
  }

  private readTrace(child: ChildProcess): void {
    const pipe = child.stdio[TRACE_FD] as Readable;
    pipe.setEncoding('utf8');
    let buffered = '';
    pipe.on('data', (chunk: string) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const [promptId, node] = buffered.slice(0, nl).split('\t');
        buffered = buffered.slice(nl + 1);
        const r = this.running;
        if (this.child === child && r && r.job.promptId === promptId && node) r.traced.push(node);
      }
    });
  }

  private send(child: ChildProcess, m: ToChild): void {
    // A child that just died makes send() fail; its exit handler reports the job.
    if (child.connected) child.send(m, (err) => err && this.log(`execution process: cannot send ${m.type}: ${err.message}`));
  }

  private onMessage(m: Exclude<FromChild, { type: 'ready' } | { type: 'log' }>): void {
    const r = this.running;
    if (!r || m.seq !== r.seq) return;
    if (m.type === 'event') recordEvent(r, m.event);
    else if (m.type === 'preview') r.handlers.preview(m);
    else if (m.type === 'done') {
      this.running = undefined;
      this.failures = 0;
      r.resolve(m.result);
    }
  }

  /** The child died: fail the running job, then start a fresh child (with back-off). */
  private onDeath(child: ChildProcess, reason: string): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.ready = undefined;
    const r = this.running;
    this.running = undefined;
    if (r) {
      // The trace pipe is ahead of the IPC events when the crash came right after a node began.
      if (r.traced.length > r.executed.length) {
        r.executed = r.traced;
        r.currentNode = r.traced.at(-1);
      }
      failLostJob(r, reason);
    }
    if (this.closed) return;
    // A running job's client already hears the reason through its execution_error.
    if (!r) this.log(reason);
    this.restarts++;
    this.failures++;
    const delay = Math.min(30_000, 100 * 2 ** Math.min(this.failures - 1, 8));
    this.restartTimer = setTimeout(() => {
      if (!this.closed && !this.child) this.start().catch((e: Error) => this.log(e.message));
    }, delay);
    this.restartTimer.unref();
  }

  /** Read through a method: TypeScript narrows the field across the awaits below otherwise. */
  private current(): Running | undefined {
    return this.running;
  }

  /** The execution process's pid while one is up. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  get currentNode(): { promptId: string; node: string } | undefined {
    const r = this.running;
    return r?.currentNode ? { promptId: r.job.promptId, node: r.currentNode } : undefined;
  }

  async run(job: Job, handlers: JobHandlers): Promise<JobResult> {
    if (this.running) throw new Error('ProcessRunner.run: a job is already running');
    const seq = ++this.seq;
    const result = new Promise<JobResult>((resolve) => {
      this.running = { seq, job, handlers, resolve, messages: [], executed: [], currentNode: undefined, traced: [] };
    });
    try {
      await this.start();
    } catch (e) {
      const r = this.current();
      if (r?.seq === seq) {
        this.running = undefined;
        failLostJob(r, (e as Error).message, 'WorkerStartError');
      }
      return result;
    }
    if (this.current()?.seq !== seq) return result;
    // The client id stays here: the child has no WebSocket to route to.
    this.send(this.child!, { type: 'run', seq, job: { ...job, clientId: undefined } });
    return result;
  }

  /** Interrupts the running job (only if it is `promptId`, when given). */
  interrupt(promptId?: string): boolean {
    const r = this.running;
    if (!r || !this.child || (promptId !== undefined && r.job.promptId !== promptId)) return false;
    this.send(this.child, { type: 'interrupt', seq: r.seq });
    return true;
  }

  free(unloadModels: boolean, freeMemory: boolean): void {
    if (this.child) this.send(this.child, { type: 'free', unloadModels, freeMemory });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const c = this.child;
    this.child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    // Closing the channel makes the child exit; a node stuck in native code may not let it.
    if (c.connected) c.disconnect();
    else c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), CLOSE_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }
}
