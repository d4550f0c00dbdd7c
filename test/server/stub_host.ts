// A scriptable ExecutionHost for the server tests that check HTTP and WebSocket behaviour: no
// child process, no nodes run. Each job plays a script — events, previews, waits for an interrupt
// or for the test to release it — and ends with a result in the shape the real host returns, so
// the queue, history, jobs API and WebSocket routing are exercised exactly as with the real one.
import type { ExecutionHost, Job, JobHandlers, JobPreview, JobResult, StatusMessage } from '../../host/types.ts';

export type StubStep =
  /** A WebSocket event, as the executor reports it (`executing` also sets currentNode). */
  | { event: string; data?: Record<string, unknown> }
  /** A preview image (a step preview, or a SaveImageWebsocket result with `result: true`). */
  | { preview: Omit<JobPreview, 'data'> & { data?: Uint8Array } }
  /** Blocks until the job is interrupted; the job then ends as interrupted. */
  | { untilInterrupted: true }
  /** Blocks until the test calls `release()`. */
  | { hold: true };

export interface StubScript {
  steps?: StubStep[];
  /** Outputs of a successful job, keyed by node id (as `executed` reports them). */
  outputs?: Record<string, unknown>;
  /** Ends the job with ComfyUI's execution_error for this node and message. */
  error?: { node: string; message: string; type?: string };
}

/** The script each job plays unless the test sets one: `executing` for each output node, success. */
export function defaultScript(job: Job): StubScript {
  return { steps: job.outputs.map((node) => ({ event: 'executing', data: { node, display_node: node } })) };
}

export class StubHost implements ExecutionHost {
  /** Jobs in the order they were run. */
  readonly ran: Job[] = [];
  readonly interrupts: Array<string | undefined> = [];
  readonly frees: Array<{ unloadModels: boolean; freeMemory: boolean }> = [];
  starts = 0;
  closed = false;
  currentNode: { promptId: string; node: string } | undefined;
  readonly pid = undefined;
  readonly restarts = 0;
  /** Picks each job's script; replace it to script a test's jobs. */
  script: (job: Job) => StubScript = defaultScript;

  private running: Job | undefined;
  private wake: (() => void) | undefined;
  private interrupted = false;
  private released = 0;

  async start(): Promise<void> {
    this.starts++;
  }

  /** Lets the running job (or the next one to reach a `hold` step) go past it. */
  release(): void {
    this.released++;
    this.wake?.();
  }

  /** The job currently between start and result, if any. */
  get current(): Job | undefined {
    return this.running;
  }

  interrupt(promptId?: string): void {
    this.interrupts.push(promptId);
    if (!this.running || (promptId !== undefined && promptId !== this.running.promptId)) return;
    this.interrupted = true;
    this.wake?.();
  }

  free(unloadModels: boolean, freeMemory: boolean): void {
    this.frees.push({ unloadModels, freeMemory });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.interrupted = true;
    this.wake?.();
  }

  async run(job: Job, h: JobHandlers): Promise<JobResult> {
    this.ran.push(job);
    this.running = job;
    this.interrupted = false;
    const promptId = job.promptId;
    const messages: StatusMessage[] = [];
    // What the real host records in status.messages: the job's lifecycle events.
    const emit = (type: string, data: Record<string, unknown>) => {
      const lifecycle = type.startsWith('execution_');
      const full = lifecycle ? { ...data, prompt_id: promptId, timestamp: Date.now() } : { ...data, prompt_id: promptId };
      if (lifecycle) messages.push([type, full]);
      h.event({ type, data: full });
    };
    const script = this.script(job);
    try {
      emit('execution_start', {});
      emit('execution_cached', { nodes: [] });
      for (const step of script.steps ?? []) {
        if ('event' in step) {
          if (step.event === 'executing' && typeof step.data?.node === 'string') this.currentNode = { promptId, node: step.data.node };
          emit(step.event, step.data ?? {});
        } else if ('preview' in step) {
          h.preview({ ...step.preview, data: step.preview.data ?? new Uint8Array([0x89, 0x50, 0x4e, 0x47]) });
        } else if ('hold' in step) {
          await this.waitUntil(() => this.released > 0 || this.interrupted);
          if (this.released > 0) this.released--;
        } else {
          await this.waitUntil(() => this.interrupted);
        }
        if (this.interrupted) {
          emit('execution_interrupted', { node_id: this.currentNode?.node ?? '', node_type: '', executed: [] });
          return { outputs: {}, status: { status_str: 'error', completed: false, messages }, meta: {} };
        }
      }
      if (script.error) {
        const { node, message, type = 'RuntimeError' } = script.error;
        const nodeType = String((job.prompt[node] as { class_type?: unknown } | undefined)?.class_type ?? '');
        emit('execution_error', {
          node_id: node,
          node_type: nodeType,
          executed: [],
          exception_message: message,
          exception_type: type,
          traceback: [],
          current_inputs: {},
          current_outputs: [],
        });
        return { outputs: {}, status: { status_str: 'error', completed: false, messages }, meta: {} };
      }
      const outputs = script.outputs ?? {};
      for (const [node, output] of Object.entries(outputs)) emit('executed', { node, display_node: node, output });
      emit('execution_success', {});
      return {
        outputs,
        status: { status_str: 'success', completed: true, messages },
        meta: Object.fromEntries(Object.keys(outputs).map((n) => [n, { node_id: n, display_node: n }])),
      };
    } finally {
      this.running = undefined;
      this.currentNode = undefined;
    }
  }

  private waitUntil(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = () => {
        if (!done()) return;
        this.wake = undefined;
        resolve();
      };
    });
  }
}
