// A scripted ExecutionHost for the cluster tests. The prompt's node "1" (class_type "Stub") says
// what to do: `ms` total run time, `steps` progress steps (each with a preview of `previewBytes`
// bytes), `kill: true` kills this whole process with SIGKILL once the node started (a worker
// dying mid-job), `fail: true` ends with an execution_error. Interrupt-aware. Every start and
// finish is appended to $STUB_LOG ("<event> <prompt id> <pid>") so tests can count runs.
import fs from 'node:fs';
import type { ExecutionHost, Job, JobHandlers, JobResult } from '../../host/types.ts';

interface StubInputs {
  ms?: number;
  steps?: number;
  previewBytes?: number;
  kill?: boolean;
  fail?: boolean;
}

export function stubPrompt(inputs: StubInputs = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { '1': { class_type: 'Stub', inputs }, ...extra };
}

export class StubHost implements ExecutionHost {
  private running: { promptId: string; interrupted: boolean; wake?: () => void } | undefined;
  private node: string | undefined;
  runs = 0;
  restarts = 0;

  constructor(private readonly logFile = process.env.STUB_LOG) {}

  private note(what: string, promptId: string): void {
    if (this.logFile) fs.appendFileSync(this.logFile, `${what} ${promptId} ${process.pid}\n`);
  }

  async start(): Promise<void> {}

  get pid(): number | undefined {
    return process.pid;
  }

  get currentNode(): { promptId: string; node: string } | undefined {
    return this.running && this.node ? { promptId: this.running.promptId, node: this.node } : undefined;
  }

  async run(job: Job, h: JobHandlers): Promise<JobResult> {
    const pid = job.promptId;
    const inputs = ((job.prompt['1'] as { inputs?: StubInputs } | undefined)?.inputs ?? {}) as StubInputs;
    const r = { promptId: pid, interrupted: false } as NonNullable<StubHost['running']>;
    this.running = r;
    this.runs++;
    this.note('start', pid);
    const messages: JobResult['status']['messages'] = [];
    const ev = (type: string, data: Record<string, unknown>, record = false) => {
      if (record) messages.push([type, data]);
      h.event({ type, data });
    };
    try {
      ev('execution_start', { prompt_id: pid, timestamp: Date.now() }, true);
      this.node = '1';
      ev('executing', { node: '1', display_node: '1', prompt_id: pid });
      if (inputs.kill) process.kill(process.pid, 'SIGKILL');
      const steps = Math.max(1, inputs.steps ?? 1);
      const per = (inputs.ms ?? 0) / steps;
      for (let i = 1; i <= steps; i++) {
        if (per > 0) {
          await new Promise<void>((res) => {
            const t = setTimeout(res, per);
            r.wake = () => {
              clearTimeout(t);
              res();
            };
          });
        }
        if (r.interrupted) {
          ev('execution_interrupted', { prompt_id: pid, node_id: '1', node_type: 'Stub', executed: [], timestamp: Date.now() }, true);
          this.note('interrupted', pid);
          return { outputs: {}, meta: {}, status: { status_str: 'error', completed: false, messages } };
        }
        ev('progress', { value: i, max: steps, prompt_id: pid, node: '1' });
        if (inputs.previewBytes) {
          const img = new Uint8Array(inputs.previewBytes);
          for (let b = 0; b < img.length; b++) img[b] = (b * 7 + i) & 0xff;
          h.preview({ node: '1', displayNode: '1', format: 'jpeg', data: img });
        }
      }
      if (inputs.fail) {
        const data = {
          prompt_id: pid,
          node_id: '1',
          node_type: 'Stub',
          executed: [],
          exception_message: 'stub failure',
          exception_type: 'RuntimeError',
          traceback: [],
          current_inputs: {},
          current_outputs: [],
          timestamp: Date.now(),
        };
        ev('execution_error', data, true);
        this.note('failed', pid);
        return { outputs: {}, meta: {}, status: { status_str: 'error', completed: false, messages } };
      }
      const output = { images: [{ filename: `${pid}.png`, subfolder: '', type: 'output' }] };
      ev('executed', { node: '1', display_node: '1', output, prompt_id: pid });
      ev('execution_success', { prompt_id: pid, timestamp: Date.now() }, true);
      ev('executing', { node: null, prompt_id: pid });
      this.note('done', pid);
      return {
        outputs: { '1': output },
        meta: { '1': { node_id: '1', display_node: '1', parent_node: null, real_node_id: '1' } },
        status: { status_str: 'success', completed: true, messages },
      };
    } finally {
      this.running = undefined;
      this.node = undefined;
    }
  }

  interrupt(promptId?: string): void {
    const r = this.running;
    if (!r || (promptId !== undefined && promptId !== r.promptId)) return;
    r.interrupted = true;
    r.wake?.();
  }

  free(): void {}

  async close(): Promise<void> {}
}
