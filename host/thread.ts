// The worker-thread transport: the executor (worker_entry.ts) in a worker_thread of this
// process. Interrupts go through shared memory, because a node blocking the worker's event loop
// cannot receive messages. A native crash in a node takes this whole process down: the server
// and the CLI put this transport inside a child process (process.ts, child.ts), never in their own.
import { Worker } from 'node:worker_threads';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.ts';
import { SupervisedRunner, type ExecutorEvents, type ExecutorHandle, type Transport } from './runner.ts';
import type { HostConfig } from './types.ts';

export class ThreadTransport implements Transport {
  readonly name = 'execution worker';

  constructor(private readonly init: HostConfig & { traceFd?: number }) {}

  open(events: ExecutorEvents): ExecutorHandle {
    const interrupt = new SharedArrayBuffer(4);
    const flag = new Int32Array(interrupt);
    const worker = new Worker(new URL('./worker_boot.mjs', import.meta.url), {
      workerData: { ...this.init, entry: new URL('./worker_entry.ts', import.meta.url).href, interrupt } satisfies WorkerInit,
      stdout: false,
      stderr: false,
    });
    let gone = false;
    const died = (reason: string, before: string) => {
      if (gone) return;
      gone = true;
      events.died(reason, before);
    };
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'ready') events.ready();
      else if (m.type === 'init_error') events.startFailed(new Error(`execution worker failed to start: ${m.message}`));
      else events.message(m);
    });
    worker.on('error', (err) => {
      events.log(`execution worker error: ${err.stack ?? err.message}`);
      died(`the execution worker crashed: ${err.message}`, `crashed before it was ready: ${err.message}`);
    });
    worker.on('exit', (code) => died(`the execution worker exited unexpectedly (exit code ${code})`, `exited with code ${code} before it was ready`));
    const post = (m: ToWorker) => worker.postMessage(m);
    return {
      pid: process.pid,
      run: (seq, job) =>
        post({
          type: 'run',
          seq,
          promptId: job.promptId,
          number: job.number,
          prompt: job.prompt,
          extraData: job.extraData,
          outputs: job.outputs,
          sensitive: job.sensitive,
        }),
      interrupt: (seq) => Atomics.store(flag, 0, seq),
      free: (unloadModels, freeMemory) => post({ type: 'free', unloadModels, freeMemory }),
      close: async () => {
        gone = true;
        await worker.terminate();
      },
    };
  }
}

/** An execution host on a worker thread of this process (the execution child's relay uses it). */
export function threadHost(init: HostConfig & { traceFd?: number }, log: (msg: string) => void): SupervisedRunner {
  return new SupervisedRunner(new ThreadTransport(init), log);
}
