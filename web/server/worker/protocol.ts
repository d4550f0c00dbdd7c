// Messages between the server and the execution child process, and between that process's
// main thread (the relay) and its execution worker thread.
import type { HistoryEntry } from '../history.ts';
import type { Job } from '../queue.ts';

export interface WorkerInit {
  /** File URL of entry.ts, imported by boot.mjs. */
  entry: string;
  folders: { output: string; input: string; temp: string; models: string };
  cache: 'classic' | 'lru' | 'none';
  cacheSize: number;
  extraNodeModules: string[];
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

export type FromWorker =
  | { type: 'ready' }
  | { type: 'init_error'; message: string }
  /** A JSON job event (executing, progress, executed, execution_*...) for the job `seq`. */
  | { type: 'event'; seq: number; event: { type: string; data: Record<string, unknown> } }
  | { type: 'preview'; seq: number; node: string; displayNode: string; format: 'png' | 'jpeg'; data: Uint8Array; result?: boolean }
  | { type: 'done'; seq: number; result: Pick<HistoryEntry, 'outputs' | 'status' | 'meta'> & { profile?: string } };

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
  | { type: 'ready'; workerError?: string }
  | { type: 'log'; message: string }
  | Exclude<FromWorker, { type: 'ready' } | { type: 'init_error' }>;
