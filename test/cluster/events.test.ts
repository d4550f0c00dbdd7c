// Events across processes: job events and binary previews from a worker process reach every
// front end, addressed to the queuing client (the one whose socket a front end holds delivers
// them); `executing null` comes after the history entry; queue notices; interrupts from a front
// end reach the worker process running the job (with a prompt id: that job only; without: every
// running job).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage, routeFor, type ClusterMessage, type PreviewMessage } from '../../cluster/events.ts';
import { FrontEnd, spawnWorker, waitFor, type WorkerProc } from './helpers.ts';
import { RedisServer } from './redis_harness.ts';
import { stubPrompt } from './stub_host.ts';

let redis: RedisServer;
let a: FrontEnd;
let b: FrontEnd;
const workers: WorkerProc[] = [];

beforeAll(async () => {
  redis = await RedisServer.start();
  a = await FrontEnd.open(redis.url, 'ev');
  b = await FrontEnd.open(redis.url, 'ev');
  await Promise.all([a.listen(), b.listen()]);
  workers.push(spawnWorker(redis.url, 'w1', { CLUSTER_PREFIX: 'ev' }), spawnWorker(redis.url, 'w2', { CLUSTER_PREFIX: 'ev' }));
  await Promise.all(workers.map((w) => w.ready));
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await a?.close();
  await b?.close();
  await redis?.close();
});

const forPrompt = (fe: FrontEnd, id: string) => fe.messages.filter((m) => m.promptId === id);
const types = (ms: ClusterMessage[]) =>
  ms.map((m) => (m.kind === 'preview' ? 'preview' : m.type === 'executing' ? `executing:${String(m.data.node)}` : m.type));

describe('messages', () => {
  it('encode binary previews and exact JSON in one frame', () => {
    const image = Uint8Array.from({ length: 256 }, (_, i) => i);
    const p: PreviewMessage = { kind: 'preview', promptId: 'p', clientId: 'c', node: '1', displayNode: '1', format: 'png', result: false, image };
    const back = decodeMessage(encodeMessage(p)) as PreviewMessage;
    expect(Buffer.from(back.image).equals(Buffer.from(image))).toBe(true);
    expect({ ...back, image: undefined }).toEqual({ ...p, image: undefined });
    const e: ClusterMessage = { kind: 'event', promptId: 'p', clientId: undefined, type: 'executed', data: { seed: 2n ** 64n - 1n } };
    expect(decodeMessage(encodeMessage(e))).toEqual(e);
    expect(routeFor(e)).toEqual({ to: 'nobody' });
    expect(routeFor({ ...e, type: 'progress' })).toEqual({ to: 'everyone' });
    expect(routeFor({ ...e, clientId: 'x' })).toEqual({ to: 'client', clientId: 'x' });
  });
});

describe('across processes', () => {
  it('job events and previews reach every front end, addressed to the client, executing null after history', async () => {
    const job = await a.submit('ev1', stubPrompt({ ms: 300, steps: 3, previewBytes: 1000 }), { clientId: 'client-A' });
    let historyAtEnd: boolean | undefined;
    await waitFor('executing null at front end b', async () => {
      const end = forPrompt(b, 'ev1').find((m) => m.kind === 'event' && m.type === 'executing' && m.data.node === null);
      if (end && historyAtEnd === undefined) historyAtEnd = await b.history.has('ev1');
      return end;
    });
    expect(historyAtEnd).toBe(true);
    for (const fe of [a, b]) {
      const ms = forPrompt(fe, 'ev1');
      expect(types(ms)).toEqual([
        'execution_start',
        'executing:1',
        'progress',
        'preview',
        'progress',
        'preview',
        'progress',
        'preview',
        'executed',
        'execution_success',
        'executing:null',
      ]);
      expect(ms.every((m) => routeFor(m).to === 'client' && m.clientId === 'client-A')).toBe(true);
      const previews = ms.filter((m): m is PreviewMessage => m.kind === 'preview');
      expect(previews.map((p) => p.image.length)).toEqual([1000, 1000, 1000]);
      expect(previews[1].image[5]).toBe((5 * 7 + 2) & 0xff);
    }
    const entry = (await b.history.get('ev1'))!;
    expect(entry.prompt).toEqual([job.number, 'ev1', job.prompt, job.extraData, ['1']]);
    expect(entry.status.messages.map((m) => m[0])).toEqual(['execution_start', 'execution_success']);
    expect(entry.outputs['1']).toEqual({ images: [{ filename: 'ev1.png', subfolder: '', type: 'output' }] });
    // Queue notices: added (front end), started and finished (worker).
    await waitFor('finished notice', () => b.notices.some((n) => n.reason === 'finished' && n.promptId === 'ev1'));
    expect(b.notices.filter((n) => n.promptId === 'ev1').map((n) => n.reason)).toEqual(['added', 'started', 'finished']);
  });

  it('lists the workers with their state and the running job with its worker', async () => {
    await a.submit('slow', stubPrompt({ ms: 1500, steps: 3 }));
    const running = await waitFor('slow running', async () => (await a.jobs.running()).find((r) => r.job.promptId === 'slow' && r.node === '1'));
    const live = await a.registry.list();
    expect(live.map((w) => w.id)).toEqual(['w1', 'w2']);
    const busy = live.find((w) => w.id === running.workerId)!;
    expect(busy.current?.promptId).toBe('slow');
    expect(busy.state).toBe('busy');
    expect((await a.jobs.snapshot()).queue_running.map((i) => i[1])).toEqual(['slow']);
    await waitFor('slow done', () => b.history.has('slow'));
  });

  it('interrupts the job named, on whichever worker runs it; others run on', async () => {
    await a.submit('long1', stubPrompt({ ms: 30_000, steps: 300 }), { clientId: 'c1' });
    await b.submit('short', stubPrompt({ ms: 1500, steps: 3 }), { clientId: 'c2' });
    await waitFor('both running', async () => (await a.jobs.running()).length === 2);
    await b.events.publishControl({ type: 'interrupt', promptId: 'long1' });
    const e = await waitFor('long1 in history', () => a.history.get('long1'), 10_000);
    expect(e.status.status_str).toBe('error');
    expect(e.status.messages.map((m) => m[0])).toContain('execution_interrupted');
    // `executing null` follows the history entry.
    await waitFor('executing null for long1', () => types(forPrompt(a, 'long1')).includes('executing:null'));
    expect(types(forPrompt(a, 'long1')).slice(-2)).toEqual(['execution_interrupted', 'executing:null']);
    const s = await waitFor('short in history', () => a.history.get('short'), 10_000);
    expect(s.status.status_str).toBe('success');
  });

  it('without a prompt id interrupts every running job', async () => {
    await a.submit('long2', stubPrompt({ ms: 30_000, steps: 300 }));
    await a.submit('long3', stubPrompt({ ms: 30_000, steps: 300 }));
    await waitFor('both running', async () => (await a.jobs.running()).length === 2);
    await a.events.publishControl({ type: 'interrupt' });
    for (const id of ['long2', 'long3']) {
      const e = await waitFor(`${id} in history`, () => b.history.get(id), 10_000);
      expect(e.status.messages.map((m) => m[0])).toContain('execution_interrupted');
    }
    // A worker writes the history entry before it completes the job (the client's "done" comes
    // after history), so the queue empties a moment after the entries appear.
    await waitFor('queue empty', async () => (await a.jobs.remaining()) === 0, 10_000);
  });
});
