// The CUDA backends as the rest of the project sees them: listed by devices(), 'cuda-emu' always
// usable, 'cuda' either usable or refused with a reason the caller can show (no GPU here: the
// CUDA runtime reports error 35 and the process carries on).
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { buildInfo, devices, getBackend } from '../../native/index.ts';

describe('CUDA backends in the addon', () => {
  const list = devices();

  it('always has the host emulation', () => {
    const emu = list.find((d) => d.name === 'cuda-emu');
    expect(emu?.available).toBe(true);
    expect(emu?.info.emulated).toBe(true);
    const b = getBackend('cuda-emu');
    expect(b.name).toBe('cuda-emu');
    const t = b.fromArray([1, 2, 3], [3], 'bf16');
    expect(Array.from(b.affine(t, 2, 1).toFloat32())).toEqual([3, 5, 7]);
    t.dispose();
    expect(Number(b.info().launches)).toBeGreaterThan(0);
  });

  it('compiles the real CUDA kernels whenever nvcc is on PATH (CI builds them even without a GPU)', () => {
    const nvcc = spawnSync('nvcc', ['--version'], { encoding: 'utf8' });
    if (nvcc.status !== 0) return; // no toolkit: the build falls back to cuda-emu only
    expect(buildInfo().cuda, 'nvcc is on PATH but the addon has no cuda backend: see the cmake output of npm run build:native').toBe(true);
  });

  it("lists 'cuda' when nvcc built it, and refuses it with the reason when no GPU is usable", () => {
    const cuda = list.find((d) => d.name === 'cuda');
    expect(Boolean(cuda)).toBe(buildInfo().cuda);
    if (!cuda) return;
    if (cuda.available) {
      expect(getBackend('cuda').name).toBe('cuda');
      expect(typeof cuda.info.gpu).toBe('string');
    } else {
      expect(cuda.reason).toMatch(/cudaGetDeviceCount|no CUDA device|compute capability/);
      expect(() => getBackend('cuda')).toThrow(/'cuda' is unavailable: .*(error \d+|no CUDA device|compute capability)/);
    }
  });
});
