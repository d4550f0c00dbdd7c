// The ComfyUI HTTP + WebSocket client used by the editor (spec/comfyui-api.md §1, §2).
import type { ObjectInfo } from './object-info.ts';

export type ImageRef = { filename: string; subfolder?: string; type?: string };

export type NodeErrorDetail = {
  type: string;
  message: string;
  details?: string;
  extra_info?: { input_name?: string; [k: string]: unknown };
};

export type NodeErrors = Record<string, { errors: NodeErrorDetail[]; class_type?: string; dependent_outputs?: string[] }>;

export type PromptError = {
  error: string | { type: string; message: string; details?: string; extra_info?: unknown };
  node_errors: NodeErrors;
};

/** A queue item as `/queue` returns it: [number, prompt_id, prompt, extra_data, outputs]. */
export type QueueItem = [number, string, Record<string, unknown>, Record<string, unknown>, string[]];

export type HistoryEntry = {
  prompt: QueueItem;
  outputs: Record<string, { images?: ImageRef[]; [k: string]: unknown }>;
  status?: { status_str: string; completed: boolean; messages?: [string, Record<string, unknown>][] };
};

/** Thrown when `/prompt` refuses a workflow; carries the per-node errors. */
export class PromptValidationError extends Error {
  constructor(readonly body: PromptError) {
    const e = body.error;
    super(typeof e === 'string' ? e : `${e.message}${e.details ? `: ${e.details}` : ''}`);
    this.name = 'PromptValidationError';
  }
}

export type WsMessage = { type: string; data: Record<string, unknown> };

type Listener = (msg: WsMessage) => void;
type PreviewListener = (blob: Blob, nodeId: string | null) => void;

export class ComfyApi {
  readonly clientId: string;
  private socket: WebSocket | null = null;
  private listeners = new Set<Listener>();
  private previewListeners = new Set<PreviewListener>();
  private closed = false;
  private reconnectDelay = 500;

  constructor(private readonly base = '') {
    // sessionStorage: a reload keeps its identity (so a running job's events still reach us),
    // while two tabs get two ids, as in ComfyUI's frontend.
    const stored = sessionStorage.getItem('sana-graph.clientId');
    this.clientId = stored ?? crypto.randomUUID().replaceAll('-', '');
    sessionStorage.setItem('sana-graph.clientId', this.clientId);
  }

