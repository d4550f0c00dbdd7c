import { describe, expect, it } from 'vitest';
import { ClassicCache, createCache, LruCache, type CacheEntry } from '../../engine/index.ts';
import { canonical, hash128, signature } from '../../engine/cache.ts';

const entry = (...items: unknown[]): CacheEntry => ({ outputs: [items] });

describe('cache storage strategies', () => {
  it('classic drops every entry the new job does not use', () => {
    const c = new ClassicCache();
    c.set('a', entry(1));
    c.set('b', entry(2));
    c.beginPrompt(new Set(['b', 'z']));
    expect(c.get('a')).toBeUndefined();
    expect(c.get('b')).toEqual(entry(2));
  });

  it('lru evicts the least recently used beyond maxEntries, and protects what a job will use', () => {
    const c = new LruCache({ maxEntries: 2 });
    c.set('a', entry(1));
    c.set('b', entry(2));
    c.get('a');
    c.set('c', entry(3));
    expect([c.get('a'), c.get('b'), c.get('c')].map((e) => e?.outputs[0][0])).toEqual([1, undefined, 3]);
    c.beginPrompt(new Set(['a']));
    c.set('d', entry(4));
    expect(c.get('a')).toBeDefined();
    expect(c.get('c')).toBeUndefined();
  });

  it('lru with a byte budget measures entries with sizeOf and always keeps the newest', () => {
    const c = createCache({ strategy: 'lru', maxEntries: 100, maxBytes: 100, sizeOf: (v) => (v as Uint8Array).byteLength }) as LruCache;
    c.set('a', entry(new Uint8Array(40)));
    c.set('b', entry(new Uint8Array(40), new Uint8Array(10)));
    expect(c.bytes).toBe(90);
    c.set('c', entry(new Uint8Array(30)));
    expect(c.get('a')).toBeUndefined();
    expect(c.bytes).toBe(80);
    c.set('huge', entry(new Uint8Array(500)));
    expect(c.size).toBe(1);
    expect(c.get('huge')).toBeDefined();
    expect(() => createCache({ strategy: 'lru', maxBytes: 10 })).toThrow(/needs a sizeOf/);
  });

  it('none stores nothing; unknown strategies are refused', () => {
    const c = createCache('none');
    c.set('a', entry(1));
    expect(c.get('a')).toBeUndefined();
    expect(() => createCache('fifo' as 'none')).toThrow(/unknown cache strategy 'fifo'/);
  });
});

describe('signatures', () => {
  const base = { classType: 'K', fingerprint: undefined, constants: { a: 1, b: 'x' }, links: [{ input: 'm', sourceSignature: 's1', slot: 0 }] };
  it('ignore key order and depend on class, constants, producers, slots and node id when asked', () => {
    const s = signature(base);
    expect(signature({ ...base, constants: { b: 'x', a: 1 } })).toBe(s);
    expect(signature({ ...base, classType: 'L' })).not.toBe(s);
    expect(signature({ ...base, constants: { a: 2, b: 'x' } })).not.toBe(s);
    expect(signature({ ...base, links: [{ input: 'm', sourceSignature: 's2', slot: 0 }] })).not.toBe(s);
    expect(signature({ ...base, links: [{ input: 'm', sourceSignature: 's1', slot: 1 }] })).not.toBe(s);
    expect(signature({ ...base, nodeId: '5' })).not.toBe(s);
    expect(signature({ ...base, fingerprint: 'v1' })).not.toBe(signature({ ...base, fingerprint: 'v2' }));
  });

  it('never match for NaN fingerprints or unkeyable constants', () => {
    expect(signature({ ...base, fingerprint: Number.NaN })).not.toBe(signature({ ...base, fingerprint: Number.NaN }));
    expect(signature({ ...base, constants: { f: new Map() } })).not.toBe(signature({ ...base, constants: { f: new Map() } }));
  });

  it('canonical text separates look-alike values; hash128 is 32 hex digits and spreads', () => {
    expect(canonical({ a: [1, '1'] })).toBe('{"a":[1,"1"]}');
    expect(canonical(-0)).not.toBe(canonical(0));
    expect(canonical('1')).not.toBe(canonical(1));
    const hashes = new Set(Array.from({ length: 20_000 }, (_, i) => hash128(`node-${i}`)));
    expect(hashes.size).toBe(20_000);
    expect(hash128('')).toMatch(/^[0-9a-f]{32}$/);
    expect(hash128('ab')).not.toBe(hash128('ba'));
  });
});
