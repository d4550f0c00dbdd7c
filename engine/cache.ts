// Output cache = key strategy (input signatures, below) x storage strategy (classic | lru | none).
//
// A node's signature is a hash of: its class, its fingerprint result, its node id when the class
// is not idempotent or reads UNIQUE_ID, its constant inputs sorted by name, and for every linked
// input (name, the producer's signature, output slot). Node ids do not enter otherwise, so equal
// sub-graphs share entries, and any upstream change reaches every downstream key (Merkle-style;
// equivalent to ComfyUI's ancestor enumeration for cache-hit purposes).

import type { UiOutput } from './types.ts';

export interface CacheEntry {
  /** One list of items per output slot (ComfyUI's internal list representation). */
  outputs: unknown[][];
  ui?: UiOutput;
}

export type CacheStrategy = 'classic' | 'lru' | 'none';
export const DEFAULT_LRU_ENTRIES = 100;

export interface LruOptions {
  maxEntries?: number;
  /** Byte budget over all entries, measured with `sizeOf` (e.g. tensor nbytes); no limit if unset. */
  maxBytes?: number;
  /** Size of one output item in bytes; the host supplies it so engine/ never sees tensor types. */
  sizeOf?: (value: unknown) => number;
}
export type CacheOptions = { strategy: 'classic' } | ({ strategy: 'lru' } & LruOptions) | { strategy: 'none' };

export interface OutputCache {
  readonly strategy: CacheStrategy;
  readonly size: number;
  get(key: string): CacheEntry | undefined;
  set(key: string, entry: CacheEntry): void;
  /** Start of a job: `keys` are the signatures the job needs. */
  beginPrompt(keys: ReadonlySet<string>): void;
  clear(): void;
}

