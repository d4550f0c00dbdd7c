// The prompt queue: a priority queue ordered by (number, prompt_id) like ComfyUI's heap, plus
// the running job. A job stays listed (pending or running) until the server has written its
// history entry, which is what polling clients rely on (see shared/notes/environment.md §7).
// With a QueueStore the queue also lives on disk, so it survives a restart as history does.
import fs from 'node:fs';
import path from 'node:path';
import { parseJsonExact, stringifyJson } from '../../engine/json.ts';
import { writeFileAtomic } from '../../nodes/image/paths.ts';
import { toQueueItem, type Job, type QueueItem } from '../../host/types.ts';

export { toQueueItem };
export type { Job, QueueItem };

function before(a: Job, b: Job): boolean {
  return a.number < b.number || (a.number === b.number && a.promptId < b.promptId);
}

const PENDING_RE = /^(\d{12})\.json$/;
const RUNNING_FILE = 'running.json';

/**
 * The queue on disk, under <user-dir>/queue/: one file per pending job (named by a sequence
 * number, so equal priorities keep their order) and running.json for the job being executed.
 * running.json is written before the job's pending file goes and removed only after its history
 * entry exists, so a server killed in between (kill -9, power loss) leaves the evidence that
 * the next start turns into an error entry. Sensitive extra_data keys (API keys) are never
 * written: a restored job runs without them.
 */
export class QueueStore {
  private readonly dir: string;
  private seq = 0;
  private readonly files = new WeakMap<Job, number>();

  constructor(userDir: string) {
    this.dir = path.join(userDir, 'queue');
    fs.mkdirSync(this.dir, { recursive: true });
  }

  private file(seq: number): string {
    return path.join(this.dir, String(seq).padStart(12, '0') + '.json');
  }

  private static serialize(job: Job, extra: Record<string, unknown> = {}): string {
    // stringifyJson/parseJsonExact: a seed beyond 2^53 is a BigInt in the prompt.
    return stringifyJson({ ...extra, job: { ...job, sensitive: {} } });
  }

  private static parse(text: string): { job: Job; file?: number } {
    const raw = parseJsonExact(text) as { job?: Partial<Job>; file?: unknown };
    const j = raw.job;
    if (
      !j ||
      typeof j.number !== 'number' ||
      typeof j.promptId !== 'string' ||
      typeof j.prompt !== 'object' ||
      j.prompt === null ||
      !Array.isArray(j.outputs)
    ) {
      throw new Error('not a queued job');
    }
    const job: Job = {
      number: j.number,
      promptId: j.promptId,
      prompt: j.prompt,
      extraData: typeof j.extraData === 'object' && j.extraData !== null ? j.extraData : {},
      outputs: j.outputs.map(String),
      sensitive: {},
      clientId: typeof j.clientId === 'string' ? j.clientId : undefined,
    };
    return { job, file: typeof raw.file === 'number' ? raw.file : undefined };
  }

  private setAside(name: string, e: unknown): void {
    // A damaged file must not stop the server; it is kept for inspection.
    process.emitWarning(`queue: ignoring unreadable ${name}: ${(e as Error).message}`);
    fs.renameSync(path.join(this.dir, name), path.join(this.dir, name + '.corrupt'));
  }

  /**
   * What the previous server left: its pending jobs in file order, and the job it was running
   * when it stopped (which never got a history entry). The running record is consumed here.
   */
  load(): { pending: Job[]; interrupted: Job | undefined } {
    let interrupted: Job | undefined;
    let interruptedFile: number | undefined;
    const runningPath = path.join(this.dir, RUNNING_FILE);
    if (fs.existsSync(runningPath)) {
      try {
        ({ job: interrupted, file: interruptedFile } = QueueStore.parse(fs.readFileSync(runningPath, 'utf8')));
        fs.rmSync(runningPath, { force: true });
      } catch (e) {
        this.setAside(RUNNING_FILE, e);
      }
    }
    const pending: Job[] = [];
    for (const f of fs
      .readdirSync(this.dir)
      .filter((n) => PENDING_RE.test(n))
      .sort()) {
      const seq = Number(PENDING_RE.exec(f)![1]);
      this.seq = Math.max(this.seq, seq + 1);
      if (seq === interruptedFile) {
        // The server died after marking the job running but before dropping its pending file.
        fs.rmSync(this.file(seq), { force: true });
        continue;
      }
      try {
        const { job } = QueueStore.parse(fs.readFileSync(path.join(this.dir, f), 'utf8'));
        this.files.set(job, seq);
        pending.push(job);
      } catch (e) {
        this.setAside(f, e);
      }
    }
    return { pending, interrupted };
  }

  add(job: Job): void {
    const seq = this.seq++;
    writeFileAtomic(this.file(seq), QueueStore.serialize(job));
    this.files.set(job, seq);
  }

  remove(job: Job): void {
    const seq = this.files.get(job);
    if (seq === undefined) return;
    this.files.delete(job);
    fs.rmSync(this.file(seq), { force: true });
  }

  /** The job leaves the pending files for running.json (in that order: see the class comment). */
  started(job: Job): void {
    writeFileAtomic(path.join(this.dir, RUNNING_FILE), QueueStore.serialize(job, { file: this.files.get(job) }));
    this.remove(job);
  }

  finished(): void {
    fs.rmSync(path.join(this.dir, RUNNING_FILE), { force: true });
  }
}

export class PromptQueue {
  private pending: Job[] = [];
  private running: Job | undefined;
  private counter = 0;

  /** `restored`: jobs a previous server left pending (already in `store`). */
  constructor(
    private readonly store?: QueueStore,
    restored: readonly Job[] = [],
  ) {
    for (const job of restored) {
      this.insert(job);
      // New jobs go after the restored ones, as they would have before the restart.
      if (job.number >= this.counter) this.counter = Math.floor(job.number) + 1;
    }
  }

  /** The priority for a new job: an explicit number wins, else the counter (negated for front). */
  nextNumber(explicit: number | undefined, front: boolean): number {
    if (explicit !== undefined) return explicit;
    const n = this.counter++;
    return front ? -n : n;
  }

  private insert(job: Job): void {
    // Sorted insert; queues are short, and sorted order doubles as the /queue listing.
    let i = this.pending.length;
    while (i > 0 && before(job, this.pending[i - 1])) i--;
    this.pending.splice(i, 0, job);
  }

  put(job: Job): void {
    this.store?.add(job);
    this.insert(job);
  }

  /** Moves the first pending job to running; undefined when empty or a job already runs. */
  take(): Job | undefined {
    if (this.running || this.pending.length === 0) return undefined;
    this.running = this.pending.shift()!;
    this.store?.started(this.running);
    return this.running;
  }

  /** Drops the running job (after its history entry is written). */
  finish(promptId: string): void {
    if (this.running?.promptId === promptId) {
      this.running = undefined;
      this.store?.finished();
    }
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
        const [gone] = this.pending.splice(i, 1);
        this.store?.remove(gone);
        removed++;
      }
    }
    return removed;
  }

  clear(): number {
    const n = this.pending.length;
    for (const job of this.pending) this.store?.remove(job);
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
