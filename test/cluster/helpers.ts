// Shared pieces of the cluster tests: worker processes (worker_entry.ts), a "front end" (the
// cluster API a server would use, on its own connections), jobs, and polling.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { ClusterClient } from '../../cluster/client.ts';
import type { ClusterMessage, QueueNotice } from '../../cluster/events.ts';
import { modelKeys } from '../../cluster/models.ts';
import type { Job } from '../../web/server/queue.ts';

const ENTRY = path.join(import.meta.dirname, 'worker_entry.ts');
const ROOT = path.resolve(import.meta.dirname, '..', '..');

export async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface WorkerProc {
  id: string;
  proc: ChildProcess;
  ready: Promise<void>;
  stderr: () => string;
  exited: Promise<number | null>;
  kill9(): void;
  stop(): Promise<void>;
}

export function spawnWorker(redisUrl: string, id: string, env: Record<string, string | number> = {}): WorkerProc {
  const proc = spawn(process.execPath, ['--import', 'tsx', ENTRY], {
    cwd: ROOT,
    env: { ...process.env, REDIS_URL: redisUrl, WORKER_ID: id, ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      if (out.includes(`ready ${id}`)) resolve();
    });
    void exited.then((code) => reject(new Error(`worker ${id} exited (${code}) before ready: ${err}`)));
  });
  ready.catch(() => undefined);
  return {
    id,
    proc,
    ready,
    stderr: () => err,
    exited,
    kill9: () => proc.kill('SIGKILL'),
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

let seq = 0;
export function makeJob(promptId: string, prompt: Record<string, unknown>, clientId?: string, number = 0): Job {
  return { number, promptId, prompt, extraData: { client_id: clientId, create_time: Date.now() + seq++ }, outputs: ['1'], sensitive: {}, clientId };
}

/** The cluster API as a front end uses it (cluster/client.ts), recording what it hears. */
export class FrontEnd extends ClusterClient {
  readonly messages: ClusterMessage[] = [];
  readonly notices: QueueNotice[] = [];

  static async open(redisUrl: string, prefix?: string, maxHistory = 1000): Promise<FrontEnd> {
    const fe = new FrontEnd({ redis: redisUrl, prefix, maxHistory });
    await fe.start();
    return fe;
  }

  get registry() {
    return this.workers;
  }

  async listen(): Promise<void> {
    await this.subscribe({ message: (m) => this.messages.push(m), queue: (n) => this.notices.push(n) });
  }

  /** Queues a prompt as POST /prompt would: number, add, notice. */
  async submit(promptId: string, prompt: Record<string, unknown>, o: { clientId?: string; front?: boolean } = {}): Promise<Job> {
    const job = makeJob(promptId, prompt, o.clientId);
    job.number = await this.jobs.nextNumber(undefined, o.front === true);
    await this.jobs.add(job, { front: o.front, models: modelKeys(prompt) });
    await this.events.publishQueue({ reason: 'added', promptId });
    return job;
  }
}
