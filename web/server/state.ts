// Everything the routes share: options, the main-thread engine (registry, validation,
// object_info), the WebSocket hub, the logger, and the backend that holds the queue and history
// and runs jobs (backend.ts: embedded in this process, or a cluster front end over Redis).
import type { MainEngine } from '../../host/registry.ts';
import type { ResolvedOptions } from './options.ts';
import { WsHub, wsLimits } from './ws.ts';
import { featureFlags } from './features.ts';
import type { Backend } from './backend.ts';
import { EmbeddedBackend, type BackendContext, type Logger } from './embedded_backend.ts';

export class ServerState {
  readonly hub: WsHub;
  readonly backend: Backend;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  log: Logger = console;

  constructor(
    readonly options: ResolvedOptions,
    readonly engine: MainEngine,
    /** Builds the backend around the hub (embedded or cluster; see index.ts). */
    createBackend: (ctx: BackendContext) => Backend,
  ) {
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
  }
}