/** ComfyUI's default: at the start of each job, drop every entry the job does not use. */
export class ClassicCache implements OutputCache {
  readonly strategy = 'classic' as const;
  readonly #map = new Map<string, CacheEntry>();
  get size(): number {
    return this.#map.size;
  }
  get(key: string): CacheEntry | undefined {
    return this.#map.get(key);
  }
  set(key: string, entry: CacheEntry): void {
    this.#map.set(key, entry);
  }
  beginPrompt(keys: ReadonlySet<string>): void {
    for (const k of [...this.#map.keys()]) if (!keys.has(k)) this.#map.delete(k);
  }
  clear(): void {
    this.#map.clear();
  }
}

/**
 * Keeps results across jobs, at most `maxEntries` (and `maxBytes` when given), evicting the least
 * recently used. The newest entry is always kept, even when it alone exceeds the byte budget.
 */
export class LruCache implements OutputCache {
  readonly strategy = 'lru' as const;
  // Map iteration order is insertion order: re-inserting on use makes the first key the LRU one.
  readonly #map = new Map<string, CacheEntry>();
  readonly #bytes = new Map<string, number>();
  #total = 0;
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly #sizeOf: ((value: unknown) => number) | undefined;
  constructor(opts: LruOptions | number = {}) {
    const o = typeof opts === 'number' ? { maxEntries: opts } : opts;
    this.maxEntries = o.maxEntries ?? DEFAULT_LRU_ENTRIES;
    this.maxBytes = o.maxBytes ?? Infinity;
    this.#sizeOf = o.sizeOf;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) throw new RangeError(`LRU cache size must be a positive integer, got ${this.maxEntries}`);
    if (!(this.maxBytes > 0)) throw new RangeError(`LRU cache byte budget must be positive, got ${this.maxBytes}`);
    if (o.maxBytes !== undefined && !o.sizeOf) throw new RangeError('LRU cache maxBytes needs a sizeOf function');
  }
  get size(): number {
    return this.#map.size;
  }
  /** Bytes held, as measured by `sizeOf` (0 without it). */
  get bytes(): number {
    return this.#total;
  }
  #measure(entry: CacheEntry): number {
    if (!this.#sizeOf) return 0;
    let n = 0;
    for (const list of entry.outputs) for (const v of list) n += this.#sizeOf(v);
    return n;
  }
  #delete(key: string): void {
    this.#total -= this.#bytes.get(key) ?? 0;
    this.#bytes.delete(key);
    this.#map.delete(key);
  }
  get(key: string): CacheEntry | undefined {
    const e = this.#map.get(key);
    if (e) {
      this.#map.delete(key);
      this.#map.set(key, e);
    }
    return e;
  }
  set(key: string, entry: CacheEntry): void {
    this.#delete(key);
    const size = this.#measure(entry);
    this.#map.set(key, entry);
    this.#bytes.set(key, size);
    this.#total += size;
    while (this.#map.size > 1 && (this.#map.size > this.maxEntries || this.#total > this.maxBytes)) this.#delete(this.#map.keys().next().value!);
  }
  beginPrompt(keys: ReadonlySet<string>): void {
    // Mark what this job will use as most recent, so it survives this job's own insertions.
    for (const k of keys) this.get(k);
  }
  clear(): void {
    this.#map.clear();
    this.#bytes.clear();
    this.#total = 0;
  }
}

/** No caching across jobs: every node runs every time. */
export class NoCache implements OutputCache {
  readonly strategy = 'none' as const;
  readonly size = 0;
  get(): undefined {
    return undefined;
  }
  set(): void {}
  beginPrompt(): void {}
  clear(): void {}
}

export function createCache(opts: CacheStrategy | CacheOptions = 'classic'): OutputCache {
  const o: CacheOptions = typeof opts === 'string' ? ({ strategy: opts } as CacheOptions) : opts;
  switch (o.strategy) {
    case 'classic':
      return new ClassicCache();
    case 'lru':
      return new LruCache(o);
    case 'none':
      return new NoCache();
    default:
      throw new RangeError(`unknown cache strategy '${(o as { strategy: unknown }).strategy}' (expected classic, lru or none)`);
  }
}

// ---- signatures -------------------------------------------------------------------------

/** A token that never equals anything else: makes a key never match (always re-run). */
let uniqueCounter = 0;
export function neverMatching(): string {
  return `\u0000unique:${Date.now()}:${++uniqueCounter}:${Math.random()}`;
}

/**
 * Canonical text of a JSON-like value: object keys sorted, numbers in a form that keeps -0 and
 * NaN apart. Returns undefined for values that cannot be keyed (functions, symbols, NaN, cycles),
 * which ComfyUI treats as "never cached". Depth is bounded by validation (64 levels).
 */
export function canonical(v: unknown, depth = 0): string | undefined {
  if (depth > 256) return undefined;
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      if (Number.isNaN(v)) return undefined;
      return Object.is(v, -0) ? '-0' : String(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      return `${v}n`;
    case 'undefined':
      return 'undefined';
    case 'object': {
      if (v === null) return 'null';
      if (Array.isArray(v)) {
        const parts: string[] = [];
        for (const x of v) {
          const c = canonical(x, depth + 1);
          if (c === undefined) return undefined;
          parts.push(c);
        }
        return `[${parts.join(',')}]`;
      }
      if (Object.getPrototypeOf(v) !== Object.prototype && Object.getPrototypeOf(v) !== null) {
        // Class instances (tensors, buffers) have no stable content key.
        return undefined;
      }
      const parts: string[] = [];
      for (const k of Object.keys(v).sort()) {
        const c = canonical((v as Record<string, unknown>)[k], depth + 1);
        if (c === undefined) return undefined;
        parts.push(`${JSON.stringify(k)}:${c}`);
      }
      return `{${parts.join(',')}}`;
    }
    default:
      return undefined;
  }
}

/**
 * 128-bit non-cryptographic hash of a string (four 32-bit multiply-xor lanes with distinct odd
 * multipliers, then cross-lane avalanche). Browser-safe, no node:crypto. Collisions are what
 * would serve a wrong cached result, hence 128 bits rather than 32 or 53.
 */
export function hash128(s: string): string {
  let a = 0x243f6a88;
  let b = 0x85a308d3;
  let c = 0x13198a2e;
  let d = 0x03707344;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    a = Math.imul(a ^ ch, 0x9e3779b1);
    b = Math.imul(b ^ ch, 0x85ebca77);
    c = Math.imul(c ^ ch, 0xc2b2ae3d);
    d = Math.imul(d ^ ch, 0x27d4eb2f);
    // Rotations keep each lane from being a pure function of the low bits of the input.
    a = (a << 13) | (a >>> 19);
    b = (b << 17) | (b >>> 15);
    c = (c << 11) | (c >>> 21);
    d = (d << 19) | (d >>> 13);
  }
  const fmix = (h: number) => {
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  };
  a ^= s.length;
  b ^= s.length;
  a = fmix(a + b + c + d);
  b = fmix(b ^ a);
  c = fmix(c + a);
  d = fmix(d ^ b);
  return [a, b, c, d].map((x) => (x >>> 0).toString(16).padStart(8, '0')).join('');
}

export interface SignatureParts {
  classType: string;
  /** Fingerprint result; NaN or an unkeyable value makes the signature unique. */
  fingerprint: unknown;
  /** Set when the node id must enter the key (NOT_IDEMPOTENT, UNIQUE_ID hidden input). */
  nodeId?: string;
  constants: Record<string, unknown>;
  links: { input: string; sourceSignature: string; slot: number }[];
}

export function signature(p: SignatureParts): string {
  const fp = p.fingerprint === undefined ? 'none' : canonical(p.fingerprint);
  const consts: string[] = [];
  for (const k of Object.keys(p.constants).sort()) {
    const c = canonical(p.constants[k]);
    if (c === undefined) return neverMatching();
    consts.push(`${JSON.stringify(k)}=${c}`);
  }
  if (fp === undefined) return neverMatching();
  const links = [...p.links]
    .sort((x, y) => (x.input < y.input ? -1 : x.input > y.input ? 1 : 0))
    .map((l) => `${JSON.stringify(l.input)}<${l.sourceSignature}#${l.slot}`);
  const text = `${JSON.stringify(p.classType)}|fp=${fp}|id=${p.nodeId === undefined ? '' : JSON.stringify(p.nodeId)}|${consts.join(',')}|${links.join(',')}`;
  return hash128(text);
}
