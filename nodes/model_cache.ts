// The cache of loaded model weights (DiT, DC-AE, Gemma-2, tokenizer), shared by all model nodes
// of one host: it reaches them as ctx.services.modelCache (services.ts), one per executor. It is separate from the engine's output cache on purpose: node outputs hold small
// model *references* (see `ModelRef`), and the weights behind them live here under a memory budget,
// so the engine can keep a loader's output for ever while the weights come and go.
//
// Entries are keyed by (kind, path, dtype, device). When a load would go over the budget, the least
// recently used entries that nobody is using at that moment are disposed first. A single model that
// is bigger than the whole budget still loads (with nothing else kept), so a small budget degrades
// to "one model at a time" instead of failing.
import os from 'node:os';

export interface ModelKey {
  /** What the weights are: 'transformer', 'vae', 'text_encoder', 'tokenizer', ... */
  kind: string;
  /** The folder or file the weights came from (absolute). */
  path: string;
  /** The dtype they were loaded in ('f32', 'bf16', ...), or '' where it does not apply. */
  dtype: string;
  /** The device they live on ('cpu', 'cuda', ...), or '' where it does not apply. */
  device: string;
}

/** What a loader hands to the cache: the model, its size, and how to free it. */
export interface Loaded<T> {
  value: T;
  /** Bytes the model holds (weights); used against the budget. */
  bytes: number;
  /** Frees the model's memory (disposes its tensors). Called at most once. */
  dispose(): void;
}

interface Entry {
  id: string;
  key: ModelKey;
  loaded?: Loaded<unknown>;
  /** The in-flight load, so concurrent requests for one key load it once. */
  pending?: Promise<Loaded<unknown>>;
  /** Number of `use()` calls currently running with this entry. */
  pins: number;
  lastUsed: number;
}

export interface ModelCacheStats {
  budgetBytes: number;
  usedBytes: number;
  entries: Array<ModelKey & { bytes: number; pinned: boolean }>;
  loads: number;
  hits: number;
  evictions: number;
}

export function modelKeyId(k: ModelKey): string {
  return JSON.stringify([k.kind, k.path, k.dtype, k.device]);
}

export class ModelCache {
  private readonly entries = new Map<string, Entry>();
  private clock = 0;
  private counters = { loads: 0, hits: 0, evictions: 0 };

  constructor(private budget: number) {
    if (!(budget > 0)) throw new Error(`ModelCache: budget must be a positive number of bytes, got ${budget}`);
  }

  get budgetBytes(): number {
    return this.budget;
  }

  setBudget(bytes: number): void {
    if (!(bytes > 0)) throw new Error(`ModelCache.setBudget: budget must be a positive number of bytes, got ${bytes}`);
    this.budget = bytes;
    this.evictUntil(0);
  }

  get usedBytes(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.loaded?.bytes ?? 0;
    return n;
  }

  has(key: ModelKey): boolean {
    return this.entries.get(modelKeyId(key))?.loaded !== undefined;
  }

  /**
   * Runs `fn` with the model for `key`, loading it with `load` on a miss. The model is pinned
   * while `fn` runs (never evicted under its feet); afterwards it stays cached until evicted.
   * `sizeHint` (bytes, e.g. the size of the weight files) makes room BEFORE a load, so the old
   * and the new model are not both resident at the peak.
   */
  async use<T, R>(key: ModelKey, load: () => Promise<Loaded<T>> | Loaded<T>, fn: (model: T) => Promise<R> | R, sizeHint = 0): Promise<R> {
    const entry = await this.acquire(key, load, sizeHint);
    try {
      return await fn(entry.loaded!.value as T);
    } finally {
      entry.pins--;
      // A pinned entry may have kept the cache over budget during a load; settle it now.
      this.evictUntil(0);
    }
  }

