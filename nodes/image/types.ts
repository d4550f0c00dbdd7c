// The IMAGE and MASK socket values, laid out as ComfyUI's tensors are: IMAGE is (B, H, W, C=3)
// float32 in [0, 1], MASK is (B, H, W) float32 in [0, 1] (1 = masked, i.e. transparent).
import type { RawImage } from './png.ts';

export interface Image {
  /** (batch, height, width, channels) row-major, values in [0, 1]. */
  data: Float32Array;
  batch: number;
  height: number;
  width: number;
  channels: 3;
}

export interface Mask {
  /** (batch, height, width) row-major, values in [0, 1]. */
  data: Float32Array;
  batch: number;
  height: number;
  width: number;
}

export function isImage(v: unknown): v is Image {
  if (typeof v !== 'object' || v === null) return false;
  const i = v as Partial<Image>;
  return (
    i.data instanceof Float32Array &&
    i.channels === 3 &&
    Number.isInteger(i.batch) &&
    Number.isInteger(i.height) &&
    Number.isInteger(i.width) &&
    i.data.length === i.batch! * i.height! * i.width! * 3
  );
}

export function assertImage(v: unknown, what: string): Image {
  if (!isImage(v)) throw new Error(`${what}: expected an IMAGE {data: Float32Array, batch, height, width, channels: 3}`);
  return v;
}

/** Image `index` of the batch as 8-bit RGB, rounding like PIL's clip(255 * x). */
export function imageToRgb8(img: Image, index: number): RawImage {
  if (index < 0 || index >= img.batch) throw new Error(`image index ${index} out of range (batch ${img.batch})`);
  const n = img.height * img.width * 3;
  const src = img.data.subarray(index * n, (index + 1) * n);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const v = src[i] * 255;
    // NaN maps to 0, like numpy's clip then uint8 cast of a NaN-free array.
    out[i] = v >= 255 ? 255 : v > 0 ? Math.trunc(v) : 0;
  }
  return { width: img.width, height: img.height, channels: 3, data: out };
}

/** 8-bit pixels (1-4 channels) -> a batch-1 IMAGE (alpha dropped) and its MASK (1 - alpha). */
export function rawToImageAndMask(raw: RawImage): { image: Image; mask: Mask } {
  const { width, height, channels, data } = raw;
  const pixels = width * height;
  const rgb = new Float32Array(pixels * 3);
  const mask = new Float32Array(pixels);
  const gray = channels <= 2;
  const alphaAt = channels === 2 ? 1 : channels === 4 ? 3 : -1;
  for (let p = 0; p < pixels; p++) {
    const s = p * channels;
    for (let c = 0; c < 3; c++) rgb[p * 3 + c] = data[s + (gray ? 0 : c)] / 255;
    mask[p] = alphaAt < 0 ? 0 : 1 - data[s + alphaAt] / 255;
  }
  return {
    image: { data: rgb, batch: 1, height, width, channels: 3 },
    mask: { data: mask, batch: 1, height, width },
  };
}

// Registers the socket types with the engine, so `run()` of nodes taking IMAGE / MASK gets
// these value types inferred.
declare module '../../engine/types.ts' {
  interface SocketTypes {
    IMAGE: Image;
    MASK: Mask;
  }
}
