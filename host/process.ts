// The child-process transport: forks child_boot.mjs (a relay hosting the worker-thread
// executor, child.ts) and talks to it over IPC. Worker threads share their process, so a native
// crash (SIGSEGV, abort, the OOM killer) inside a node would take a thread-hosted executor's
// server down with it; here it only ends the child, which the runner reports and replaces. The
// engine cache lives in the child and is lost with it.
import { fork, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { FromChild, ToChild } from './protocol.ts';
import { SupervisedRunner, type ExecutorEvents, type ExecutorHandle, type Transport } from './runner.ts';
import type { HostConfig } from './types.ts';

/** The child's stdio: fd 3 is the IPC channel, fd 4 the trace pipe its worker writes to. */
const STDIO = ['ignore', 'inherit', 'inherit', 'ipc', 'pipe'] as const;
const TRACE_FD = 4;

/** How long close() waits for the child to leave on its own before killing it. */
const CLOSE_GRACE_MS = 2000;

export class ProcessTransport implements Transport {
  readonly name = 'execution process';

  constructor(private readonly init: HostConfig) {}

  open(events: ExecutorEvents): ExecutorHandle {
    const child = fork(new URL('./child_boot.mjs', import.meta.url), [], {
      // 'advanced' so preview bytes travel as Uint8Array, not as a JSON array of numbers.
      serialization: 'advanced',
      // The boot module registers tsx itself; the parent's flags (test runners, inspectors) stay out.
      execArgv: [],
      stdio: [...STDIO],
    });
    const send = (m: ToChild) => {
      // A child that just died makes send() fail; its 'close' handler reports the job.
      if (child.connected) child.send(m, (err) => err && events.log(`execution process: cannot send ${m.type}: ${err.message}`));
    };
    readTrace(child, events);
    child.on('message', (m: FromChild) => {
      if (m.type === 'ready') events.ready(m.workerError && `worker failed to start: ${m.workerError}`);
      else if (m.type === 'log') events.log(m.message);
      else events.message(m);
    });
    child.on('error', (err) => {
      // Spawn failures and IPC send errors; an exit, when one follows, is reported by 'close'.
      events.log(`execution process error: ${err.message}`);
      if (child.pid === undefined) events.died(`the execution process failed to start: ${err.message}`, `failed to start: ${err.message}`);
    });
    // 'close', not 'exit': it comes once the trace pipe is drained, so the last node is known.
    child.on('close', (code, signal) => {
      if (child.pid === undefined) return; // reported by 'error'
      const how = signal ? `was killed by signal ${signal}` : `exited with code ${code}`;
      events.died(
        `the execution process ${how} (a native crash or an out-of-memory kill in the running node); a fresh one is being started`,
        `${how} before it was ready`,
      );
    });
    send({ type: 'init', init: { ...this.init, traceFd: TRACE_FD } });
    return {
      get pid() {
        return child.pid;
      },
      // The client id stays here: the child has no WebSocket to route to.
      run: (seq, job) => send({ type: 'run', seq, job: { ...job, clientId: undefined } }),
      interrupt: (seq) => send({ type: 'interrupt', seq }),
      free: (unloadModels, freeMemory) => send({ type: 'free', unloadModels, freeMemory }),
      close: () => closeChild(child),
    };
  }
}

function readTrace(child: ChildProcess, events: ExecutorEvents): void {
  const pipe = child.stdio[TRACE_FD] as Readable;
  pipe.setEncoding('utf8');
  let buffered = '';
  pipe.on('data', (chunk: string) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const [promptId, node] = buffered.slice(0, nl).split('\t');
      buffered = buffered.slice(nl + 1);
      if (promptId && node) events.trace(promptId, node);
    }
  });
}

async function closeChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  // Closing the channel makes the child exit; a node stuck in native code may not let it.
  if (c.connected) c.disconnect();
  else c.kill('SIGTERM');
  const timer = setTimeout(() => c.kill('SIGKILL'), CLOSE_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

/** The execution host of the server and the CLI: a worker thread inside a child process. */
export function processHost(init: HostConfig, log: (msg: string) => void): SupervisedRunner {
  return new SupervisedRunner(new ProcessTransport(init), log);
}
