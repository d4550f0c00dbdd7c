// Every op of the CUDA backend against its CPU twin on seeded random inputs.
//   npm test                      -> device 'cuda-emu': the real kernel source on the host emulation
//   npm run test:gpu              -> device 'cuda' (SANA_TEST_DEVICE=cuda); skipped with a message
//                                    when no GPU is usable
import { describe, expect, it } from 'vitest';
import type { Backend, DeviceName } from '../../native/api.ts';
import { compare, defaultRtol, Inputs, twinCases } from './twins.ts';
import { deviceUnderTest } from './device.ts';

const { device, backend: dev, cpu, skipReason } = deviceUnderTest();

function runBoth(run: (b: Backend, x: Inputs) => ReturnType<Backend['zeros']>, seed: number) {
  const ref = cpu.scope(() => {
    const t = run(cpu, new Inputs(cpu, seed));
    return { data: t.toFloat32(), dtype: t.dtype, shape: [...t.shape] };
  });
  const got = dev!.scope(() => {
    const t = run(dev!, new Inputs(dev!, seed));
    return { data: t.toFloat32(), dtype: t.dtype, shape: [...t.shape], device: t.device as DeviceName };
  });
  return { ref, got };
}

describe.skipIf(!dev)(`CUDA twins on '${device}'${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let seed = 100;
  for (const c of twinCases()) {
    const s = seed++;
    it(c.name, () => {
      const { ref, got } = runBoth(c.run, s);
      expect(got.device).toBe(device);
      expect(got.shape).toEqual(ref.shape);
      expect(got.dtype).toBe(ref.dtype);
      const r = compare(got.data, ref.data, c.rtol ?? defaultRtol(ref.dtype));
      expect(r.ok, `${c.name}: ${r.report}`).toBe(true);
    });
  }

  it('reports bad embedding ids as an error naming the op', () => {
    const table = dev!.fromArray(new Float32Array(12), [4, 3]);
    const ids = dev!.fromArray([1, 7], [2], 'i32');
    expect(() => dev!.embedding(table, ids)).toThrow(/embedding/);
    table.dispose();
    ids.dispose();
  });

  it('recycles freed device memory through the caching allocator', () => {
    const before = dev!.memory().allocated;
    for (let i = 0; i < 5; i++) dev!.scope(() => dev!.add(dev!.zeros([1000]), dev!.full([1000], 2)).toFloat32());
    expect(dev!.memory().allocated).toBe(before);
  });
});
