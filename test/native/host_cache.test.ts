// The CPU allocator's reuse cache (native/src/host_cache.cc): freed large blocks come back for the
// next allocation of the same rounded size instead of going back to the system, the bytes held
// are reported apart from the tensors, trimming returns them, and (with SANA_HOST_CACHE_POISON=1,
// which the test run sets) reused memory is garbage, so ops that relied on fresh zeroed pages
// would fail their reference tests.
import { describe, expect, it } from 'vitest';
import { getBackend, hostCacheBytes, trimHostCache } from '../../native/index.ts';

const b = getBackend('cpu');
const MB = 1024 * 1024;

describe('CPU host block cache', () => {
  it('keeps freed large blocks, reuses them for the same size, and trims them', () => {
    trimHostCache();
    expect(hostCacheBytes()).toBe(0);
    const shape = [2, 1024, 1024]; // 8 MiB of f32
    const a = b.zeros(shape);
    const before = b.memory().allocated;
    a.dispose();
    // The tensor's bytes leave the tracker but stay cached for reuse.
    expect(b.memory().allocated).toBe(before - 8 * MB);
    expect(hostCacheBytes()).toBe(8 * MB);
    const c = b.full(shape, 3);
    expect(hostCacheBytes()).toBe(0); // taken again
    const vals = c.toFloat32();
    expect(vals[0]).toBe(3);
    expect(vals[vals.length - 1]).toBe(3);
    c.dispose();
    // Small blocks are never cached.
    b.zeros([16, 16]).dispose();
    expect(hostCacheBytes()).toBe(8 * MB);
    expect(trimHostCache()).toBe(8 * MB);
    expect(hostCacheBytes()).toBe(0);
  });

  it('a reused block holds garbage under SANA_HOST_CACHE_POISON=1, and zeros() still gives zeros', () => {
    if (process.env.SANA_HOST_CACHE_POISON !== '1') return;
    trimHostCache();
    b.full([1024, 1024], 7).dispose();
    const z = b.zeros([1024, 1024]);
    expect(z.toFloat32().every((v) => v === 0)).toBe(true);
    z.dispose();
    trimHostCache();
  });

  it('nearby sizes share a slot (1/16-of-a-power-of-two steps), so growing shapes still hit', () => {
    trimHostCache();
    b.zeros([1000, 1000]).dispose(); // 4,000,000 bytes -> rounded to a 4 MiB step
    const cached = hostCacheBytes();
    expect(cached).toBeGreaterThanOrEqual(4_000_000);
    expect(cached).toBeLessThanOrEqual(4_000_000 * 1.07);
    const t = b.zeros([1010, 990]); // 3,999,600 bytes: the same slot
    expect(hostCacheBytes()).toBe(0);
    t.dispose();
    trimHostCache();
  });
});