  /** Loads (or finds) the model and pins it; the caller must unpin. */
  private async acquire<T>(key: ModelKey, load: () => Promise<Loaded<T>> | Loaded<T>, sizeHint: number): Promise<Entry> {
    const id = modelKeyId(key);
    let entry = this.entries.get(id);
    if (entry?.loaded) {
      this.counters.hits++;
      entry.pins++;
      entry.lastUsed = ++this.clock;
      return entry;
    }
    if (!entry) {
      entry = { id, key: { ...key }, pins: 0, lastUsed: ++this.clock };
      this.entries.set(id, entry);
    }
    entry.pins++;
    try {
      if (!entry.pending) {
        this.evictUntil(sizeHint);
        const e = entry;
        e.pending = (async () => {
          const loaded = await load();
          if (!(loaded.bytes >= 0)) throw new Error(`ModelCache: loader for ${key.kind} ${key.path} reported ${loaded.bytes} bytes`);
          return loaded;
        })();
        try {
          e.loaded = await e.pending;
          this.counters.loads++;
        } finally {
          e.pending = undefined;
        }
      } else {
        await entry.pending;
        this.counters.hits++;
      }
    } catch (err) {
      entry.pins--;
      if (!entry.loaded && entry.pins === 0) this.entries.delete(id);
      throw err;
    }
    entry.lastUsed = ++this.clock;
    // Make room for what was just loaded, never evicting it or anything in use.
    this.evictUntil(0);
    return entry;
  }

  /** Evicts unpinned entries, least recently used first, until `extra` more bytes fit. */
  private evictUntil(extra: number): void {
    let used = this.usedBytes;
    if (used + extra <= this.budget) return;
    const candidates = [...this.entries.values()].filter((e) => e.loaded && e.pins === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of candidates) {
      if (used + extra <= this.budget) break;
      // Already gone: a model that depended on one dropped before it (see `forget`).
      if (!e.loaded) continue;
      this.drop(e);
      this.counters.evictions++;
      used = this.usedBytes;
    }
  }

  /**
   * Drops one entry now unless it is in use; true when it was dropped. For models built on top
   * of another entry (a LoRA-patched transformer borrows its base's weights): when the base goes,
   * its dependants go with it instead of lingering until evicted.
   */
  forget(key: ModelKey): boolean {
    const e = this.entries.get(modelKeyId(key));
    if (!e?.loaded || e.pins > 0) return false;
    this.drop(e);
    return true;
  }

  private drop(e: Entry): void {
    const loaded = e.loaded;
    e.loaded = undefined;
    this.entries.delete(e.id);
    loaded?.dispose();
  }

  /** Disposes every model that is not in use; returns what was freed. Backs `POST /free`. */
  clear(): { models: number; bytes: number } {
    let models = 0;
    let bytes = 0;
    for (const e of [...this.entries.values()]) {
      if (!e.loaded || e.pins > 0) continue;
      models++;
      bytes += e.loaded.bytes;
      this.drop(e);
    }
    return { models, bytes };
  }

  stats(): ModelCacheStats {
    return {
      budgetBytes: this.budget,
      usedBytes: this.usedBytes,
      entries: [...this.entries.values()]
        .filter((e) => e.loaded)
        .sort((a, b) => b.lastUsed - a.lastUsed)
        .map((e) => ({ ...e.key, bytes: e.loaded!.bytes, pinned: e.pins > 0 })),
      ...this.counters,
    };
  }
}

/**
 * The default budget: `SANA_MODEL_CACHE_MB` when set, else 70% of the machine's RAM (the rest is
 * left for activations, the tokenizer's heap and the server).
 */
export function defaultBudgetBytes(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SANA_MODEL_CACHE_MB;
  if (raw !== undefined && raw !== '') {
    const mb = Number(raw);
    if (!(mb > 0)) throw new Error(`SANA_MODEL_CACHE_MB must be a positive number of megabytes, got "${raw}"`);
    return Math.floor(mb * 1024 * 1024);
  }
  return Math.floor(os.totalmem() * 0.7);
}
