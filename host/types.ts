// What the server and the CLI need from an execution host: run one job at a time, interrupt it,
// free memory, report the node that is running. The server's routes are tested against a stub of
// this interface; the real host (runner.ts) runs the executor in a worker thread or in a child
// process that hosts one.

/** One queued prompt, as the host runs it. */
export interface Job {
  number: number;
  promptId: string;
  /** The validated API prompt (constants coerced). */
  prompt: Record<string, unknown>;
  /** extra_data without the sensitive keys. */
  extraData: Record<string, unknown>;
  /** Output node ids to execute. */
  outputs: string[];
  /** Sensitive extra_data keys (api keys): passed to nodes, never returned by the API. */
  sensitive: Record<string, unknown>;
  /** The WebSocket client that queued it; stays with the server (the executor has no sockets). */
  clientId: string | undefined;
}

/** One `[event type, data]` pair of a job's history `status.messages`. */
export type StatusMessage = [string, Record<string, unknown>];

/** A finished job as history stores it. `profile`: the op profile tables (SANA_PROFILE=1),
 *  carried back with the result because a worker thread's stderr may not be flushed before its
 *  process exits. */
export interface JobResult {
  outputs: Record<string, unknown>;
  status: { status_str: 'success' | 'error'; completed: boolean; messages: StatusMessage[] };
  meta: Record<string, unknown>;
  profile?: string;
}

/** The wire form of a queue item: [number, prompt_id, prompt, extra_data, output node ids]. */
export type QueueItem = [number, string, Record<string, unknown>, Record<string, unknown>, string[]];

export function toQueueItem(job: Job): QueueItem {
  return [job.number, job.promptId, job.prompt, job.extraData, job.outputs];
}

/** A history entry in ComfyUI's shape (GET /history), whichever store keeps it. */
export interface HistoryEntry {
  prompt: QueueItem;
  outputs: Record<string, unknown>;
  status: JobResult['status'];
  meta: Record<string, unknown>;
}

export interface JobPreview {
  node: string;
  displayNode: string;
  format: 'png' | 'jpeg';
  data: Uint8Array;
  /** A SaveImageWebsocket image: a result, not a throw-away step preview. */
  result?: boolean;
}

export interface JobHandlers {
  event(e: { type: string; data: Record<string, unknown> }): void;
  preview(p: JobPreview): void;
}

/** Where nodes read and write, as absolute paths (the executor's `ctx.services.folders`). */
export interface HostFolders {
  output: string;
  input: string;
  temp: string;
  models: string;
}

/** What an execution host is started with. */
export interface HostConfig {
  folders: HostFolders;
  cache: 'classic' | 'lru' | 'none';
  cacheSize: number;
  /** File URLs of node modules exporting `registerNodes(registry)` (test stub nodes). */
  extraNodeModules: string[];
}

export interface ExecutionHost {
  /** Starts the executor (if needed); resolves once it has loaded the nodes. */
  start(): Promise<void>;
  /** Runs one job; resolves with its outputs and status, never rejects for a failing node. */
  run(job: Job, handlers: JobHandlers): Promise<JobResult>;
  /** Interrupts the running job (only if it is `promptId`, when given). */
  interrupt(promptId?: string): void;
  free(unloadModels: boolean, freeMemory: boolean): void;
  close(): Promise<void>;
  /** The node the running job is executing, as last reported. */
  readonly currentNode: { promptId: string; node: string } | undefined;
  /** Diagnostics (tests, /system_stats): the executor's process id, and how often it was restarted. */
  readonly pid: number | undefined;
  readonly restarts: number;
}
