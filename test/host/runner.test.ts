// The supervised runner's decisions on a scripted transport (no threads, no processes): when a
// dead executor is restarted (back-off 100 ms doubling to 30 s, the failure count reset only by a
// finished job), that close() leaves no restart pending, and how a job lost with its executor is
// reported. The real transports are exercised by test/server/crash.test.ts and queue.test.ts.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { JobMessage } from '../../host/protocol.ts';
import { RESTART_MAX_MS, RESTART_MIN_MS, restartDelay, SupervisedRunner, type ExecutorEvents, type ExecutorHandle, type Transport } from '../../host/runner.ts';
import type { Job, JobHandlers } from '../../host/types.ts';

/** One executor the fake transport opened: the test drives its events. */
interface Fake {
  events: ExecutorEvents;
  runs: Array<{ seq: number; job: Job }>;
  interrupts: number[];
  closed: boolean;
}

class FakeTransport implements Transport {
  readonly name = 'fake executor';
  readonly opened: Fake[] = [];
  /** Opened executors report ready at once unless told otherwise. */
  autoReady = true;

  open(events: ExecutorEvents): ExecutorHandle {
    const f: Fake = { events, runs: [], interrupts: [], closed: false };
    this.opened.push(f);
    if (this.autoReady) queueMicrotask(() => events.ready());
    return {
      pid: 4242,
      run: (seq, job) => f.runs.push({ seq, job }),
      interrupt: (seq) => f.interrupts.push(seq),
      free: () => undefined,
      close: async () => {
        f.closed = true;
      },
    };
  }

  get last(): Fake {
    return this.opened.at(-1)!;
  }
}

const job = (promptId: string): Job => ({
  number: 0,
  promptId,
  prompt: { '1': { class_type: 'Load', inputs: {} }, '2': { class_type: 'Crash', inputs: {} } },
  extraData: {},
  outputs: ['2'],
  sensitive: {},
  clientId: 'c',
});

function recorder(): JobHandlers & { events: Array<{ type: string; data: Record<string, unknown> }> } {
  const events: Array<{ type: string; data: Record<string, unknown> }> = [];
  return { events, event: (e) => events.push(e), preview: () => undefined };
}

const flush = () => vi.advanceTimersByTimeAsync(0);

describe('restartDelay', () => {
  it('doubles from 100 ms per consecutive failure and stops at 30 s', () => {
    expect([1, 2, 3, 4, 9].map(restartDelay)).toEqual([100, 200, 400, 800, 25_600]);
    expect(restartDelay(10)).toBe(RESTART_MAX_MS);
    expect(restartDelay(1000)).toBe(RESTART_MAX_MS);
    expect(restartDelay(0)).toBe(RESTART_MIN_MS);
  });
});

