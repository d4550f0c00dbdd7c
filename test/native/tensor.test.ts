// Tensor lifetime (dispose, scope, keep, views), the memory tracker, errors as exceptions,
// and loading the addon from a worker thread next to the main thread.
import { describe, it, expect } from 'vitest';
import { Worker } from 'node:worker_threads';
import native, { devices, getBackend } from '../../native/index.ts';
import { backendsUnderTest } from './harness.ts';

for (const b of backendsUnderTest()) {
  describe(`tensors on ${b.name}`, () => {
    it('fromArray / toTypedArray round trips for every dtype', () => {
      expect([...b.fromArray([1.5, -2], [2]).toTypedArray()]).toEqual([1.5, -2]);
      expect([...b.fromArray(new Int32Array([7, -8]), [2]).toTypedArray()]).toEqual([7, -8]);
      expect([...b.fromArray(new BigInt64Array([2n ** 50n, -1n]), [2]).toTypedArray()]).toEqual([2n ** 50n, -1n]);
      expect([...b.fromArray([1, 2.5], [2], 'bf16').toFloat32()]).toEqual([1, 2.5]);
      expect([...b.fromArray([3, 4], [1, 2], 'i64').toTypedArray()]).toEqual([3n, 4n]);
      const z = b.zeros([2, 3], 'f16');
      expect(z.shape).toEqual([2, 3]);
      expect(z.numel).toBe(6);
      expect(z.nbytes).toBeGreaterThanOrEqual(12);
      expect([...b.full([3], 2.5, 'f32').toFloat32()]).toEqual([2.5, 2.5, 2.5]);
      expect(() => b.fromArray([1, 2, 3], [2, 2])).toThrow(/fromArray/);
    });
    it('dispose frees memory at once; use after dispose throws', () => {
      const before = b.memory().allocated;
      const t = b.zeros([1024], 'f32');
      expect(b.memory().allocated).toBe(before + t.nbytes);
      t.dispose();
      expect(t.disposed).toBe(true);
      expect(b.memory().allocated).toBe(before);
      expect(() => t.toFloat32()).toThrow(/disposed/);
      expect(() => b.relu(t)).toThrow(/relu: x: .*disposed/);
      t.dispose(); // idempotent
    });
    it('scope frees intermediates, keeps results (nested in objects) and keep()-ed tensors', () => {
      const before = b.memory().allocated;
      let kept: ReturnType<typeof b.zeros> | undefined;
      let tmp: ReturnType<typeof b.zeros> | undefined;
      const out = b.scope(() => {
        const x = b.full([4], 1);
        tmp = b.add(x, x);
        kept = b.keep(b.mul(x, x));
        return { nested: [b.reshape(b.affine(tmp, 2, 0), [2, 2])] };
      });
      expect(tmp!.disposed).toBe(true);
      expect(kept!.disposed).toBe(false);
      expect([...out.nested[0].toFloat32()]).toEqual([4, 4, 4, 4]);
      out.nested[0].dispose();
      kept!.dispose();
      expect(b.memory().allocated).toBe(before);
    });
    it('scope disposes everything when fn throws, and rejects async fns', () => {
      const before = b.memory().allocated;
      expect(() =>
        b.scope(() => {
          b.zeros([16]);
          throw new Error('boom');
        }),
      ).toThrow('boom');
      expect(b.memory().allocated).toBe(before);
      expect(() => b.scope(() => Promise.resolve(1))).toThrow(/synchronous/);
    });
    it('results returned from an inner scope belong to the outer one', () => {
      const before = b.memory().allocated;
      b.scope(() => {
        const inner = b.scope(() => b.zeros([8]));
        expect(inner.disposed).toBe(false);
        return undefined;
      });
      expect(b.memory().allocated).toBe(before);
    });
    it('peak memory tracks the high-water mark until resetPeak', () => {
      b.resetPeak();
      const base = b.memory().allocated;
      const t = b.zeros([1 << 16], 'f32');
      t.dispose();
      expect(b.memory().peak).toBeGreaterThanOrEqual(base + (1 << 18));
      b.resetPeak();
      expect(b.memory().peak).toBe(b.memory().allocated);
    });
    it('pre-packed weight copies are counted and freed with the weight', () => {
      const base = b.memory().allocated;
      const x = b.zeros([4, 64], 'bf16'),
        w = b.zeros([48, 64], 'bf16');
      const withTensors = b.memory().allocated;
      b.linear(x, w).dispose();
      const packed = b.memory().allocated - withTensors;
      expect(packed).toBeGreaterThanOrEqual(0);
      if (b.name === 'cpu') expect(packed).toBeGreaterThan(0); // oneDNN blocked copy or f32 panels
      b.linear(x, w).dispose(); // reuses the cache: no growth
      expect(b.memory().allocated - withTensors).toBe(packed);
      x.dispose();
      w.dispose();
      expect(b.memory().allocated).toBe(base);
    });
    it('shape and dtype errors are exceptions naming op and argument', () => {
      const x = b.zeros([2, 3]),
        w = b.zeros([4, 5]);
      expect(() => b.linear(x, w)).toThrow(/linear: x \[2, 3\].*K=5/);
      expect(() => b.add(x, b.zeros([4]))).toThrow(/add: b \[4\] does not broadcast/);
      expect(() => b.relu(b.zeros([2], 'i32'))).toThrow(/relu: x must be f32, bf16 or f16/);
      expect(() => b.conv2d(b.zeros([1, 3, 4, 4]), b.zeros([2, 2, 3, 3]), undefined)).toThrow(/conv2d: w/);
      expect(() => b.attention(b.zeros([1, 3, 2, 4]), b.zeros([1, 2, 2, 4]), b.zeros([1, 2, 2, 4]), { scale: 1 })).toThrow(/multiple of 2 kv heads/);
      expect(() => b.permute(x, [0, 0])).toThrow(/permutation/);
    });
    it('supportsOp and info describe the backend', () => {
      expect(b.supportsOp('linear', 'f32')).toBe(true);
      expect(b.supportsOp('relu', 'i32')).toBe(false);
      expect(b.info().device).toBe(b.name);
    });
  });
}

