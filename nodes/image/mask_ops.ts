// MASK arithmetic shared by the inpainting nodes, with ComfyUI's (torch's) semantics: bilinear
// resize (F.interpolate mode "bilinear", align_corners=False, no antialias), round half to even
// (torch.round), and VAEEncodeForInpaint's mask growth (a ones-kernel conv of the rounded mask,
// clamped to [0, 1]). Pure TypeScript on host arrays: masks are one channel and small.

/** torch.round: halves go to the even neighbour. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Source index pair and weight of output `o` along one axis (torch's area_pixel_compute_source_index). */
function axisTaps(inSize: number, outSize: number): Array<[number, number, number]> {
  const scale = inSize / outSize;
  const taps: Array<[number, number, number]> = [];
  for (let o = 0; o < outSize; o++) {
    const src = Math.max(0, (o + 0.5) * scale - 0.5);
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    taps.push([i0, i1, src - i0]);
  }
  return taps;
}

/** (B, H, W) → (B, outH, outW), bilinear, align_corners=False (identity when the size is equal). */
export function resizeMaskBilinear(data: Float32Array, B: number, H: number, W: number, outH: number, outW: number): Float32Array {
  if (outH === H && outW === W) return data.slice();
  const ty = axisTaps(H, outH),
    tx = axisTaps(W, outW);
  const out = new Float32Array(B * outH * outW);
  for (let b = 0; b < B; b++) {
    const src = b * H * W;
    for (let y = 0; y < outH; y++) {
      const [y0, y1, ly] = ty[y]!;
      for (let x = 0; x < outW; x++) {
        const [x0, x1, lx] = tx[x]!;
        const top = (1 - lx) * data[src + y0 * W + x0]! + lx * data[src + y0 * W + x1]!;
        const bot = (1 - lx) * data[src + y1 * W + x0]! + lx * data[src + y1 * W + x1]!;
        out[(b * outH + y) * outW + x] = (1 - ly) * top + ly * bot;
      }
    }
  }
  return out;
}

/**
 * VAEEncodeForInpaint's growth of a (B, H, W) mask by `g` pixels: round, convolve with a g×g
 * kernel of ones at padding ceil((g − 1)/2) (so an even g reaches one pixel further up/left than
 * down/right), keep the top-left H×W, clamp to [0, 1], round. g = 0 returns the mask rounded.
 */
export function growMask(data: Float32Array, B: number, H: number, W: number, g: number): Float32Array {
  if (!Number.isInteger(g) || g < 0) throw new Error(`growMask: grow_mask_by must be a non-negative integer, got ${g}`);
  const r = Float32Array.from(data, roundHalfEven);
  if (g === 0) return r;
  const pad = Math.ceil((g - 1) / 2);
  // The box sum is separable (rows, then columns); the clamp makes the result 1 wherever the
  // window y−pad … y−pad+g−1 × x−pad … x−pad+g−1 holds a masked pixel.
  const rows = new Float32Array(B * H * W);
  for (let b = 0; b < B; b++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        let s = 0;
        for (let k = 0; k < g; k++) {
          const xx = x - pad + k;
          if (xx >= 0 && xx < W) s += r[(b * H + y) * W + xx]!;
        }
        rows[(b * H + y) * W + x] = s;
      }
    }
  }
  const out = new Float32Array(B * H * W);
  for (let b = 0; b < B; b++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        let s = 0;
        for (let k = 0; k < g; k++) {
          const yy = y - pad + k;
          if (yy >= 0 && yy < H) s += rows[(b * H + yy) * W + x]!;
        }
        out[(b * H + y) * W + x] = roundHalfEven(Math.min(1, Math.max(0, s)));
      }
    }
  }
  return out;
}
