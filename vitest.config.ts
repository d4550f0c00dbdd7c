import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The 2-core machines are shared: keep the pool small and timeouts generous.
    maxWorkers: 2,
    testTimeout: 60_000,
    // Reused CPU blocks are filled with 0xFF (NaN) in tests: an op that relied on fresh, zeroed
    // memory fails its reference test instead of passing by luck (native/src/host_cache.cc).
    env: { SANA_HOST_CACHE_POISON: '1' },
    hookTimeout: 120_000,
  },
});
