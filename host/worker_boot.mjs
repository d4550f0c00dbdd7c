// Worker-thread bootstrap: Node 20 does not apply `--import tsx` to a worker's own entry file,
// so the worker starts from this plain module, registers tsx's loader, then imports the
// TypeScript entry named in workerData.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.entry);