  private async json<T>(path: string, init?: RequestInit): Promise<T> {
    const res = await fetch(this.base + path, init);
    if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${path} failed: HTTP ${res.status} ${await res.text()}`);
    const text = await res.text();
    return (text ? JSON.parse(text) : {}) as T;
  }

  objectInfo(): Promise<ObjectInfo> {
    return this.json<ObjectInfo>('/object_info');
  }

  async queuePrompt(prompt: Record<string, unknown>, workflow: unknown): Promise<{ prompt_id: string; number: number; node_errors: NodeErrors }> {
    const res = await fetch(this.base + '/prompt', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt, client_id: this.clientId, extra_data: { extra_pnginfo: { workflow } } }),
    });
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`POST /prompt: HTTP ${res.status}, body is not JSON: ${text.slice(0, 200)}`);
    }
    if (res.status === 400 && body && typeof body === 'object' && 'error' in body) {
      const b = body as Partial<PromptError>;
      throw new PromptValidationError({ error: b.error ?? 'invalid prompt', node_errors: b.node_errors ?? {} });
    }
    if (!res.ok) throw new Error(`POST /prompt: HTTP ${res.status}: ${text.slice(0, 200)}`);
    return body as { prompt_id: string; number: number; node_errors: NodeErrors };
  }

  getQueue(): Promise<{ queue_running: QueueItem[]; queue_pending: QueueItem[] }> {
    return this.json('/queue');
  }

  async deleteQueueItems(ids: string[]): Promise<void> {
    await this.json('/queue', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ delete: ids }) });
  }

  /** POST /upload/image (multipart, field `image`); returns the name to use in a LoadImage combo. */
  async uploadImage(file: File): Promise<string> {
    const form = new FormData();
    form.append('image', file, file.name);
    const res = await this.json<{ name: string; subfolder?: string }>('/upload/image', { method: 'POST', body: form });
    return res.subfolder ? `${res.subfolder}/${res.name}` : res.name;
  }

  async interrupt(): Promise<void> {
    await this.json('/interrupt', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
  }

  getHistory(maxItems = 50): Promise<Record<string, HistoryEntry>> {
    return this.json(`/history?max_items=${maxItems}`);
  }

  viewUrl(img: ImageRef): string {
    const q = new URLSearchParams({ filename: img.filename, subfolder: img.subfolder ?? '', type: img.type ?? 'output' });
    return `${this.base}/view?${q}`;
  }

  /** Fetches the shipped default workflow; null when the server has none. */
  async defaultWorkflow(): Promise<unknown | null> {
    try {
      const res = await fetch(this.base + '/workflows/default.json');
      if (!res.ok) return null;
      return await res.json();
    } catch {
      return null;
    }
  }

  /** GET /workflows: the shipped workflow file names (both formats). Throws when unreachable. */
  listWorkflows(): Promise<unknown> {
    return this.json<unknown>('/workflows');
  }

  /** One shipped workflow by file name. Throws on a missing file or a failed request. */
  workflow(file: string): Promise<unknown> {
    return this.json<unknown>(`/workflows/${encodeURIComponent(file)}`);
  }

  /** The template index (titles, descriptions); null when the server has none, as titles are optional. */
  async templateIndex(): Promise<unknown | null> {
    try {
      const res = await fetch(this.base + '/templates/index.json');
      return res.ok ? await res.json() : null;
    } catch {
      return null;
    }
  }

  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onPreview(listener: PreviewListener): () => void {
    this.previewListeners.add(listener);
    return () => this.previewListeners.delete(listener);
  }

  connect(): void {
    this.closed = false;
    const url = new URL(this.base + '/ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('clientId', this.clientId);
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.socket = ws;
    ws.addEventListener('open', () => {
      this.reconnectDelay = 500;
      this.emit({ type: 'socket_open', data: {} });
    });
    ws.addEventListener('message', (ev) => {
      if (typeof ev.data === 'string') {
        let msg: WsMessage;
        try {
          msg = JSON.parse(ev.data) as WsMessage;
        } catch {
          console.warn('ws: ignoring a text frame that is not JSON', ev.data);
          return;
        }
        this.emit(msg);
      } else {
        this.handleBinary(ev.data as ArrayBuffer);
      }
    });
    ws.addEventListener('close', () => {
      this.socket = null;
      this.emit({ type: 'socket_closed', data: {} });
      if (this.closed) return;
      setTimeout(() => this.connect(), this.reconnectDelay);
      this.reconnectDelay = Math.min(8000, this.reconnectDelay * 2);
    });
  }

  disconnect(): void {
    this.closed = true;
    this.socket?.close();
  }

  get connected(): boolean {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  private emit(msg: WsMessage): void {
    for (const l of this.listeners) {
      try {
        l(msg);
      } catch (err) {
        console.error(`ws listener failed on a ${msg.type} message`, err);
      }
    }
  }

  private handleBinary(buf: ArrayBuffer): void {
    const decoded = decodeBinaryFrame(buf);
    if (!decoded) return;
    for (const l of this.previewListeners) l(decoded.blob, decoded.nodeId);
  }
}

/**
 * Decodes a binary WS frame (shared/spec/comfyui-api.md §2.4): type 1 = [u32 type][u32 format][image], type 4 =
 * [u32 type][u32 len][JSON metadata][image]. Other types carry no image and give null.
 */
export function decodeBinaryFrame(buf: ArrayBuffer): { blob: Blob; nodeId: string | null } | null {
  if (buf.byteLength < 8) return null;
  const view = new DataView(buf);
  const type = view.getUint32(0);
  if (type === 1) {
    const format = view.getUint32(4);
    const mime = format === 2 ? 'image/png' : 'image/jpeg';
    return { blob: new Blob([buf.slice(8)], { type: mime }), nodeId: null };
  }
  if (type === 4) {
    const len = view.getUint32(4);
    if (8 + len > buf.byteLength) return null;
    let meta: { node_id?: string; image_type?: string } = {};
    try {
      meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, len)));
    } catch {
      return null;
    }
    return { blob: new Blob([buf.slice(8 + len)], { type: meta.image_type ?? 'image/png' }), nodeId: meta.node_id ?? null };
  }
  return null;
}
