// The WebSocket side of the ComfyUI protocol: sessions keyed by clientId (the `sid`), job
// events routed to the session that queued the job, `status` broadcasts, binary preview frames,
// the feature_flags handshake, and keep-alive messages while a job runs (clients such as
// @saintno/comfyui-sdk reconnect after 10 s of silence), and back-pressure for clients that
// read slowly or not at all (see sendTo).
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, WebSocket } from 'ws';
import { stringifyJson } from '../../engine/json.ts';

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
  /**
   * Progress messages held back while the client is slow, the latest per key (per node for
   * `progress`, merged per node for `progress_state`), in first-held order. Sent once the
   * socket drains, or before the next message that cannot be merged, so order is kept.
   */
  held: Map<string, WsMessage>;
  /** Preview frames dropped while slow. */
  dropped: number;
  closing: boolean;
}

export interface WsLimits {
  /** Unsent bytes past which a socket is closed (1008): a client that does not read. */
  maxBufferedBytes: number;
  /** Unsent bytes past which a socket counts as slow: previews dropped, progress merged. */
  slowBufferedBytes: number;
}

export const DEFAULT_WS_MAX_BUFFERED_BYTES = 64 * 1024 * 1024;

/** The slow mark for a given limit: a sixteenth, at most 4 MiB and at least 16 KiB. */
export function wsLimits(maxBufferedBytes = DEFAULT_WS_MAX_BUFFERED_BYTES): WsLimits {
  return { maxBufferedBytes, slowBufferedBytes: Math.max(16 * 1024, Math.min(4 * 1024 * 1024, Math.floor(maxBufferedBytes / 16))) };
}

/** How long a socket closed for being slow may take to finish its close handshake. */
const SLOW_CLOSE_GRACE_MS = 1000;

/** The merge key of a message that a newer one may replace while the client is slow. */
function holdKey(msg: WsMessage): string | undefined {
  const d = msg.data as { prompt_id?: unknown; node?: unknown } | null;
  if (msg.type === 'progress') return `progress\u0000${String(d?.prompt_id)}\u0000${String(d?.node)}`;
  if (msg.type === 'progress_state') return `progress_state\u0000${String(d?.prompt_id)}`;
  return undefined;
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

  /** Sockets closed for not reading, since start. */
  slowClosed = 0;

  constructor(
    private readonly hooks: {
      /** `status` payload (without sid). */
      status: () => Record<string, unknown>;
      featureFlags: () => Record<string, unknown>;
      /** Replay for a reconnecting client whose job is executing: the node id, if any. */
      executingNodeFor: (sid: string) => string | undefined;
    },
    private readonly limits: WsLimits = wsLimits(),
  ) {}

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const requested = url.searchParams.get('clientId');
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const sid = requested && requested.length > 0 && requested.length <= 256 ? requested : randomUUID().replaceAll('-', '');
      const session: Session = { sid, socket: ws, flags: undefined, firstFrameSeen: false, lastSent: 0, held: new Map(), dropped: 0, closing: false };
      // A reconnect under the same id takes over the routing; the old socket stays open.
      this.sessions.set(sid, session);
      this.sockets.add(session);
      ws.on('message', (data, isBinary) => this.onClientFrame(session, data, isBinary));
      ws.on('close', () => {
        this.droppedClosed += session.dropped;
        session.held.clear();
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

  /**
   * Back-pressure: `ws` queues whatever the client does not read, without bound. Past the slow
   * mark previews are dropped and progress messages merged (latest per node); past the limit
   * the socket is closed. A client that keeps up sees every message, in order.
   */
  private sendTo(session: Session, msg: WsMessage | Buffer, droppable = true): void {
    const ws = session.socket;
    if (ws.readyState !== WebSocket.OPEN || session.closing) return;
    const slow = ws.bufferedAmount > this.limits.slowBufferedBytes;
    if (Buffer.isBuffer(msg)) {
      // Step previews may go; an output image (SaveImageWebsocket) is queued like any message.
      if (slow && droppable) {
        session.dropped++;
        return;
      }
    } else {
      const key = holdKey(msg);
      if (key !== undefined && (slow || session.held.size > 0)) {
        this.hold(session, key, msg);
        if (!slow) this.flushHeld(session);
        return;
      }
      if (session.held.size > 0) this.flushHeld(session);
    }
    this.write(session, Buffer.isBuffer(msg) ? msg : stringifyJson(msg));
  }

  private hold(session: Session, key: string, msg: WsMessage): void {
    const prev = session.held.get(key);
    if (prev && msg.type === 'progress_state') {
      const a = (prev.data as { nodes?: Record<string, unknown> }).nodes ?? {};
      const b = (msg.data as { nodes?: Record<string, unknown> }).nodes ?? {};
      session.held.set(key, { type: msg.type, data: { ...(msg.data as object), nodes: { ...a, ...b } } });
    } else {
      session.held.set(key, msg);
    }
  }

  private flushHeld(session: Session): void {
    const held = [...session.held.values()];
    session.held.clear();
    for (const m of held) this.write(session, stringifyJson(m));
  }

  private write(session: Session, data: Buffer | string): void {
    const ws = session.socket;
    if (ws.readyState !== WebSocket.OPEN || session.closing) return;
    session.lastSent = Date.now();
    ws.send(data, (err) => {
      // Called once this frame is handed to the OS: the moment to send what was held back.
      if (!err && session.held.size > 0 && ws.bufferedAmount <= this.limits.slowBufferedBytes) this.flushHeld(session);
    });
    if (ws.bufferedAmount > this.limits.maxBufferedBytes) this.closeSlow(session);
  }

  private closeSlow(session: Session): void {
    const ws = session.socket;
    session.closing = true;
    session.held.clear();
    this.slowClosed++;
    // The close frame queues behind what the client never read; terminate frees the buffers.
    ws.close(1008, `client too slow: over ${this.limits.maxBufferedBytes} bytes unread`);
    setTimeout(() => ws.terminate(), SLOW_CLOSE_GRACE_MS).unref();
  }

  /** Bytes queued for all sockets and not yet handed to the OS. */
  get bufferedBytes(): number {
    let n = 0;
    for (const s of this.sockets) n += s.socket.bufferedAmount;
    return n;
  }

  /** Preview frames dropped for slow clients, since start. */
  get droppedPreviews(): number {
    let n = this.droppedClosed;
    for (const s of this.sockets) n += s.dropped;
    return n;
  }

  private droppedClosed = 0;

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
  sendPreview(sid: string | undefined, image: Uint8Array, format: 'png' | 'jpeg', meta: PreviewMeta, result = false): void {
    const targets = sid === undefined ? [...this.sockets] : [this.sessions.get(sid)].filter((s): s is Session => !!s);
    for (const s of targets) {
      if (s.flags?.supports_preview_metadata === true) {
        const json = Buffer.from(stringifyJson({ ...meta, image_type: format === 'png' ? 'image/png' : 'image/jpeg' }));
        const head = Buffer.alloc(8);
        head.writeUInt32BE(4, 0);
        head.writeUInt32BE(json.length, 4);
        this.sendTo(s, Buffer.concat([head, json, image]), !result);
      } else {
        const head = Buffer.alloc(8);
        head.writeUInt32BE(1, 0);
        head.writeUInt32BE(format === 'png' ? 2 : 1, 4);
        this.sendTo(s, Buffer.concat([head, image]), !result);
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
