// The seam between the HTTP/WS layer and where jobs live. Routes and the WebSocket hub talk to a
// Backend only; two implement it:
//   embedded_backend.ts  one process: the on-disk queue and history, one execution host, the pump
//                        (what `sana-graph serve` always was)
//   cluster_backend.ts   a stateless front end over Redis (`serve --redis`): the queue, history and
//                        events shared with workers and other front ends (cluster/README.md)
// Everything Redis could make slow is async; what the WebSocket hub needs synchronously (the
// status count, the node a client's job is on) is the backend's latest knowledge.
import type { HistoryEntry } from '../../host/types.ts';
import type { Job, QueueItem } from './queue.ts';

export type PromptIdState = 'queued' | 'running' | 'in history';

/** The prompt id is taken: /prompt answers ComfyUI's 400 prompt_id_in_use. */
export class PromptIdInUseError extends Error {
  override name = 'PromptIdInUseError';
  constructor(
    readonly promptId: string,
    readonly state: PromptIdState,
  ) {
    super(`prompt_id '${promptId}' is already ${state}`);
  }
}

/** The shared store (Redis) is unreachable now: routes that need it answer 503 (errors.ts
 *  renders statusCode and code like any error: `{error: {type: 'backend_unavailable', ...}}`). */
export class BackendUnavailableError extends Error {
  override name = 'BackendUnavailableError';
  readonly statusCode = 503;
  readonly code = 'backend_unavailable';
  /** From enqueue only: whether the prompt was queued — false, or 'unknown' when Redis may have
   *  run the write without answering (the message says how to find out). */
  constructor(
    message: string,
    readonly queued?: false | 'unknown',
  ) {
    super(message);
  }
}

export interface QueueSnapshot {
  queue_running: QueueItem[];
  queue_pending: QueueItem[];
}

/** History as routes use it: HistoryStore's listing rules (see history.ts), async. */
export interface BackendHistory {
  list(maxItems?: number, offset?: number): Promise<Record<string, HistoryEntry>>;
  get(promptId: string): Promise<HistoryEntry | undefined>;
  delete(ids: readonly string[]): Promise<void>;
  clear(): Promise<void>;
}

export interface Backend {
  readonly mode: 'embedded' | 'cluster';
  readonly history: BackendHistory;
  /** Pending + running as last known: the WebSocket `status` (sent synchronously on connect). */
  remainingNow(): number;
  /** Pending + running, asked now (the queue limit, GET /prompt). */
  remaining(): Promise<number>;
  /** Whether a job runs (keep-alive messages are sent meanwhile). */
  busy(): boolean;
  /** Replay for a reconnecting client: the node its running job executes, if any. */
  executingNodeFor(sid: string): string | undefined;
  /** Where a prompt id is, if anywhere (checked before validation; enqueue checks again). */
  promptIdState(promptId: string): Promise<PromptIdState | undefined>;
  /** ComfyUI's `number`: an explicit one wins, else the next (negated for front). */
  nextNumber(explicit: number | undefined, front: boolean): Promise<number>;
  /** Queues a validated job and tells every client. Throws PromptIdInUseError. */
  enqueue(job: Job, front: boolean): Promise<void>;
  snapshot(): Promise<QueueSnapshot>;
  /** Removes pending jobs (running ones stay); tells clients when something went. */
  deletePending(ids: readonly string[]): Promise<number>;
  clearPending(): Promise<number>;
  /** One job by prompt id, or (undefined) the current job — in a cluster, every running job. */
  interrupt(promptId: string | undefined): Promise<void>;
  free(unloadModels: boolean, freeMemory: boolean): Promise<void>;
  /** /system_stats `devices`. */
  devices(): Promise<unknown[]>;
  /** Extra /system_stats keys (the cluster's workers); none for the embedded server. */
  systemExtra(): Promise<Record<string, unknown>>;
  /** After the app exists, before the server answers: starts the host / subscribes to events. */
  start(): Promise<void>;
  close(): Promise<void>;
}
