// The execution child process: its main thread is a relay that hosts the worker-thread executor
// (a thread-transport runner, so a node that blocks the worker can still be interrupted through
// shared memory; this thread's event loop stays free to receive the parent's interrupt) and
// forwards jobs, events and previews to and from the parent over IPC. A native crash in a node
// kills this process only; the parent's runner sees the exit and reports the job (process.ts).
import type { FromChild, ToChild } from './protocol.ts';
import type { SupervisedRunner } from './runner.ts';
import { threadHost } from './thread.ts';

const send = (m: FromChild) => {
  // The parent may be gone (it closed the channel); there is nobody left to tell.
  if (process.connected) process.send!(m);
};

let runner: SupervisedRunner | undefined;
let current: { seq: number; promptId: string } | undefined;

async function init(m: Extract<ToChild, { type: 'init' }>): Promise<void> {
  runner = threadHost(m.init, (message) => send({ type: 'log', message }));
  let workerError: string | undefined;
  try {
    await runner.start();
  } catch (e) {
    // The runner retries on the next job and reports WorkerStartError there; the relay stays up.
    workerError = (e as Error).message;
  }
  send({ type: 'ready', workerError });
}

async function run(m: Extract<ToChild, { type: 'run' }>): Promise<void> {
  if (!runner) throw new Error(`execution child: job ${m.job.promptId} arrived before init`);
  current = { seq: m.seq, promptId: m.job.promptId };
  try {
    const result = await runner.run(m.job, {
      event: (event) => send({ type: 'event', seq: m.seq, event }),
      preview: (p) => send({ type: 'preview', seq: m.seq, ...p }),
    });
    send({ type: 'done', seq: m.seq, result });
  } finally {
    current = undefined;
  }
}

process.on('message', (m: ToChild) => {
  if (m.type === 'init') void init(m);
  else if (m.type === 'run') {
    run(m).catch((e: Error) => {
      send({ type: 'log', message: `execution child: ${e.stack ?? e.message}` });
      process.exit(1);
    });
  } else if (m.type === 'interrupt') {
    if (current?.seq === m.seq) runner?.interrupt(current.promptId);
  } else if (m.type === 'free') runner?.free(m.unloadModels, m.freeMemory);
});

// The parent closed the channel (close() or its own death): nothing may outlive it. A worker
// stuck in native code cannot be terminated, and process.exit() would wait for it, so after a
// grace period the process kills itself.
process.on('disconnect', () => {
  setTimeout(() => process.kill(process.pid, 'SIGKILL'), 1000);
  void (runner?.close() ?? Promise.resolve()).finally(() => process.exit(0));
});

// Ctrl+C in a terminal signals the whole process group; the server (or CLI) decides what it
// means (an interrupt, a shutdown), so this process must not die of it first.
process.on('SIGINT', () => undefined);
