// Messages between the cluster's processes, over Redis pub/sub:
//   events  (binary) workers -> front ends: job events and previews, addressed by client id and
//           prompt id; each front end delivers them to its own sockets of that client id.
//   queue   (JSON)   anyone -> front ends and workers: the queue changed (front ends broadcast
//           `status`; idle workers look for work).
//   control (JSON)   front ends -> workers: interrupt (one prompt, or every running job), free.
// Pub/sub is fire-and-forget: a front end that is down (or cut from Redis) misses messages, as a
// client disconnected from a single server does; history stays the record of every job.
// Within one publisher, messages arrive in the order sent (one connection, one channel).
import type { Redis } from 'ioredis';
import { parseJsonExact, stringifyJson } from '../engine/json.ts';
import type { ClusterKeys } from './keys.ts';

export interface JobEventMessage {
  kind: 'event';
  promptId: string;
  /** The client that queued the prompt (extra_data.client_id); undefined: none. */
  clientId: string | undefined;
  type: string;
  data: Record<string, unknown>;
}

export interface PreviewMessage {
  kind: 'preview';
  promptId: string;
  clientId: string | undefined;
  node: string;
  displayNode: string;
  format: 'png' | 'jpeg';
  /** A result image (SaveImageWebsocket), not a step preview: never dropped for slow clients. */
  result: boolean;
  image: Uint8Array;
}

export type ClusterMessage = JobEventMessage | PreviewMessage;

export type QueueNotice = {
  reason: 'added' | 'deleted' | 'cleared' | 'started' | 'finished' | 'requeued';
  promptId?: string;
  workerId?: string;
};

export type ControlMessage = { type: 'interrupt'; promptId?: string } | { type: 'free'; unloadModels: boolean; freeMemory: boolean };

/**
 * Binary frame: [u32 BE header length][header: exact JSON][image bytes, previews only]. One frame
 * per message, so a preview's bytes never go through JSON or base64.
 */
export function encodeMessage(m: ClusterMessage): Buffer {
  const { image, ...head } = m.kind === 'preview' ? m : { ...m, image: undefined };
  const json = Buffer.from(stringifyJson(head));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length, 0);
  return image ? Buffer.concat([len, json, image]) : Buffer.concat([len, json]);
}

export function decodeMessage(buf: Buffer): ClusterMessage {
  if (buf.length < 4) throw new Error('cluster message: short frame');
  const n = buf.readUInt32BE(0);
  if (4 + n > buf.length) throw new Error('cluster message: header past the frame');
  const head = parseJsonExact(buf.subarray(4, 4 + n).toString('utf8')) as ClusterMessage;
  if (head.kind === 'preview') return { ...head, image: buf.subarray(4 + n) };
  if (head.kind === 'event') return head;
  throw new Error(`cluster message: unknown kind ${String((head as { kind?: unknown }).kind)}`);
}

/**
 * Who gets a job message, ComfyUI's rule as in web/server/state.ts: the queuing client; when the
 * job has none, these types go to everyone (and the rest nowhere). Previews follow 'progress'.
 */
export const BROADCAST_IF_NO_CLIENT = new Set(['progress', 'progress_state', 'execution_interrupted']);

export function routeFor(m: ClusterMessage): { to: 'client'; clientId: string } | { to: 'everyone' } | { to: 'nobody' } {
  if (m.clientId !== undefined) return { to: 'client', clientId: m.clientId };
  if (m.kind === 'preview' || BROADCAST_IF_NO_CLIENT.has(m.type)) return { to: 'everyone' };
  return { to: 'nobody' };
}

export interface Subscription {
  message?(m: ClusterMessage): void;
  queue?(n: QueueNotice): void;
  control?(c: ControlMessage): void;
}

/** A queue notice as it travels on the queue channel (also published from inside a worker's Lua script). */
export function encodeQueueNotice(n: QueueNotice): string {
  return JSON.stringify(n);
}

export class ClusterEvents {
  constructor(
    /** A command connection (publishing). */
    private readonly pub: Redis,
    private readonly keys: ClusterKeys,
  ) {}

  publish(m: ClusterMessage): Promise<number> {
    return this.pub.publish(this.keys.eventsChannel, encodeMessage(m));
  }

  publishQueue(n: QueueNotice): Promise<number> {
    return this.pub.publish(this.keys.queueChannel, encodeQueueNotice(n));
  }

  publishControl(c: ControlMessage): Promise<number> {
    return this.pub.publish(this.keys.controlChannel, JSON.stringify(c));
  }

  /**
   * Subscribes on `sub`, a connection of its own (a subscribed connection can do nothing else;
   * ioredis re-subscribes after a reconnect). Only the channels with a handler are subscribed.
   * Resolves once subscribed; returns the unsubscribe function. A bad frame is reported to
   * `onError` and skipped.
   */
  async subscribe(sub: Redis, s: Subscription, onError: (e: Error) => void = () => undefined): Promise<() => Promise<void>> {
    const k = this.keys;
    const channels = [s.message && k.eventsChannel, s.queue && k.queueChannel, s.control && k.controlChannel].filter((c): c is string => !!c);
    const listener = (channel: Buffer, message: Buffer) => {
      try {
        const ch = channel.toString();
        if (ch === k.eventsChannel) s.message?.(decodeMessage(message));
        else if (ch === k.queueChannel) s.queue?.(JSON.parse(message.toString()) as QueueNotice);
        else if (ch === k.controlChannel) s.control?.(JSON.parse(message.toString()) as ControlMessage);
      } catch (e) {
        onError(e as Error);
      }
    };
    sub.on('messageBuffer', listener);
    await sub.subscribe(...channels);
    return async () => {
      sub.off('messageBuffer', listener);
      await sub.unsubscribe(...channels).catch(() => undefined);
    };
  }
}
