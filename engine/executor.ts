// The executor: validates a prompt, orders the needed sub-graph topologically, serves nodes
// from the signature cache or runs them, and reports ComfyUI's events (shared/spec/comfyui-api.md §2.3, §5.2-5.8).
// One job at a time per executor; the cache outlives jobs (and failed jobs).

import { createCache, signature, type CacheEntry, type CacheOptions, type CacheStrategy, type OutputCache } from './cache.ts';
import {
  EventHub,
  HISTORY_MESSAGE_TYPES,
  type EngineEventListener,
  type EngineEventMap,
  type EngineEventType,
  type ExecutionErrorData,
  type ExecutionInterruptedData,
  type NodeProgressState,
} from './events.ts';
import { topoSort, type LinkEdge } from './graph.ts';
import type { NodeRegistry, RegisteredNode } from './registry.ts';
import type { ApiPrompt } from './schemas.ts';
import type { HiddenKind, NodeContext, PreviewImage, UiOutput } from './types.ts';
import { inputDecls, PromptValidationError, validatePrompt, type ValidateOptions } from './validate.ts';
import { parseLink } from './graph.ts';

export interface ExecutorOptions {
  /** 'classic' (default), 'lru' (with maxEntries) or 'none'. */
  cache?: CacheStrategy | CacheOptions;
  /** Handed to every node as `ctx.services` (folders, model cache, ...); default: the registry's. */
  services?: Record<string, unknown>;
  /** Limits applied when `execute` validates. */
  validation?: Pick<ValidateOptions, 'maxNodes' | 'maxValueDepth'>;
  /**
   * Jobs running at most this many nodes get ComfyUI's `progress_state`: every node that is
   * not pending, in every message. Larger jobs get only the node whose state changed, so that a
   * job's events stay linear in its node count (default 64).
   */
  progressStateFullMax?: number;
  /**
   * Called by `ctx.throwIfInterrupted()` and `ctx.progress()` before they read the job's signal.
   * A host whose interrupts arrive out of band (shared memory, while a synchronous node keeps
   * the event loop busy) aborts the signal here, so a node polling between blocks sees it.
   */
  pollInterrupt?: () => void;
}

export const DEFAULT_PROGRESS_STATE_FULL_MAX = 64;

export interface ExecuteOptions {
  promptId: string;
  /** `extra_data` of the job (client_id, extra_pnginfo, sensitive keys for hidden inputs). */
  extraData?: Record<string, unknown>;
  /** Output node ids to run (from validation); default: every valid output node. */
  outputs?: readonly string[];
  /** Interrupts this job when aborted (in addition to `executor.interrupt()`). */
  signal?: AbortSignal;
  /**
   * Whether `execute` itself sends the final `executing {node: null}`. A server that must
   * record history and broadcast `status` first (ComfyUI's order) passes false and sends it.
   */
  sendFinalExecuting?: boolean;
}

export type ExecutionStatus = 'success' | 'error' | 'interrupted';

export interface ExecutionResult {
  promptId: string;
  status: ExecutionStatus;
  /** The coerced prompt that ran (what history stores). */
  prompt: ApiPrompt;
  /** The output nodes that were scheduled. */
  outputNodes: string[];
  /** History `outputs`: node id -> UI output, cached ones included. */
  outputs: Record<string, UiOutput>;
  /** History `meta` for every node in `outputs`. */
  meta: Record<string, { node_id: string; display_node: string; parent_node: string | null; real_node_id: string }>;
  /** History `status.messages`: [type, data] of the lifecycle messages. */
  messages: [EngineEventType, Record<string, unknown>][];
  /** Nodes that ran in this job. */
  ran: string[];
  /** Nodes served from the cache. */
  cached: string[];
  error?: ExecutionErrorData;
  interrupted?: ExecutionInterruptedData;
}

