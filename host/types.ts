// What the server and the CLI need from an execution host: run one job at a time, interrupt it,
// free memory, report the node that is running. The server's routes are tested against a stub of
// this interface; the real hosts run the executor in a worker thread or a child process.
import type { Job } from '../web/server/queue.ts';
import type { JobHandlers, JobResult } from '../web/server/runner.ts';

export type { Job, JobHandlers, JobResult };

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
