// Messages between the server (main thread) and the execution worker thread.
import type { HistoryEntry } from '../history.ts';

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
  | { type: 'preview'; seq: number; node: string; displayNode: string; format: 'png' | 'jpeg'; data: Uint8Array }
  | { type: 'done'; seq: number; result: Pick<HistoryEntry, 'outputs' | 'status' | 'meta'> };
