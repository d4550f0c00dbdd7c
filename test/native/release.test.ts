// releasePackedSource: a linear weight's own data is freed once the backend holds a packed copy;
// the weight keeps serving linear for any row count (new layouts come from the packed copy),
// every other use is a clear error, and the memory tracker sees the bytes go.
import { describe, expect, it } from 'vitest';
import * as R from './reference.ts';
import { backendsUnderTest, expectClose, rand } from './harness.ts';

for (const b of backendsUnderTest()) {
  const packs = b.name === 'cpu';
  describe(`releasePackedSource on ${b.name}`, () => {
    for (const dt of ['f32', 'bf16', 'f16'] as const) {
      it(`${dt}: ${packs ? 'frees the data after the first linear; later linears of any M still match' : 'is refused (no packed copies)'}`, () => {
        const [N, K] = [48, 80];
        const w = rand(b, [N, K], dt, 11, 0.5);
        // Before any linear there is nothing packed: refused, nothing changes.
        expect(b.releasePackedSource(w.t)).toBe(false);
        const x1 = rand(b, [3, K], dt, 12, 0.5);
        expectClose('before', b.linear(x1.t, w.t).toFloat32(), R.linear(x1.v, w.v, undefined, 3, N, K), dt);
        const before = b.memory().allocated;
        const released = b.releasePackedSource(w.t);
        expect(released).toBe(packs);
        if (!packs) return;
        expect(before - b.memory().allocated).toBe(N * K * (dt === 'f32' ? 4 : 2));
        expect(b.releasePackedSource(w.t)).toBe(false); // once only
        // Other row counts (oneDNN may want another layout: re-derived from the packed copy).
        for (const M of [1, 3, 17, 130]) {
          const x = rand(b, [M, K], dt, 20 + M, 0.5);
          expectClose(`after, M=${M}`, b.linear(x.t, w.t).toFloat32(), R.linear(x.v, w.v, undefined, M, N, K), dt);
          x.t.dispose();
        }
        // Any other use names the problem.
        expect(() => w.t.toFloat32()).toThrow(/released after packing/);
        expect(() => b.add(w.t, w.t)).toThrow(/released after packing/);
        expect(() => b.linear(w.t, w.t)).toThrow(/released after packing/);
        // Disposing frees only the packed copy (the data is already gone): the tracker ends even.
        const beforeDispose = b.memory().allocated;
        const packed = beforeDispose;
        w.t.dispose();
        expect(b.memory().allocated).toBeLessThan(packed);
        x1.t.dispose();
      });
    }
    it('a view, or a storage shared with a view, is never released', () => {
      const w = rand(b, [16, 32], 'f32', 3, 0.5);
      const x = rand(b, [2, 32], 'f32', 4, 0.5);
      b.linear(x.t, w.t).dispose();
      const view = b.reshape(w.t, [32, 16]);
      expect(b.releasePackedSource(w.t)).toBe(false);
      expect(b.releasePackedSource(view)).toBe(false);
      view.dispose();
      expect(b.releasePackedSource(w.t)).toBe(packs);
      w.t.dispose();
      x.t.dispose();
    });
  });
}