describe('native module', () => {
  it('lists devices with the cpu available and explains unavailable ones', () => {
    const ds = devices();
    expect(ds.find((d) => d.name === 'cpu')?.available).toBe(true);
    for (const d of ds) if (!d.available) expect(d.reason).toBeTruthy();
    for (const d of ds.filter((x) => !x.available)) expect(() => getBackend(d.name)).toThrow(/unavailable/);
  });
  it('buildInfo reports oneDNN, CUDA and the run-time ISA', () => {
    const bi = native.buildInfo();
    expect(typeof bi.onednn).toBe('boolean');
    expect(bi.isa).toMatch(/avx|sse|amx/);
    if (!bi.onednn) expect(bi.hint).toMatch(/libdnnl-dev/);
  });
  it('cross-backend upload copies data', () => {
    const cpu = getBackend('cpu');
    const x = cpu.fromArray([1, 2, 3], [3], 'bf16');
    for (const b of backendsUnderTest()) {
      const y = b.upload(x);
      expect(y.device).toBe(b.name);
      expect([...y.toFloat32()]).toEqual([1, 2, 3]);
      expect([...cpu.upload(y).toFloat32()]).toEqual([1, 2, 3]);
    }
  });
  it('loads in a worker thread while the main thread uses it', async () => {
    const main = getBackend('cpu').fromArray([1, 2], [2]);
    const code = `
      const { parentPort } = require('node:worker_threads');
      const addon = require(${JSON.stringify(process.env.SANA_NATIVE_ADDON ?? new URL('../../native/build/Release/sana_native.node', import.meta.url).pathname)});
      const s = addon.alloc('cpu', 8);
      addon.write(s, 0, new Float32Array([3, 4]), 0, 0, 2);
      addon.ops.unary(s, 0, s, 0, 2, 0, 2, 1, 0);
      parentPort.postMessage([...new Float32Array(addon.read(s, 0, 2, 0, 0))]);
      s.free();`;
    const got = await new Promise<number[]>((resolve, reject) => {
      const w = new Worker(code, { eval: true });
      w.once('message', resolve);
      w.once('error', reject);
    });
    expect(got).toEqual([7, 9]);
    expect([...main.toFloat32()]).toEqual([1, 2]);
  });
});