/** Thrown by `ctx.progress()` / `ctx.throwIfInterrupted()` once the job is interrupted. */
export class InterruptedError extends Error {
  override name = 'InterruptedError';
  constructor() {
    super('Processing interrupted');
  }
}

/** A node input given an empty list (e.g. from a list output that produced nothing). */
export class EmptyInputListError extends Error {
  override name = 'EmptyInputListError';
}

export class ExecutorBusyError extends Error {
  override name = 'ExecutorBusyError';
}

interface PlannedNode {
  id: string;
  entry: RegisteredNode;
  links: LinkEdge[];
  constants: Record<string, unknown>;
  key: string;
}

function now(): number {
  return Date.now();
}

/** Formats input values for `execution_error.current_inputs` (primitives as is, others described). */
export function describeValue(v: unknown): unknown {
  if (v === null || v === undefined || typeof v === 'number' || typeof v === 'boolean') return v ?? null;
  if (typeof v === 'string') return v.length > 1000 ? `${v.slice(0, 1000)}…` : v;
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as { length?: number }).length ?? v.byteLength})`;
  if (Array.isArray(v)) return `Array(${v.length})`;
  if (typeof v === 'object') {
    const name = (v as object).constructor?.name;
    const shape = (v as { shape?: unknown }).shape;
    return `${name && name !== 'Object' ? name : 'object'}${Array.isArray(shape) ? `(shape=[${shape.join(', ')}])` : ''}`;
  }
  return String(v);
}

export class Executor {
  readonly cache: OutputCache;
  readonly #hub = new EventHub();
  readonly #services: Record<string, unknown>;
  #running: AbortController | undefined;

  constructor(
    readonly registry: NodeRegistry,
    readonly options: ExecutorOptions = {},
  ) {
    this.cache = createCache(options.cache ?? 'classic');
    this.#services = options.services ?? registry.services;
  }

  /** Subscribes to every event; returns the unsubscribe function. */
  onEvent(cb: EngineEventListener): () => void {
    return this.#hub.on(cb);
  }

  get busy(): boolean {
    return this.#running !== undefined;
  }

  /** Interrupts the running job, if any (ComfyUI's global interrupt). */
  interrupt(): void {
    this.#running?.abort();
  }

  /** Drops every cached result (POST /free {free_memory: true}). */
  clearCache(): void {
    this.cache.clear();
  }

  /**
   * Validates and runs a prompt. Throws `PromptValidationError` (with the 400 body) when the
   * prompt is invalid and `ExecutorBusyError` when a job is already running; node failures and
   * interrupts are not thrown but reported in the result and as events.
   */
  async execute(rawPrompt: unknown, opts: ExecuteOptions): Promise<ExecutionResult> {
    if (this.#running) throw new ExecutorBusyError(`executor is busy with another prompt; cannot start '${opts.promptId}'`);
    const v = validatePrompt(rawPrompt, this.registry, { ...this.options.validation, partialExecutionTargets: opts.outputs });
    if (!v.ok) throw new PromptValidationError({ error: v.error, node_errors: v.node_errors });
    const controller = new AbortController();
    this.#running = controller;
    const onAbort = () => controller.abort();
    if (opts.signal?.aborted) controller.abort();
    opts.signal?.addEventListener('abort', onAbort);
    try {
      return await this.#run(v.prompt, v.outputs, opts, controller.signal);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      this.#running = undefined;
    }
  }

  #plan(prompt: ApiPrompt, outputs: readonly string[]): { order: string[]; nodes: Map<string, PlannedNode> } {
    const nodes = new Map<string, PlannedNode>();
    const stack = [...outputs];
    while (stack.length) {
      const id = stack.pop()!;
      if (nodes.has(id)) continue;
      const entry = this.registry.get(prompt[id].class_type)!;
      const links: LinkEdge[] = [];
      const constants: Record<string, unknown> = {};
      for (const [name] of inputDecls(entry)) {
        const value = prompt[id].inputs[name];
        if (value === undefined) continue;
        const link = Array.isArray(value) ? parseLink(value) : undefined;
        if (link) {
          links.push({ input: name, source: link.source, slot: link.slot });
          stack.push(link.source);
        } else {
          constants[name] = value;
        }
      }
      nodes.set(id, { id, entry, links, constants, key: '' });
    }
    const outputSet = new Set(outputs);
    // Validation already refused cycles; this order is over a DAG.
    // Among ready nodes, prompt order (after output nodes) keeps runs predictable.
    const { order } = topoSort(
      Object.keys(prompt).filter((id) => nodes.has(id)),
      (id) => nodes.get(id)!.links.map((l) => l.source),
      (id) => outputSet.has(id),
    );
    for (const id of order) {
      const n = nodes.get(id)!;
      n.key = nodeSignature(n, (src) => nodes.get(src)!.key, this.#services);
    }
    return { order, nodes };
  }

  /**
   * Signatures of the prompt's nodes that this job does not run (outside the partial execution
   * targets, or feeding no output). The classic cache keeps their entries too, as ComfyUI's
   * keeps every entry the current prompt names, so a node left out of one job keeps its result
   * for the next. These nodes were not validated: one whose links do not resolve has no key.
   */
  #outsideKeys(prompt: ApiPrompt, planned: Map<string, PlannedNode>): string[] {
    const rest = new Map<string, PlannedNode>();
    for (const [id, node] of Object.entries(prompt)) {
      if (planned.has(id)) continue;
      const entry = this.registry.get(node.class_type);
      if (!entry) continue;
      const links: LinkEdge[] = [];
      const constants: Record<string, unknown> = {};
      for (const [name] of inputDecls(entry)) {
        const value = node.inputs?.[name];
        if (value === undefined) continue;
        const link = Array.isArray(value) ? parseLink(value) : undefined;
        if (link) links.push({ input: name, source: link.source, slot: link.slot });
        else constants[name] = value;
      }
      rest.set(id, { id, entry, links, constants, key: '' });
    }
    const keyOf = (src: string): string | undefined => planned.get(src)?.key ?? (rest.get(src)?.key || undefined);
    const { order } = topoSort([...rest.keys()], (id) => rest.get(id)!.links.map((l) => l.source));
    const keys: string[] = [];
    for (const id of order) {
      const n = rest.get(id)!;
      if (n.links.some((l) => keyOf(l.source) === undefined)) continue;
      n.key = nodeSignature(n, (src) => keyOf(src)!, this.#services);
      keys.push(n.key);
    }
    return keys;
  }

  async #run(prompt: ApiPrompt, outputNodes: string[], opts: ExecuteOptions, signal: AbortSignal): Promise<ExecutionResult> {
    const promptId = opts.promptId;
    const extraData = opts.extraData ?? {};
    const result: ExecutionResult = { promptId, status: 'success', prompt, outputNodes, outputs: {}, meta: {}, messages: [], ran: [], cached: [] };
    const emit = <K extends EngineEventType>(type: K, data: EngineEventMap[K]) => {
      if (HISTORY_MESSAGE_TYPES.has(type)) result.messages.push([type, data as unknown as Record<string, unknown>]);
      this.#hub.emit(type, data);
    };
    const progressNodes: Record<string, NodeProgressState> = {};
    // Decided once the plan is known (see ExecutorOptions.progressStateFullMax).
    let fullProgressState = true;
    const setProgress = (id: string, state: NodeProgressState['state'], value: number, max: number) => {
      const entry: NodeProgressState = { value, max, state, node_id: id, prompt_id: promptId, display_node_id: id, parent_node_id: null, real_node_id: id };
      progressNodes[id] = entry;
      // A whole-graph snapshot per event is O(nodes²) per job (a 5,000-node chain sent GBs);
      // past the limit only the changed node goes out. One node runs at a time, so that is also
      // every running node. A fresh object each time: listeners may keep or post it.
      emit('progress_state', { prompt_id: promptId, nodes: fullProgressState ? { ...progressNodes } : { [id]: entry } });
    };

    emit('execution_start', { prompt_id: promptId, timestamp: now() });
    const { order, nodes } = this.#plan(prompt, outputNodes);
    this.cache.beginPrompt(new Set([...[...nodes.values()].map((n) => n.key), ...this.#outsideKeys(prompt, nodes)]));

    // Snapshot the hits now, so that entries this job inserts cannot evict what it relies on.
    const results = new Map<string, CacheEntry>();
    for (const id of order) {
      const hit = this.cache.get(nodes.get(id)!.key);
      if (hit) {
        results.set(id, hit);
        result.cached.push(id);
      }
    }
    fullProgressState = order.length - result.cached.length <= (this.options.progressStateFullMax ?? DEFAULT_PROGRESS_STATE_FULL_MAX);
    emit('execution_cached', { nodes: [...result.cached], prompt_id: promptId, timestamp: now() });

    const executed: string[] = [];
    const recordUi = (id: string, ui: UiOutput) => {
      result.outputs[id] = ui;
      result.meta[id] = { node_id: id, display_node: id, parent_node: null, real_node_id: id };
    };

    // Results of this job by signature: an identical node elsewhere in the prompt (same class,
    // inputs and upstream) is served from the first one's result, as ComfyUI's cache would.
    const byKey = new Map<string, CacheEntry>();
    const dedupe = this.cache.strategy !== 'none';
    const outputSet = new Set(outputNodes);
    for (const id of order) {
      const node = nodes.get(id)!;
      let cachedEntry = results.get(id);
      let dedupedHit = false;
      if (!cachedEntry && dedupe && byKey.has(node.key)) {
        cachedEntry = byKey.get(node.key)!;
        dedupedHit = true;
        results.set(id, cachedEntry);
        result.cached.push(id);
      }
      if (cachedEntry) {
        byKey.set(node.key, cachedEntry);
        executed.push(id);
        // ComfyUI reaches a cached node only when it is a scheduled output (cached producers are
        // never queued) or when an identical node ran earlier in this job; it then sends
        // `executed` with the cached UI, null when there was none.
        if (outputSet.has(id) || dedupedHit) {
          if (cachedEntry.ui) recordUi(id, cachedEntry.ui);
          emit('executed', { node: id, display_node: id, output: cachedEntry.ui ?? null, prompt_id: promptId });
        }
        continue;
      }
      if (signal.aborted) {
        result.status = 'interrupted';
        result.interrupted = { prompt_id: promptId, node_id: id, node_type: node.entry.classType, executed: [...executed], timestamp: now() };
        emit('execution_interrupted', result.interrupted);
        break;
      }
      emit('executing', { node: id, display_node: id, prompt_id: promptId });
      setProgress(id, 'running', 0, 1);
      const inputLists = this.#inputLists(node, prompt, results, extraData);
      try {
        const entry = await this.#runNode(node, inputLists, {
          nodeId: id,
          promptId,
          signal,
          services: this.#services,
          extraData,
          throwIfInterrupted: () => {
            this.options.pollInterrupt?.();
            if (signal.aborted) throw new InterruptedError();
          },
          progress: (value, max, preview) => {
            this.options.pollInterrupt?.();
            if (signal.aborted) throw new InterruptedError();
            emit('progress', { value, max, prompt_id: promptId, node: id });
            setProgress(id, 'running', value, max);
            if (preview) emit('binary_preview', { prompt_id: promptId, node: id, display_node: id, image: preview });
          },
          sendBinaryPreview: (image: PreviewImage) => emit('binary_preview', { prompt_id: promptId, node: id, display_node: id, image, result: true }),
        });
        results.set(id, entry);
        byKey.set(node.key, entry);
        this.cache.set(node.key, entry);
        executed.push(id);
        result.ran.push(id);
        const max = progressNodes[id]?.max ?? 1;
        setProgress(id, 'finished', max, max);
        // ComfyUI: `executed` (and a history output) only for a run that produced UI output.
        if (entry.ui) {
          recordUi(id, entry.ui);
          emit('executed', { node: id, display_node: id, output: entry.ui, prompt_id: promptId });
        }
      } catch (err) {
        setProgress(id, 'error', progressNodes[id]?.value ?? 0, progressNodes[id]?.max ?? 1);
        if (signal.aborted || err instanceof InterruptedError) {
          result.status = 'interrupted';
          result.interrupted = { prompt_id: promptId, node_id: id, node_type: node.entry.classType, executed: [...executed], timestamp: now() };
          emit('execution_interrupted', result.interrupted);
        } else {
          const e = err instanceof Error ? err : new Error(String(err));
          const current_inputs: Record<string, unknown[]> = {};
          for (const [name, list] of Object.entries(inputLists)) current_inputs[name] = list.map(describeValue);
          result.status = 'error';
          result.error = {
            prompt_id: promptId,
            node_id: id,
            node_type: node.entry.classType,
            executed: [...executed],
            exception_message: e.message,
            exception_type: (e as { code?: unknown }).code ? `${e.name}[${String((e as { code?: unknown }).code)}]` : e.name,
            traceback: (e.stack ?? `${e.name}: ${e.message}`).split('\n'),
            current_inputs,
            current_outputs: [...results.keys()],
            timestamp: now(),
          };
          emit('execution_error', result.error);
        }
        break;
      }
    }
    if (result.status === 'success') emit('execution_success', { prompt_id: promptId, timestamp: now() });
    if (opts.sendFinalExecuting !== false) emit('executing', { node: null, prompt_id: promptId });
    return result;
  }

  /** Every input as a list of items: constants are one-item lists, links the producer's list. */
  #inputLists(node: PlannedNode, prompt: ApiPrompt, results: Map<string, CacheEntry>, extraData: Record<string, unknown>): Record<string, unknown[]> {
    const lists: Record<string, unknown[]> = {};
    for (const [name, value] of Object.entries(node.constants)) lists[name] = [value];
    for (const l of node.links) lists[l.input] = results.get(l.source)!.outputs[l.slot];
    for (const [name, kind] of Object.entries(node.entry.inputs.hidden ?? {})) lists[name] = [hiddenValue(kind, node.id, prompt, extraData)];
    return lists;
  }

  async #runNode(node: PlannedNode, lists: Record<string, unknown[]>, ctx: NodeContext): Promise<CacheEntry> {
    const { def } = node.entry;
    const mapInputs = node.entry.mapInputs;
    const map = mapInputs ? (x: Record<string, unknown>) => mapInputs(x, ctx.services) : (x: Record<string, unknown>) => x;
    const names = Object.keys(lists);
    const calls: Record<string, unknown>[] = [];
    if (def.inputIsList) {
      calls.push({ ...lists });
    } else {
      // ComfyUI's rule: run once per index of the longest list, shorter lists repeat their last item.
      // An empty list has no item to repeat: ComfyUI fails the node there (an IndexError), and
      // running it zero times would end the job "successfully" with nothing produced.
      const empty = names.find((n) => lists[n].length === 0);
      if (empty !== undefined) {
        const link = node.links.find((l) => l.input === empty);
        const from = link ? ` (node ${link.source} output ${link.slot} produced no items)` : '';
        throw new EmptyInputListError(
          `node ${node.id} (${node.entry.classType}): input '${empty}' received an empty list${from}; there is nothing to run it on`,
        );
      }
      const lengths = names.map((n) => lists[n].length);
      const count = names.length === 0 ? 1 : Math.max(...lengths);
      for (let i = 0; i < count; i++) {
        const args: Record<string, unknown> = {};
        for (const n of names) args[n] = lists[n][Math.min(i, lists[n].length - 1)];
        calls.push(args);
      }
    }
    const outputs: unknown[][] = def.outputs.map(() => []);
    let ui: UiOutput | undefined;
    for (const args of calls) {
      ctx.throwIfInterrupted();
      const raw = await def.run(map(args), ctx);
      const { values, ui: callUi } = normalizeResult(raw, node);
      values.forEach((v, i) => {
        if (def.outputs[i].isList) {
          if (!Array.isArray(v))
            throw new TypeError(
              `node ${node.id} (${node.entry.classType}): output ${i} '${def.outputs[i].name}' is a list output but run() returned ${describeValue(v)}`,
            );
          outputs[i].push(...v);
        } else {
          outputs[i].push(v);
        }
      });
      if (callUi) {
        ui ??= {};
        for (const [k, v] of Object.entries(callUi)) (ui[k] ??= []).push(...(Array.isArray(v) ? v : [v]));
      }
    }
    // An empty UI dict is no UI output (ComfyUI: no `executed`, nothing in history).
    return ui && Object.keys(ui).length > 0 ? { outputs, ui } : { outputs };
  }
}

/** A node's cache key: class, fingerprint, node id where it matters, constants, producers' keys. */
function nodeSignature(n: PlannedNode, sourceKey: (id: string) => string, services: Record<string, unknown>): string {
  const hidden = n.entry.inputs.hidden ?? {};
  let fp: unknown;
  if (n.entry.def.fingerprint) {
    try {
      fp = n.entry.def.fingerprint({ ...n.constants }, services);
    } catch {
      fp = Number.NaN;
    }
  }
  return signature({
    classType: n.entry.classType,
    fingerprint: fp,
    nodeId: n.entry.def.notIdempotent || Object.values(hidden).includes('UNIQUE_ID') ? n.id : undefined,
    constants: n.constants,
    links: n.links.map((l) => ({ input: l.input, sourceSignature: sourceKey(l.source), slot: l.slot })),
  });
}

function hiddenValue(kind: HiddenKind, nodeId: string, prompt: ApiPrompt, extraData: Record<string, unknown>): unknown {
  switch (kind) {
    case 'PROMPT':
    case 'DYNPROMPT':
      return prompt;
    case 'EXTRA_PNGINFO':
      return (extraData.extra_pnginfo as Record<string, unknown> | undefined) ?? undefined;
    case 'UNIQUE_ID':
      return nodeId;
    case 'AUTH_TOKEN_COMFY_ORG':
      return extraData.auth_token_comfy_org;
    case 'API_KEY_COMFY_ORG':
      return extraData.api_key_comfy_org;
  }
}

function normalizeResult(raw: unknown, node: PlannedNode): { values: unknown[]; ui?: UiOutput } {
  const n = node.entry.def.outputs.length;
  const where = `node ${node.id} (${node.entry.classType})`;
  let values: unknown;
  let ui: UiOutput | undefined;
  if (Array.isArray(raw)) {
    values = raw;
  } else if (raw !== null && typeof raw === 'object' && ('result' in raw || 'ui' in raw)) {
    values = (raw as { result?: unknown }).result;
    ui = (raw as { ui?: UiOutput }).ui;
    if (ui !== undefined && (ui === null || typeof ui !== 'object')) throw new TypeError(`${where}: run() returned a ui that is not an object`);
  } else if (raw === undefined && n === 0) {
    values = [];
  } else {
    throw new TypeError(`${where}: run() must return an array of ${n} output(s) or { result, ui }, got ${String(describeValue(raw))}`);
  }
  if (values === undefined) {
    if (n > 0) throw new TypeError(`${where}: run() returned no result for its ${n} output(s)`);
    values = [];
  }
  if (!Array.isArray(values) || values.length !== n) {
    throw new TypeError(`${where}: run() returned ${Array.isArray(values) ? values.length : 'a non-array'} result(s), expected ${n}`);
  }
  return { values, ui };
}
