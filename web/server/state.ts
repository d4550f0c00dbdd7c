// Everything the routes share: options, the main-thread engine (registry, validation,
// object_info), the WebSocket hub, the logger, the backend that holds the queue and history
// and runs jobs (backend.ts: embedded in this process, or a cluster front end over Redis), and
// the output store /view and uploads go through (cluster/output_store.ts).
import { SharedDirStore, type OutputStore } from '../../cluster/output_store.ts';
import type { MainEngine } from '../../host/registry.ts';
import type { ResolvedOptions } from './options.ts';
import { WsHub, wsLimits } from './ws.ts';
import { featureFlags } from './features.ts';
import type { Backend } from './backend.ts';
import { EmbeddedBackend, type BackendContext, type Logger } from './embedded_backend.ts';

export class ServerState {
  readonly hub: WsHub;
  readonly backend: Backend;
  /** Where /view reads and uploads write: the server's folders, or a cluster's Redis. */
  readonly files: OutputStore;
  /** The store's input files as last listed, when they are not in the input folder. */
  private inputFiles: readonly string[] = [];
  private keepAliveTimer: NodeJS.Timeout | undefined;
  log: Logger = console;

  constructor(
    readonly options: ResolvedOptions,
    readonly engine: MainEngine,
    /** Builds the backend around the hub (embedded or cluster; see index.ts). */
    createBackend: (ctx: BackendContext) => Backend,
    /** Default: the options' output/input/temp folders. */
    files?: OutputStore,
  ) {
    this.files = files ?? new SharedDirStore({ output: options.outputDir, input: options.inputDir, temp: options.tempDir });
    this.hub = new WsHub(
      {
        status: () => this.statusPayload(),
        featureFlags: () => featureFlags(options),
        executingNodeFor: (sid) => this.backend.executingNodeFor(sid),
      },
      wsLimits(options.wsMaxBufferedBytes),
    );
    this.backend = createBackend({
      hub: this.hub,
      log: () => this.log,
      broadcastStatus: () => this.hub.broadcast({ type: 'status', data: this.statusPayload() }),
    });
  }

  /** LoadImage's list when the input files are in a store (the registry's `inputFiles`). */
  inputFilesNow(): readonly string[] {
    return this.inputFiles;
  }

  /**
   * Reads the store's input listing before a prompt is validated or object_info answered, so a
   * file uploaded through any front end is a valid choice at once. Nothing to do when the store
   * is the folder (the registry lists it itself). While the store is unreachable the last
   * listing stays: object_info keeps answering.
   */
  async refreshInputFiles(): Promise<void> {
    if (this.files.inPlace) return;
    try {
      this.inputFiles = await this.files.list('input');
    } catch (e) {
      this.log.warn(`input files: keeping the last listing (${(e as Error).message})`);
    }
  }

  /** The single-process backend (its queue and execution host); throws for a cluster front end. */
  get embedded(): EmbeddedBackend {
    if (!(this.backend instanceof EmbeddedBackend)) throw new Error('this server is a cluster front end (--redis), not the single-process server');
    return this.backend;
  }

  /** The `status` message's payload, from the backend's latest count (synchronous for the hub). */
  statusPayload(remaining = this.backend.remainingNow()): { status: { exec_info: { queue_remaining: number } } } {
    return { status: { exec_info: { queue_remaining: remaining } } };
  }

  async startBackground(): Promise<void> {
    this.keepAliveTimer = setInterval(
      () => {
        if (this.backend.busy()) this.hub.keepAlive(this.options.keepAliveMs);
      },
      Math.max(250, Math.floor(this.options.keepAliveMs / 4)),
    );
    this.keepAliveTimer.unref();
    await this.backend.start();
  }

  async close(): Promise<void> {
    if (this.keepAliveTimer) clearInterval(this.keepAliveTimer);
    this.hub.close();
    await this.backend.close();
    await this.files.close?.();
  }
}
