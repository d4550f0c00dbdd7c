// The execution worker thread: builds the node registry with the node services (folders and the
// model cache, handed to every node as ctx.services) and ONE Executor (so its output cache
// survives from job to job), runs the jobs the runner sends, and streams the engine's events
// back. Interrupts arrive through shared memory because a node may keep this thread's event
// loop busy; the flag is checked on every engine event, every 50 ms, and whenever a node polls
// (ctx.throwIfInterrupted / ctx.progress).
import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { Executor } from '../engine/index.ts';
import { nodeServices } from '../nodes/services.ts';
import { formatProfile, profiler } from '../native/profile.ts';
import { trimHostCache } from '../native/index.ts';
import { jobErrorData, type FromWorker, type RunJob, type ToWorker, type WorkerInit } from './protocol.ts';
import { buildRegistry } from './registry.ts';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (m: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer);
const interruptFlag = new Int32Array(init.interrupt);

/** Tells the parent process, before the node runs, which node that is (see WorkerInit.traceFd). */
function traceNode(promptId: string, node: string): void {
  try {
    fs.writeSync(init.traceFd!, `${promptId}\t${node}\n`);
  } catch {
    // The server is gone (EPIPE) or the pipe is full: the crash report loses its node name, the job nothing.
  }
}

async function main(): Promise<void> {
  const registry = await buildRegistry(init.extraNodeModules, init.folders);
  const services = nodeServices(registry.services, 'execution worker');
  let current: { seq: number; controller: AbortController; classOf: (id: string) => string } | undefined;
  const checkInterrupt = () => {
    if (current && Atomics.load(interruptFlag, 0) === current.seq) current.controller.abort();
  };
  setInterval(checkInterrupt, 50).unref();

  const executor = new Executor(registry, {
    cache: init.cache === 'lru' ? { strategy: 'lru', maxEntries: init.cacheSize } : init.cache,
    services: registry.services,
    pollInterrupt: checkInterrupt,
  });

  executor.onEvent((ev) => {
    checkInterrupt();
    if (!current) return;
    const seq = current.seq;
    if (ev.type === 'executing' && typeof ev.data.node === 'string' && init.traceFd !== undefined) traceNode(ev.data.prompt_id, ev.data.node);
    if (profiler.enabled && ev.type === 'executing' && typeof ev.data.node === 'string') {
      const id = ev.data.node;
      profiler.stage(`node ${id} (${current.classOf(id)})`);
    }
    if (ev.type === 'binary_preview') {
      const { image, node, display_node, result } = ev.data;
      const data = new Uint8Array(image.data); // a copy we can transfer
      post({ type: 'preview', seq, node, displayNode: display_node, format: image.format === 'PNG' ? 'png' : 'jpeg', data, ...(result ? { result } : {}) }, [
        data.buffer as ArrayBuffer,
      ]);
      return;
    }
    post({ type: 'event', seq, event: { type: ev.type, data: ev.data as unknown as Record<string, unknown> } });
  });

  let pendingFree: { unloadModels: boolean; freeMemory: boolean } | undefined;
  const applyFree = () => {
    if (!pendingFree) return;
    if (pendingFree.freeMemory) executor.clearCache();
    services.modelCache.clear();
    // The unloaded weights' blocks went to the CPU allocator's reuse cache: give them back too
    // (nothing to do when no node ever loaded the addon).
    try {
      trimHostCache();
    } catch {
      /* addon not built or not loadable: no cache either */
    }
    pendingFree = undefined;
  };

  /** SANA_PROFILE=1: one op table per node that ran native ops, returned with the job's result
   *  (the CLI prints it, the server logs it). */
  const profileOfJob = (): { profile?: string } => {
    if (!profiler.enabled) return {};
    profiler.endStage();
    const text = formatProfile(profiler.report());
    return text ? { profile: text } : {};
  };

  const run = async (job: RunJob) => {
    const controller = new AbortController();
    const prompt = job.prompt as Record<string, { class_type?: string } | undefined>;
    current = { seq: job.seq, controller, classOf: (id) => prompt[id]?.class_type ?? '?' };
    if (profiler.enabled) profiler.reset();
    checkInterrupt();
    try {
      const r = await executor.execute(job.prompt, {
        promptId: job.promptId,
        extraData: { ...job.extraData, ...job.sensitive },
        outputs: job.outputs,
        signal: controller.signal,
        sendFinalExecuting: false,
      });
      const ok = r.status === 'success';
      post({
        type: 'done',
        seq: job.seq,
        result: { outputs: r.outputs, meta: r.meta, status: { status_str: ok ? 'success' : 'error', completed: ok, messages: r.messages }, ...profileOfJob() },
      });
    } catch (e) {
      // Validation already passed on the main thread, so this is a registry mismatch or an
      // engine bug; it is still reported as the job's error instead of killing the worker.
      const err = e as Error;
      const data = jobErrorData({ promptId: job.promptId, message: err.message, type: err.name, traceback: (err.stack ?? '').split('\n') });
      post({ type: 'event', seq: job.seq, event: { type: 'execution_error', data } });
      post({
        type: 'done',
        seq: job.seq,
        result: { outputs: {}, meta: {}, status: { status_str: 'error', completed: false, messages: [['execution_error', data]] }, ...profileOfJob() },
      });
    } finally {
      current = undefined;
      applyFree();
    }
  };

  port.on('message', (m: ToWorker) => {
    if (m.type === 'run') void run(m);
    else if (m.type === 'free') {
      pendingFree = { unloadModels: m.unloadModels || (pendingFree?.unloadModels ?? false), freeMemory: m.freeMemory || (pendingFree?.freeMemory ?? false) };
      if (!current) applyFree();
    }
  });
  post({ type: 'ready' });
}

main().catch((e: Error) => {
  post({ type: 'init_error', message: e.stack ?? e.message });
  process.exit(1);
});
