// Runs the standalone emulation selftest (native/cuda/emu/selftest.cpp, built with the addon):
// barriers, shared memory, shuffles, atomics, deadlock and divergence reports, the mma fragment
// layout, and the GEMM/conv/attention kernels against float64 loops.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addonPath } from '../../native/binding.ts';

// The selftest sits in the cmake build folder, one level above Release/sana_native.node.
const exe = path.join(path.dirname(path.dirname(addonPath)), 'sana_cuda_selftest');

describe('CUDA host emulation selftest', () => {
  it('passes every check', () => {
    expect(existsSync(exe), `${exe} is missing: build the addon (npm run build:native) with native/cuda/cuda.cmake`).toBe(true);
    let out: string;
    try {
      out = execFileSync(exe, ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    } catch (e) {
      const err = e as { stdout?: string; status?: number };
      throw new Error(`selftest exited with ${err.status}:\n${err.stdout ?? ''}`);
    }
    expect(out).toMatch(/PASSED: 0 of \d+ checks failed/);
    // The negative checks must have run: a layout bug, a deadlock and a divergent shuffle are caught.
    expect(out).toMatch(/mma m16n8k16 bf16 fragment layout/);
    expect(out).toMatch(/attention bf16 D256/);
  }, 180_000);
});
