// Execution events with ComfyUI's message types and payloads (shared/spec/comfyui-api.md §2.3). The server forwards
// them as `{ type, data }` WebSocket frames; `binary_preview` is the one event that is not a
// JSON message: it becomes a binary frame (type 1 or 4, shared/spec/comfyui-api.md §2.4).

import type { PreviewImage, UiOutput } from './types.ts';

export interface NodeProgressState {
  value: number;
  max: number;
  state: 'running' | 'finished' | 'error';
  node_id: string;
  prompt_id: string;
  display_node_id: string;
  parent_node_id: string | null;
  real_node_id: string;
}

export interface ExecutionErrorData {
  prompt_id: string;
  node_id: string;
  node_type: string;
  executed: string[];
  exception_message: string;
  exception_type: string;
  traceback: string[];
  current_inputs: Record<string, unknown[]>;
  current_outputs: string[];
  timestamp: number;
}

export interface ExecutionInterruptedData {
  prompt_id: string;
  node_id: string;
  node_type: string;
  executed: string[];
  timestamp: number;
}

export interface EngineEventMap {
  execution_start: { prompt_id: string; timestamp: number };
  execution_cached: { nodes: string[]; prompt_id: string; timestamp: number };
  /** `node: null` is the end-of-job marker every script client waits for. */
  executing: { node: string | null; display_node?: string; prompt_id: string };
  progress: { value: number; max: number; prompt_id: string; node: string };
  /**
   * `nodes`: every non-pending node for jobs of up to `progressStateFullMax` nodes (ComfyUI),
   * else only the node whose state changed (keeps a job's traffic linear). A fresh object per event.
   */
  progress_state: { prompt_id: string; nodes: Record<string, NodeProgressState> };
  executed: { node: string; display_node: string; output: UiOutput | null; prompt_id: string };
  execution_success: { prompt_id: string; timestamp: number };
  execution_error: ExecutionErrorData;
  execution_interrupted: ExecutionInterruptedData;
  /** `result`: the image is a node's output (SaveImageWebsocket), not a step preview, so a slow
   *  client must get it (or be disconnected), never silently miss it. */
  binary_preview: { prompt_id: string; node: string; display_node: string; image: PreviewImage; result?: boolean };
}

export type EngineEventType = keyof EngineEventMap;
export type EngineEvent = { [K in EngineEventType]: { type: K; data: EngineEventMap[K] } }[EngineEventType];
export type EngineEventListener = (event: EngineEvent) => void;

/** The messages ComfyUI records in a history entry's `status.messages`. */
export const HISTORY_MESSAGE_TYPES: ReadonlySet<EngineEventType> = new Set([
  'execution_start',
  'execution_cached',
  'execution_success',
  'execution_error',
  'execution_interrupted',
]);

/** A small listener list; a throwing listener must not break the run, so errors are reported, not thrown. */
export class EventHub {
  readonly #listeners = new Set<EngineEventListener>();
  onListenerError: (err: unknown) => void = (err) => console.error('[engine] event listener failed:', err);

  on(cb: EngineEventListener): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  emit<K extends EngineEventType>(type: K, data: EngineEventMap[K]): void {
    const ev = { type, data } as EngineEvent;
    for (const l of this.#listeners) {
      try {
        l(ev);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }
}
