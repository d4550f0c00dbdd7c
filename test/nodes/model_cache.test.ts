import { describe, expect, it } from 'vitest';
import { ModelCache, defaultBudgetBytes, type Loaded, type ModelKey } from '../../nodes/model_cache.ts';

const key = (path: string, dtype = 'f32', device = 'cpu'): ModelKey => ({ kind: 'transformer', path, dtype, device });

/** A fake model that records whether it was disposed. */
function fake(bytes: number, log: string[], name: string): () => Loaded<{ name: string; disposed: boolean }> {
  return () => {
    log.push(`load ${name}`);
    const value = { name, disposed: false };
    return {
      value,
      bytes,
      dispose: () => {
        value.disposed = true;
        log.push(`dispose ${name}`);
      },
    };
  };
}

describe('ModelCache', () => {
  it('loads once per key and hits afterwards', async () => {
    const log: string[] = [];
    const c = new ModelCache(1000);
    const a1 = await c.use(key('a'), fake(100, log, 'a'), (m) => m);
    const a2 = await c.use(key('a'), fake(100, log, 'a'), (m) => m);
    expect(a1).toBe(a2);
    expect(log).toEqual(['load a']);
    expect(c.stats()).toMatchObject({ loads: 1, hits: 1, usedBytes: 100 });
  });

  it('keys on dtype and device too', async () => {
    const log: string[] = [];
    const c = new ModelCache(1000);
    await c.use(key('a', 'f32'), fake(10, log, 'a32'), () => 0);
    await c.use(key('a', 'bf16'), fake(10, log, 'a16'), () => 0);
    await c.use(key('a', 'bf16', 'cuda'), fake(10, log, 'a16cuda'), () => 0);
    expect(log).toEqual(['load a32', 'load a16', 'load a16cuda']);
  });

  it('evicts the least recently used model when over budget', async () => {
    const log: string[] = [];
    const c = new ModelCache(250);
    await c.use(key('a'), fake(100, log, 'a'), () => 0);
    await c.use(key('b'), fake(100, log, 'b'), () => 0);
    await c.use(key('a'), fake(100, log, 'a'), () => 0); // a is now more recent than b
    await c.use(key('c'), fake(100, log, 'c'), () => 0);
    expect(log).toEqual(['load a', 'load b', 'load c', 'dispose b']);
    expect(c.has(key('a'))).toBe(true);
    expect(c.has(key('b'))).toBe(false);
    expect(c.stats().evictions).toBe(1);
  });

  it('makes room before loading when given a size hint', async () => {
    const log: string[] = [];
    const c = new ModelCache(150);
    await c.use(key('a'), fake(100, log, 'a'), () => 0);
    await c.use(key('b'), fake(100, log, 'b'), () => 0, 100);
    expect(log).toEqual(['load a', 'dispose a', 'load b']);
  });

  it('never evicts a model while it is in use, and settles the budget afterwards', async () => {
    const log: string[] = [];
    const c = new ModelCache(150);
    await c.use(key('a'), fake(100, log, 'a'), async (a) => {
      await c.use(key('b'), fake(100, log, 'b'), (b) => {
        expect(a.disposed).toBe(false);
        expect(b.disposed).toBe(false);
      });
      // b was not in use any more once its use() returned, and a still is: b goes.
      expect(a.disposed).toBe(false);
    });
    expect(log).toEqual(['load a', 'load b', 'dispose b']);
  });

  it('loads a model bigger than the budget, keeping nothing else', async () => {
    const log: string[] = [];
    const c = new ModelCache(50);
    await c.use(key('a'), fake(10, log, 'a'), () => 0);
    const r = await c.use(key('big'), fake(500, log, 'big'), (m) => m.name);
    expect(r).toBe('big');
    expect(log).toEqual(['load a', 'load big', 'dispose a', 'dispose big']);
    expect(c.usedBytes).toBe(0);
  });

  it('loads concurrently requested keys once', async () => {
    let loads = 0;
    const c = new ModelCache(1000);
    const load = async (): Promise<Loaded<number>> => {
      loads++;
      await new Promise((r) => setTimeout(r, 5));
      return { value: 42, bytes: 1, dispose: () => {} };
    };
    const [x, y] = await Promise.all([c.use(key('a'), load, (v) => v), c.use(key('a'), load, (v) => v)]);
    expect([x, y, loads]).toEqual([42, 42, 1]);
  });

  it('forgets a failed load so the next request retries', async () => {
    const c = new ModelCache(1000);
    await expect(
      c.use(
        key('a'),
        () => {
          throw new Error('bad weights');
        },
        () => 0,
      ),
    ).rejects.toThrow('bad weights');
    expect(c.stats().entries).toEqual([]);
    await expect(
      c.use(
        key('a'),
        () => ({ value: 1, bytes: 1, dispose() {} }),
        (v) => v,
      ),
    ).resolves.toBe(1);
  });

  it('clear() frees everything not in use (POST /free)', async () => {
    const log: string[] = [];
    const c = new ModelCache(1000);
    await c.use(key('a'), fake(100, log, 'a'), () => 0);
    await c.use(key('b'), fake(200, log, 'b'), () => 0);
    expect(c.clear()).toEqual({ models: 2, bytes: 300 });
    expect(c.usedBytes).toBe(0);
    expect(log.filter((l) => l.startsWith('dispose')).sort()).toEqual(['dispose a', 'dispose b']);
  });

  it('shrinking the budget evicts at once', async () => {
    const log: string[] = [];
    const c = new ModelCache(1000);
    await c.use(key('a'), fake(100, log, 'a'), () => 0);
    await c.use(key('b'), fake(100, log, 'b'), () => 0);
    c.setBudget(150);
    expect(log).toContain('dispose a');
    expect(c.has(key('b'))).toBe(true);
  });

  it('reads the budget from SANA_MODEL_CACHE_MB and rejects nonsense', () => {
    expect(defaultBudgetBytes({ SANA_MODEL_CACHE_MB: '2' })).toBe(2 * 1024 * 1024);
    expect(defaultBudgetBytes({})).toBeGreaterThan(0);
    expect(() => defaultBudgetBytes({ SANA_MODEL_CACHE_MB: 'lots' })).toThrow(/SANA_MODEL_CACHE_MB/);
  });
});
