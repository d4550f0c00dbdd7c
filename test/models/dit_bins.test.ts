// Aspect-ratio bins (shared/spec/sana.md §1.7, Appendix A) and the resize + centre-crop plan. Pure TS.
import { describe, expect, it } from 'vitest';
import { BIN_TABLES, binFor, binTableForSampleSize, coverCropPlan } from '../../nodes/models/bins.ts';

describe('bin tables', () => {
  it('have the published sizes and relations', () => {
    expect(BIN_TABLES[1024].length).toBe(33);
    expect(BIN_TABLES[2048].length).toBe(40);
    BIN_TABLES[512].forEach(([k, [h, w]], i) => {
      expect(k).toBe(BIN_TABLES[1024][i]![0]);
      expect([h * 2, w * 2]).toEqual(BIN_TABLES[1024][i]![1]);
    });
    BIN_TABLES[4096].forEach(([, [h, w]], i) => expect([h / 2, w / 2]).toEqual(BIN_TABLES[2048][i]![1]));
    for (const t of Object.values(BIN_TABLES)) for (const [, [h, w]] of t) expect(h % 32 + w % 32).toBe(0);
  });

  it('picks the table by transformer sample_size', () => {
    expect(binTableForSampleSize(32)).toBe(BIN_TABLES[1024]);
    expect(binTableForSampleSize(16)).toBe(BIN_TABLES[512]);
    expect(binTableForSampleSize(128)).toBe(BIN_TABLES[4096]);
    expect(() => binTableForSampleSize(48)).toThrow(/sample_size 48/);
  });

  it('chooses the closest aspect ratio, the first key on ties', () => {
    expect(binFor(1024, 1024, BIN_TABLES[1024])).toEqual({ height: 1024, width: 1024, key: '1.0' });
    expect(binFor(720, 1280, BIN_TABLES[1024])).toEqual({ height: 768, width: 1344, key: '0.57' }); // 0.5625
    expect(binFor(1920, 1080, BIN_TABLES[2048]).key).toBe('1.75'); // 1.777…
    expect(binFor(100, 10000, BIN_TABLES[2048]).key).toBe('0.25');
    expect(binFor(10000, 100, BIN_TABLES[1024]).key).toBe('4.0');
    // 0.265 is equally far (in float64 too) from 0.26 and 0.27: the first key wins, as Python's min
    expect(binFor(265, 1000, BIN_TABLES[2048]).key).toBe('0.26');
    // 0.3 between 0.28 and 0.32: float64 puts 0.28 nearer (Python gives '0.28' too)
    expect(binFor(300, 1000, BIN_TABLES[1024]).key).toBe('0.28');
  });

  it('plans the cover resize and the centre crop (diffusers resize_and_crop_tensor)', () => {
    expect(coverCropPlan(768, 1344, 768, 1344)).toBeNull();
    // 768×1344 bin → 720×1280: ratio max(0.9375, 0.952…) = 0.952…
    expect(coverCropPlan(768, 1344, 720, 1280)).toEqual({ resizeH: 731, resizeW: 1280, top: 5, left: 0, height: 720, width: 1280 });
    const p = coverCropPlan(1024, 1024, 1000, 600)!;
    expect(p.resizeH).toBe(1000);
    expect(p.resizeW).toBe(1000);
    expect(p.left).toBe(200);
  });
});
