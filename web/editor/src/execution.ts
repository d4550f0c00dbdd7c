// Follows the jobs this client queued over the WebSocket (shared/spec/comfyui-api.md §2.3) and reflects them on the
// graph: the running node, its progress bar, step previews, the final images, runtime errors,
// and an overall fraction for the toolbar bar.
import type { LGraph } from '@comfyorg/litegraph';
import type { ComfyApi, ImageRef, WsMessage } from './api.ts';
import type { NodeStates } from './node-state.ts';

export type RunEvents = {
  onOverall: (fraction: number | null, label: string) => void;
  onQueueChanged: () => void;
  onMessage: (text: string, kind: 'info' | 'error', promptId?: string) => void;
};

type Job = { promptId: string; nodes: Set<string>; done: Set<string>; current: string | null; currentFraction: number; startedAt: number };

export class ExecutionTracker {
  /** Jobs queued from this page, by prompt id; filled by `expect()` before events arrive. */
  private jobs = new Map<string, Job>();
  private active: Job | null = null;
  /** Prompt ids whose events have already started (the WebSocket can beat the POST reply). */
  private seen = new Set<string>();
  /** Step previews received (binary frames); the browser tests read it. */
  previewsReceived = 0;
  /** The last finished prompt's status, for tests and the status line. */
  lastResult: { promptId: string; status: 'success' | 'error' | 'interrupted'; message?: string } | null = null;

  constructor(
    private readonly api: ComfyApi,
    private readonly graph: () => LGraph,
    private readonly states: NodeStates,
    private readonly events: RunEvents,
  ) {
    api.on((m) => this.handle(m));
    api.onPreview((blob, nodeId) => {
      const target = nodeId ?? this.active?.current ?? this.states.runningNode;
      if (target == null) return;
      this.previewsReceived++;
      this.states.setImages(target, [URL.createObjectURL(blob)], true);
    });
  }

  /**
   * Registers a queued prompt so that progress can be computed over its nodes. Returns false
   * when its events already arrived (a fast job can finish before `/prompt` answers).
   */
  expect(promptId: string, nodeIds: string[]): boolean {
    const known = this.jobs.get(promptId);
    if (known) {
      for (const id of nodeIds) known.nodes.add(id);
      return !this.seen.has(promptId);
    }
    if (this.seen.has(promptId)) return false;
    this.jobs.set(promptId, { promptId, nodes: new Set(nodeIds), done: new Set(), current: null, currentFraction: 0, startedAt: performance.now() });
    return true;
  }

  private node(id: string) {
    return this.graph().getNodeById(Number(id)) ?? this.graph().getNodeById(id);
  }

  private setProgress(id: string | null, value: number | undefined): void {
    if (id == null) return;
    const n = this.node(id);
    if (n) n.progress = value;
  }

  private jobFor(data: Record<string, unknown>): Job | null {
    const pid = typeof data.prompt_id === 'string' ? data.prompt_id : null;
    if (pid && this.jobs.has(pid)) return this.jobs.get(pid)!;
    return this.active;
  }

  private overall(): void {
    const job = this.active;
    if (!job) return;
    const total = Math.max(1, job.nodes.size);
    const fraction = Math.min(1, (job.done.size + job.currentFraction) / total);
    const n = job.current ? this.node(job.current) : null;
    this.events.onOverall(fraction, n ? `${n.title} (${job.done.size + 1}/${total})` : `${job.done.size}/${total}`);
  }

  private finish(job: Job | null, status: 'success' | 'error' | 'interrupted', message?: string): void {
    if (job) {
      this.setProgress(job.current, undefined);
      this.lastResult = { promptId: job.promptId, status, message };
      this.jobs.delete(job.promptId);
      if (status === 'success') {
        const seconds = ((performance.now() - job.startedAt) / 1000).toFixed(1);
        this.events.onMessage(`finished ${job.promptId.slice(0, 8)} in ${seconds} s`, 'info', job.promptId);
      }
    }
    this.states.runningNode = null;
    this.active = null;
    this.events.onOverall(null, status === 'success' ? 'done' : status);
    this.states.onChange();
  }

  private handle(m: WsMessage): void {
    const d = m.data ?? {};
    switch (m.type) {
      case 'status':
        // queue_remaining changed: the panel re-reads /queue for the items themselves.
        this.events.onQueueChanged();
        break;
      case 'execution_start': {
        const pid = String(d.prompt_id);
        if (!this.jobs.has(pid)) this.expect(pid, []);
        this.seen.add(pid);
        this.active = this.jobs.get(pid)!;
        this.active.startedAt = performance.now();
        this.overall();
        this.events.onQueueChanged();
        break;
      }
      case 'execution_cached': {
        const job = this.jobFor(d);
        // Cached nodes will not run: count them as done so the overall bar stays honest.
        for (const id of (d.nodes as string[] | undefined) ?? []) job?.done.add(String(id));
        this.overall();
        break;
      }
      case 'executing': {
        const job = this.jobFor(d);
        const id = d.node == null ? null : String(d.node);
        if (job?.current && job.current !== id) {
          job.done.add(job.current);
          this.setProgress(job.current, undefined);
        }
        if (id === null) {
          // End marker: the job is in history; success/error was reported just before.
          const reported = job && this.lastResult?.promptId === job.promptId ? this.lastResult : null;
          this.finish(job, reported?.status ?? 'success', reported?.message);
          this.events.onQueueChanged();
          return;
        }
        if (job) {
          job.current = id;
          job.currentFraction = 0;
          job.nodes.add(id);
        }
        this.states.runningNode = id;
        this.overall();
        this.states.onChange();
        break;
      }
      case 'progress': {
        const job = this.jobFor(d);
        const value = Number(d.value);
        const max = Number(d.max) || 1;
        const id = d.node != null ? String(d.node) : (job?.current ?? null);
        this.setProgress(id, value / max);
        if (job) job.currentFraction = value / max;
        this.overall();
        this.states.onChange();
        break;
      }
      case 'executed': {
        const id = String(d.node);
        const images = ((d.output as { images?: ImageRef[] } | null)?.images ?? []).map((img) => this.api.viewUrl(img));
        if (images.length) this.states.setImages(id, images);
        break;
      }
      case 'execution_success': {
        const job = this.jobFor(d);
        if (job) this.lastResult = { promptId: job.promptId, status: 'success' };
        break;
      }
      case 'execution_error': {
        const job = this.jobFor(d);
        const nodeId = d.node_id != null ? String(d.node_id) : null;
        const msg = `${String(d.node_type ?? 'node')} failed: ${String(d.exception_message ?? 'unknown error')}`;
        if (nodeId != null) {
          const n = this.node(nodeId);
          if (n) n.has_errors = true;
          this.states.setError(nodeId, { message: String(d.exception_message ?? 'execution error'), inputs: new Map() });
        }
        this.events.onMessage(msg, 'error');
        if (job) this.lastResult = { promptId: job.promptId, status: 'error', message: msg };
        break;
      }
      case 'execution_interrupted': {
        const job = this.jobFor(d);
        this.events.onMessage('Interrupted', 'info');
        if (job) this.lastResult = { promptId: job.promptId, status: 'interrupted' };
        break;
      }
    }
  }
}
