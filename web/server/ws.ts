// The WebSocket side of the ComfyUI protocol: sessions keyed by clientId (the `sid`), job
// events routed to the session that queued the job, `status` broadcasts, binary preview frames,
// the feature_flags handshake, and keep-alive messages while a job runs (clients such as
// @saintno/comfyui-sdk reconnect after 10 s of silence).
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, WebSocket } from 'ws';

export interface WsMessage {
  type: string;
  data: unknown;
}

interface Session {
  sid: string;
  socket: WebSocket;
  /** Client flags from its first `feature_flags` frame. */
  flags: Record<string, unknown> | undefined;
  firstFrameSeen: boolean;
  lastSent: number;
}

export interface PreviewMeta {
  node_id: string;
  prompt_id: string;
  display_node_id: string;
  parent_node_id: string | null;
  real_node_id: string;
}

export class WsHub {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
  private readonly sessions = new Map<string, Session>();
  private readonly sockets = new Set<Session>();

  constructor(
    private readonly hooks: {
      /** `status` payload (without sid). */
      status: () => Record<string, unknown>;
      featureFlags: () => Record<string, unknown>;
      /** Replay for a reconnecting client whose job is executing: the node id, if any. */
      executingNodeFor: (sid: string) => string | undefined;
    },
  ) {}

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const requested = url.searchParams.get('clientId');
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const sid = requested && requested.length > 0 && requested.length <= 256 ? requested : randomUUID().replaceAll('-', '');
      const session: Session = { sid, socket: ws, flags: undefined, firstFrameSeen: false, lastSent: 0 };
      // A reconnect under the same id takes over the routing; the old socket stays open.
      this.sessions.set(sid, session);
      this.sockets.add(session);
      ws.on('message', (data, isBinary) => this.onClientFrame(session, data, isBinary));
      ws.on('close', () => {
        this.sockets.delete(session);
        if (this.sessions.get(sid) === session) this.sessions.delete(sid);
      });
      ws.on('error', () => ws.terminate());
      this.sendTo(session, { type: 'status', data: { ...this.hooks.status(), sid } });
      const node = this.hooks.executingNodeFor(sid);
      if (node !== undefined) this.sendTo(session, { type: 'executing', data: { node } });
    });
  }

  private onClientFrame(session: Session, data: unknown, isBinary: boolean): void {
    const first = !session.firstFrameSeen;
    session.firstFrameSeen = true;
    if (!first || isBinary) return;
    try {
      const msg = JSON.parse(String(data)) as { type?: unknown; data?: unknown };
      if (msg.type === 'feature_flags' && typeof msg.data === 'object' && msg.data !== null) {
        session.flags = msg.data as Record<string, unknown>;
        this.sendTo(session, { type: 'feature_flags', data: this.hooks.featureFlags() });
      }
    } catch {
      // Client frames other than feature_flags carry no meaning in the protocol.
    }
  }

  private sendTo(session: Session, msg: WsMessage | Buffer): void {
    if (session.socket.readyState !== WebSocket.OPEN) return;
    session.lastSent = Date.now();
    session.socket.send(Buffer.isBuffer(msg) ? msg : JSON.stringify(msg));
  }

  /** To the session `sid`; dropped silently when it has no open socket (ComfyUI's rule). */
  send(sid: string | undefined, msg: WsMessage): void {
    if (sid === undefined) return;
    const s = this.sessions.get(sid);
    if (s) this.sendTo(s, msg);
  }

  broadcast(msg: WsMessage): void {
    for (const s of this.sockets) this.sendTo(s, msg);
  }

  /** To `sid`, or to everyone when the job has no client (ComfyUI's quirk for progress/previews). */
  sendOrBroadcast(sid: string | undefined, msg: WsMessage): void {
    if (sid === undefined) this.broadcast(msg);
    else this.send(sid, msg);
  }

  /**
   * A preview image: type 4 (with JSON metadata) for sessions that negotiated
   * supports_preview_metadata, else the legacy type 1 `[u32 1][u32 format][bytes]`.
   */
  sendPreview(sid: string | undefined, image: Uint8Array, format: 'png' | 'jpeg', meta: PreviewMeta): void {
    const targets = sid === undefined ? [...this.sockets] : [this.sessions.get(sid)].filter((s): s is Session => !!s);
    for (const s of targets) {
      if (s.flags?.supports_preview_metadata === true) {
        const json = Buffer.from(JSON.stringify({ ...meta, image_type: format === 'png' ? 'image/png' : 'image/jpeg' }));
        const head = Buffer.alloc(8);
        head.writeUInt32BE(4, 0);
        head.writeUInt32BE(json.length, 4);
        this.sendTo(s, Buffer.concat([head, json, image]));
      } else {
        const head = Buffer.alloc(8);
        head.writeUInt32BE(1, 0);
        head.writeUInt32BE(format === 'png' ? 2 : 1, 4);
        this.sendTo(s, Buffer.concat([head, image]));
      }
    }
  }

  /** Sends `status` to every socket that has been silent for `idleMs`. */
  keepAlive(idleMs: number): void {
    const now = Date.now();
    for (const s of this.sockets) {
      if (now - s.lastSent >= idleMs) this.sendTo(s, { type: 'status', data: this.hooks.status() });
    }
  }

  get clientCount(): number {
    return this.sockets.size;
  }

  close(): void {
    for (const s of this.sockets) s.socket.terminate();
    this.sockets.clear();
    this.sessions.clear();
    this.wss.close();
  }
}
