// Image file decoding for LoadImage and /view previews: PNG with our decoder, JPEG with jpeg-js
// (bounded in resolution and memory so a hostile file cannot exhaust the process).
import jpeg from 'jpeg-js';
import { decodePng, type RawImage } from './png.ts';

/** Largest image accepted, in megapixels (a 16384 x 16384 image is 268 MP). */
export const MAX_IMAGE_MP = 300;

export function sniffImageType(bytes: Uint8Array): 'png' | 'jpeg' | undefined {
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

/** Decodes a PNG or JPEG file to 8-bit pixels (1-4 channels). */
export function decodeImage(bytes: Buffer, what: string): RawImage {
  const kind = sniffImageType(bytes);
  if (kind === 'png') {
    const png = decodePng(bytes);
    if (png.width * png.height > MAX_IMAGE_MP * 1e6) throw new Error(`${what}: ${png.width}x${png.height} is larger than ${MAX_IMAGE_MP} MP`);
    return png;
  }
  if (kind === 'jpeg') {
    const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxResolutionInMP: MAX_IMAGE_MP, maxMemoryUsageInMB: 2048 });
    return { width: img.width, height: img.height, channels: 3, data: img.data };
  }
  throw new Error(`${what}: not a PNG or JPEG file`);
}

/** Encodes 8-bit RGB(A) / gray pixels as a JPEG of the given quality (alpha dropped). */
export function encodeJpeg(img: RawImage, quality: number): Buffer {
  const px = img.width * img.height;
  const rgba = new Uint8Array(px * 4);
  for (let p = 0; p < px; p++) {
    const s = p * img.channels;
    const gray = img.channels <= 2;
    rgba[p * 4] = img.data[s];
    rgba[p * 4 + 1] = img.data[s + (gray ? 0 : 1)];
    rgba[p * 4 + 2] = img.data[s + (gray ? 0 : 2)];
    rgba[p * 4 + 3] = 255;
  }
  return jpeg.encode({ width: img.width, height: img.height, data: rgba }, Math.max(1, Math.min(100, Math.round(quality)))).data;
}
