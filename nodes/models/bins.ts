// Sana's aspect-ratio bins (shared/spec/sana.md §1.7, Appendix A) and the resize + centre-crop that maps the
// generated bin size back to the requested size. The tables are data; `binFor` and
// `coverCropPlan` are the two rules diffusers applies (classify_height_width_bin,
// resize_and_crop_tensor).
import type { Backend, Tensor } from '../../native/api.ts';

/** Key = aspect ratio h/w as diffusers writes it; value = [height, width] in pixels. */
export type BinTable = ReadonlyArray<readonly [key: string, hw: readonly [number, number]]>;

// 1024-px table, in diffusers' key order (ties in `binFor` resolve to the first key).
const TABLE_1024: BinTable = [
  ['0.25', [512, 2048]], ['0.28', [512, 1856]], ['0.32', [576, 1792]], ['0.33', [576, 1728]],
  ['0.35', [576, 1664]], ['0.4', [640, 1600]], ['0.42', [640, 1536]], ['0.48', [704, 1472]],
  ['0.5', [704, 1408]], ['0.52', [704, 1344]], ['0.57', [768, 1344]], ['0.6', [768, 1280]],
  ['0.68', [832, 1216]], ['0.72', [832, 1152]], ['0.78', [896, 1152]], ['0.82', [896, 1088]],
  ['0.88', [960, 1088]], ['0.94', [960, 1024]], ['1.0', [1024, 1024]], ['1.07', [1024, 960]],
  ['1.13', [1088, 960]], ['1.21', [1088, 896]], ['1.29', [1152, 896]], ['1.38', [1152, 832]],
  ['1.46', [1216, 832]], ['1.67', [1280, 768]], ['1.75', [1344, 768]], ['2.0', [1408, 704]],
  ['2.09', [1472, 704]], ['2.4', [1536, 640]], ['2.5', [1600, 640]], ['3.0', [1728, 576]],
  ['4.0', [2048, 512]],
];

const TABLE_2048: BinTable = [
  ['0.25', [1024, 4096]], ['0.26', [1024, 3968]], ['0.27', [1024, 3840]], ['0.28', [1024, 3712]],
  ['0.32', [1152, 3584]], ['0.33', [1152, 3456]], ['0.35', [1152, 3328]], ['0.4', [1280, 3200]],
  ['0.42', [1280, 3072]], ['0.48', [1408, 2944]], ['0.5', [1408, 2816]], ['0.52', [1408, 2688]],
  ['0.57', [1536, 2688]], ['0.6', [1536, 2560]], ['0.68', [1664, 2432]], ['0.72', [1664, 2304]],
  ['0.78', [1792, 2304]], ['0.82', [1792, 2176]], ['0.88', [1920, 2176]], ['0.94', [1920, 2048]],
  ['1.0', [2048, 2048]], ['1.07', [2048, 1920]], ['1.13', [2176, 1920]], ['1.21', [2176, 1792]],
  ['1.29', [2304, 1792]], ['1.38', [2304, 1664]], ['1.46', [2432, 1664]], ['1.67', [2560, 1536]],
  ['1.75', [2688, 1536]], ['2.0', [2816, 1408]], ['2.09', [2944, 1408]], ['2.4', [3072, 1280]],
  ['2.5', [3200, 1280]], ['2.89', [3328, 1152]], ['3.0', [3456, 1152]], ['3.11', [3584, 1152]],
  ['3.62', [3712, 1024]], ['3.75', [3840, 1024]], ['3.88', [3968, 1024]], ['4.0', [4096, 1024]],
];

const scaled = (t: BinTable, num: number, den: number): BinTable =>
  t.map(([k, [h, w]]) => [k, [(h * num) / den, (w * num) / den]] as const);

/** The four published tables, by the pixel size they are named after. */
export const BIN_TABLES: Readonly<Record<512 | 1024 | 2048 | 4096, BinTable>> = {
  512: scaled(TABLE_1024, 1, 2), // exactly half of the 1024 table (same keys)
  1024: TABLE_1024,
  2048: TABLE_2048,
  4096: scaled(TABLE_2048, 2, 1), // exactly twice the 2048 table (same keys)
};

/** Table chosen by the transformer's `sample_size` (latent side of its training resolution). */
export function binTableForSampleSize(sampleSize: number): BinTable {
  switch (sampleSize) {
    case 128: return BIN_TABLES[4096];
    case 64: return BIN_TABLES[2048];
    case 32: return BIN_TABLES[1024];
    case 16: return BIN_TABLES[512];
    default:
      throw new Error(`resolution binning: no aspect-ratio table for transformer sample_size ${sampleSize} (expected 16, 32, 64 or 128)`);
  }
}

/** argmin over keys of |key - h/w|, first key on ties (Python `min` semantics). */
export function binFor(height: number, width: number, table: BinTable): { height: number; width: number; key: string } {
  if (!(height > 0 && width > 0)) throw new Error(`resolution binning: height and width must be positive (got ${height}x${width})`);
  const ar = height / width;
  let best = table[0]!;
  let bestErr = Math.abs(Number(best[0]) - ar);
  for (const entry of table) {
    const err = Math.abs(Number(entry[0]) - ar);
    if (err < bestErr) { best = entry; bestErr = err; }
  }
  return { height: best[1][0], width: best[1][1], key: best[0] };
}

/** The bilinear "cover" resize followed by a centre crop (diffusers resize_and_crop_tensor). */
export interface CoverCropPlan { resizeH: number; resizeW: number; top: number; left: number; height: number; width: number }

export function coverCropPlan(srcH: number, srcW: number, dstH: number, dstW: number): CoverCropPlan | null {
  if (srcH === dstH && srcW === dstW) return null;
  const ratio = Math.max(dstH / srcH, dstW / srcW);
  // Python int() truncates toward zero; the products are positive.
  const resizeW = Math.trunc(srcW * ratio);
  const resizeH = Math.trunc(srcH * ratio);
  return {
    resizeH, resizeW,
    top: Math.floor((resizeH - dstH) / 2),
    left: Math.floor((resizeW - dstW) / 2),
    height: dstH, width: dstW,
  };
}

/** Applies `coverCropPlan` to an image batch (B, C, H, W) on the backend (bilinear, no antialias). */
export function resizeAndCrop(backend: Backend, img: Tensor, dstH: number, dstW: number): Tensor {
  const [, , h, w] = img.shape as [number, number, number, number];
  const plan = coverCropPlan(h, w, dstH, dstW);
  if (!plan) return backend.upload(img);
  return backend.scope(() => {
    const resized = backend.upsampleBilinear(img, plan.resizeH, plan.resizeW); // (B, C, rH, rW)
    const rows = backend.slice(resized, 2, plan.top, plan.top + plan.height); // (B, C, dstH, rW)
    return backend.slice(rows, 3, plan.left, plan.left + plan.width); // (B, C, dstH, dstW)
  });
}
