// Messages between the runner and its executor: over postMessage to the worker thread
// (thread.ts <-> worker_entry.ts), and over IPC to the execution child process
// (process.ts <-> child.ts, whose relay forwards them to its own worker thread).
import type { HostConfig, Job, JobPreview, JobResult } from './types.ts';

/** ComfyUI's `execution_error` data for a job that failed outside any node's own error report
 *  (its executor died or could not start, or the engine itself threw). */
export function jobErrorData(o: {
  promptId: string;
  node?: string;
  nodeType?: string;
  executed?: string[];
  message: string;
  type: string;
  traceback?: string[];
}): Record<string, unknown> {
  return {
    prompt_id: o.promptId,
    node_id: o.node ?? '',
    node_type: o.nodeType ?? '',
    executed: o.executed ?? [],
    exception_message: o.message,
    exception_type: o.type,
    traceback: o.traceback ?? [],
    current_inputs: {},
    current_outputs: [],
    timestamp: Date.now(),
  };
}

export interface WorkerInit extends HostConfig {
  /** File URL of worker_entry.ts, imported by worker_boot.mjs. */
  entry: string;
  /**
   * Int32Array view: [0] = sequence number of the job to interrupt (0 = none). Written by the
   * main thread with Atomics so a node that blocks the worker's event loop still sees it.
   */
  interrupt: SharedArrayBuffer;
  /**
   * A file descriptor (a pipe to the server) that the worker writes `<prompt id>\t<node id>\n`
   * to, synchronously, before each node runs: unlike a message, it is out of the process before
   * the node can crash it, so the server can still name the node that killed the process.
   */
  traceFd?: number;
}

export interface RunJob {
  type: 'run';
  seq: number;
  promptId: string;
  number: number;
  prompt: Record<string, unknown>;
  extraData: Record<string, unknown>;
  outputs: string[];
  sensitive: Record<string, unknown>;
}

export type ToWorker = RunJob | { type: 'free'; unloadModels: boolean; freeMemory: boolean };

/** What an executor reports about job `seq`, whichever transport carries it. */
export type JobMessage =
  /** A JSON job event (executing, progress, executed, execution_*...). */
  | { type: 'event'; seq: number; event: { type: string; data: Record<string, unknown> } }
  | ({ type: 'preview'; seq: number } & JobPreview)
  | { type: 'done'; seq: number; result: JobResult };

export type FromWorker = { type: 'ready' } | { type: 'init_error'; message: string } | JobMessage;

/** What the server gives the execution process: the worker's settings, less what it makes itself. */
export type ChildInit = Omit<WorkerInit, 'entry' | 'interrupt'>;

/** Messages from the server to the execution child process (IPC, advanced serialization). */
export type ToChild =
  | { type: 'init'; init: ChildInit }
  | { type: 'run'; seq: number; job: Job }
  | { type: 'interrupt'; seq: number }
  | { type: 'free'; unloadModels: boolean; freeMemory: boolean };

/** Messages from the execution child process to the server. */
export type FromChild =
  /** The relay is up and its worker thread has loaded the nodes (`workerError`: it could not). */
  { type: 'ready'; workerError?: string } | { type: 'log'; message: string } | JobMessage;
