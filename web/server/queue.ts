// The prompt queue: a priority queue ordered by (number, prompt_id) like ComfyUI's heap, plus
// the running job. A job stays listed (pending or running) until the server has written its
// history entry, which is what polling clients rely on (see notes/environment.md §7).

/** The wire form of a queue item: [number, prompt_id, prompt, extra_data, output node ids]. */
export type QueueItem = [number, string, Record<string, unknown>, Record<string, unknown>, string[]];

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
  clientId: string | undefined;
}

export function toQueueItem(job: Job): QueueItem {
  return [job.number, job.promptId, job.prompt, job.extraData, job.outputs];
}

function before(a: Job, b: Job): boolean {
  return a.number < b.number || (a.number === b.number && a.promptId < b.promptId);
}

export class PromptQueue {
  private pending: Job[] = [];
  private running: Job | undefined;
  private counter = 0;

  /** The priority for a new job: an explicit number wins, else the counter (negated for front). */
  nextNumber(explicit: number | undefined, front: boolean): number {
    if (explicit !== undefined) return explicit;
    const n = this.counter++;
    return front ? -n : n;
  }

  put(job: Job): void {
    // Sorted insert; queues are short, and sorted order doubles as the /queue listing.
    let i = this.pending.length;
    while (i > 0 && before(job, this.pending[i - 1])) i--;
    this.pending.splice(i, 0, job);
  }

  /** Moves the first pending job to running; undefined when empty or a job already runs. */
  take(): Job | undefined {
    if (this.running || this.pending.length === 0) return undefined;
    this.running = this.pending.shift();
    return this.running;
  }

  /** Drops the running job (after its history entry is written). */
  finish(promptId: string): void {
    if (this.running?.promptId === promptId) this.running = undefined;
  }

  get current(): Job | undefined {
    return this.running;
  }

  /** Removes pending jobs with these ids (first match per id); returns how many were removed. */
  delete(ids: readonly string[]): number {
    let removed = 0;
    for (const id of ids) {
      const i = this.pending.findIndex((j) => j.promptId === id);
      if (i >= 0) {
        this.pending.splice(i, 1);
        removed++;
      }
    }
    return removed;
  }

  clear(): number {
    const n = this.pending.length;
    this.pending = [];
    return n;
  }

  /** Pending + running, the `queue_remaining` of status messages. */
  remaining(): number {
    return this.pending.length + (this.running ? 1 : 0);
  }

  snapshot(): { queue_running: QueueItem[]; queue_pending: QueueItem[] } {
    return {
      queue_running: this.running ? [toQueueItem(this.running)] : [],
      queue_pending: this.pending.map(toQueueItem),
    };
  }
}