describe('SupervisedRunner', () => {
  let transport: FakeTransport;
  let runner: SupervisedRunner;
  let logs: string[];
  beforeEach(() => {
    vi.useFakeTimers();
    transport = new FakeTransport();
    logs = [];
    runner = new SupervisedRunner(transport, (m) => logs.push(m));
  });
  afterEach(async () => {
    await runner.close();
    vi.useRealTimers();
  });

  /** Kills the current executor and returns the delay until the runner opened the next one. */
  async function deathToRestartMs(): Promise<number> {
    const before = transport.opened.length;
    transport.last.events.died('it died', 'died before it was ready');
    let waited = 0;
    while (transport.opened.length === before) {
      if (waited > RESTART_MAX_MS) throw new Error('no restart');
      await vi.advanceTimersByTimeAsync(50);
      waited += 50;
    }
    await flush();
    return waited;
  }

  it('backs off 100, 200, 400 ms over consecutive deaths; a finished job resets it, a mere ready does not', async () => {
    await runner.start();
    expect(await deathToRestartMs()).toBe(100);
    expect(await deathToRestartMs()).toBe(200);
    // Each restarted executor became ready in between: that alone does not reset the count.
    expect(await deathToRestartMs()).toBe(400);
    expect(runner.restarts).toBe(3);

    const done = runner.run(job('ok'), recorder());
    await flush();
    const { seq } = transport.last.runs[0]!;
    transport.last.events.message({
      type: 'done',
      seq,
      result: { outputs: {}, meta: {}, status: { status_str: 'success', completed: true, messages: [] } },
    } satisfies JobMessage);
    expect((await done).status.status_str).toBe('success');
    expect(await deathToRestartMs()).toBe(100);
  });

  it('close() clears a pending restart: no timer is left and no executor opens afterwards', async () => {
    await runner.start();
    transport.last.events.died('it died', 'died before it was ready');
    expect(vi.getTimerCount()).toBe(1);
    await runner.close();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(RESTART_MAX_MS * 2);
    expect(transport.opened).toHaveLength(1);
    expect(transport.last.closed).toBe(false); // it had died already; nothing to close
  });

  it('close() ends the executor in use and ignores its late messages', async () => {
    await runner.start();
    const h = recorder();
    void runner.run(job('late'), h);
    await flush();
    const fake = transport.last;
    await runner.close();
    expect(fake.closed).toBe(true);
    fake.events.message({ type: 'event', seq: fake.runs[0]!.seq, event: { type: 'executing', data: { node: '1' } } });
    fake.events.died('gone', 'gone before it was ready');
    expect(h.events).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a death mid-job fails the job with WorkerCrashed, naming the node the trace channel saw last', async () => {
    const h = recorder();
    const result = runner.run(job('p1'), h);
    await flush();
    const fake = transport.last;
    const seq = fake.runs[0]!.seq;
    fake.events.message({ type: 'event', seq, event: { type: 'execution_start', data: { prompt_id: 'p1' } } });
    fake.events.message({ type: 'event', seq, event: { type: 'executing', data: { node: '1', prompt_id: 'p1' } } });
    // The crash came right after node 2 began: its `executing` event never left the executor.
    fake.events.trace('p1', '1');
    fake.events.trace('p1', '2');
    fake.events.trace('other-prompt', '9');
    fake.events.died('the executor was killed by signal SIGSEGV', 'was killed before it was ready');
    const r = await result;
    expect(r.status).toMatchObject({ status_str: 'error', completed: false });
    const err = h.events.at(-1)!;
    expect(err.type).toBe('execution_error');
    expect(err.data).toMatchObject({
      prompt_id: 'p1',
      node_id: '2',
      node_type: 'Crash',
      executed: ['1'],
      exception_type: 'WorkerCrashed',
      exception_message: 'the executor was killed by signal SIGSEGV',
    });
    expect(r.status.messages.map(([t]) => t)).toEqual(['execution_start', 'execution_error']);
    // The client heard the reason; the log did not need it.
    expect(logs).toEqual([]);
    expect(runner.restarts).toBe(1);
  });

  it('an executor that cannot start fails the job with WorkerStartError and is retried with back-off', async () => {
    transport.autoReady = false;
    const h = recorder();
    const result = runner.run(job('p2'), h);
    transport.last.events.startFailed(new Error('fake executor failed to start: no module'));
    // As from a real executor: its exit arrives after the failure report, in a later task.
    await flush();
    transport.last.events.died('it exited (code 1)', 'exited with code 1 before it was ready');
    const r = await result;
    expect(r.status.status_str).toBe('error');
    expect(h.events.at(-1)!.data).toMatchObject({
      exception_type: 'WorkerStartError',
      exception_message: 'fake executor failed to start: no module',
      node_id: '',
    });
    expect(logs).toEqual(['it exited (code 1)']);
    await vi.advanceTimersByTimeAsync(99);
    expect(transport.opened).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(transport.opened).toHaveLength(2);
  });

  it('interrupts only the running job, by its sequence number', async () => {
    void runner.run(job('p3'), recorder());
    await flush();
    expect(runner.interrupt('someone-else')).toBe(false);
    expect(runner.interrupt('p3')).toBe(true);
    expect(transport.last.interrupts).toEqual([transport.last.runs[0]!.seq]);
  });
});
