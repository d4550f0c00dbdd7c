// Cheap step previews: a fixed linear map from the 32 latent channels to RGB, applied per latent
// pixel (one preview pixel per 32×32 image block), with no decoder run.
//
// How the coefficients are derived: the map is the least-squares fit of
//   rgb(block) ≈ W · x + b,   W (3, C), b (3)
// where x is a latent pixel in the sampler's space (before the 1/scaling_factor the decoder
// applies) and rgb(block) is the mean colour of the 32×32 image block that the DC-AE decoder
// produces for it. `deriveLatentPreview` computes that fit once per decoder by decoding a few
// seeded random latents (a small grid, so it costs a fraction of one full decode); after that the
// map is fixed. Real checkpoints cannot be downloaded here, so no constant table is shipped:
// a table fitted on some other VAE would be wrong for this one, while the fit always matches the
// decoder actually loaded. `fitLatentPreview` is the fit alone (e.g. from real denoised latents).
import type { HostArray } from './tensor_input.ts';

export interface LatentPreviewMap {
  /** Row-major (3, C). */
  weight: Float32Array;
  /** (3). */
  bias: Float32Array;
  channels: number;
}

/** Block means (B, 3, h, w) of an image (B, 3, f·h, f·w). */
function blockMeans(img: HostArray, factor: number): Float32Array {
  const [B, C, H, W] = img.shape as [number, number, number, number];
  const h = H / factor, w = W / factor;
  const out = new Float64Array(B * C * h * w);
  for (let bc = 0; bc < B * C; bc++) {
    for (let y = 0; y < H; y++) {
      const row = (bc * H + y) * W, orow = (bc * h + Math.floor(y / factor)) * w;
      for (let x = 0; x < W; x++) out[orow + Math.floor(x / factor)]! += img.data[row + x]!;
    }
  }
  const n = factor * factor;
  return Float32Array.from(out, (v) => v / n);
}

/** Solves the symmetric positive definite system A x = b (A row-major n×n) by Cholesky. */
function solveSpd(A: Float64Array, b: Float64Array, n: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * n + j]!;
      for (let k = 0; k < j; k++) s -= L[i * n + k]! * L[j * n + k]!;
      if (i === j) {
        if (!(s > 0)) throw new Error('latent preview fit: normal equations are not positive definite (too few samples?)');
        L[i * n + i] = Math.sqrt(s);
      } else {
        L[i * n + j] = s / L[j * n + j]!;
      }
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= L[i * n + k]! * y[k]!;
    y[i] = s / L[i * n + i]!;
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < n; k++) s -= L[k * n + i]! * x[k]!;
    x[i] = s / L[i * n + i]!;
  }
  return x;
}

/**
 * Least-squares fit (with a small ridge term for conditioning) of block-mean colours from latent
 * pixels. latent (B, C, h, w); image (B, 3, f·h, f·w) in the decoder's [-1, 1] range.
 */
export function fitLatentPreview(latent: HostArray, image: HostArray, factor: number, ridge = 1e-3): LatentPreviewMap {
  const [B, C, h, w] = latent.shape as [number, number, number, number];
  const [Bi, Ci, H, W] = image.shape as [number, number, number, number];
  if (Bi !== B || Ci !== 3 || H !== h * factor || W !== w * factor) {
    throw new Error(`latent preview fit: image ${JSON.stringify(image.shape)} does not match latent ${JSON.stringify(latent.shape)} at ×${factor}`);
  }
  const target = blockMeans(image, factor); // (B, 3, h, w)
  const n = C + 1; // features: C channels and a constant 1
  const A = new Float64Array(n * n);
  const rhs = [new Float64Array(n), new Float64Array(n), new Float64Array(n)];
  const f = new Float64Array(n);
  const hw = h * w;
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < hw; p++) {
      for (let c = 0; c < C; c++) f[c] = latent.data[(b * C + c) * hw + p]!;
      f[C] = 1;
      for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) A[i * n + j]! += f[i]! * f[j]!;
      for (let k = 0; k < 3; k++) {
        const t = target[(b * 3 + k) * hw + p]!;
        for (let i = 0; i < n; i++) rhs[k]![i]! += f[i]! * t;
      }
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) A[j * n + i] = A[i * n + j]!;
  const samples = B * hw;
  for (let i = 0; i < C; i++) A[i * n + i]! += ridge * samples; // the bias column is not shrunk
  const weight = new Float32Array(3 * C), bias = new Float32Array(3);
  for (let k = 0; k < 3; k++) {
    const x = solveSpd(A, rhs[k]!, n);
    for (let c = 0; c < C; c++) weight[k * C + c] = x[c]!;
    bias[k] = x[C]!;
  }
  return { weight, bias, channels: C };
}

/** Something that decodes a latent to an image on the host (a DcaeDecoder wrapped by the caller). */
export type HostDecode = (z: HostArray) => HostArray;

/**
 * Fits the preview map of a decoder from `samples` seeded N(0, 1) latents of `grid`² pixels each,
 * the distribution of the sampler's latents. `scalingFactor` is divided out before decoding,
 * exactly as the pipeline does.
 */
export function deriveLatentPreview(decode: HostDecode, channels: number, factor: number, scalingFactor: number, opts: { grid?: number; samples?: number; seed?: number } = {}): LatentPreviewMap {
  const grid = opts.grid ?? 8, samples = opts.samples ?? 2;
  const rnd = gaussian(opts.seed ?? 1234);
  const x = new Float32Array(samples * channels * grid * grid);
  for (let i = 0; i < x.length; i++) x[i] = rnd();
  const shape = [samples, channels, grid, grid];
  const img = decode({ data: x.map((v) => v / scalingFactor), shape });
  return fitLatentPreview({ data: x, shape }, img, factor);
}

/** Seeded standard normal samples (xorshift32 + Box-Muller); only used to probe the decoder. */
function gaussian(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const u = (): number => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** Applies the map to one latent (C, h, w) (batch row `index` of (B, C, h, w)) → RGB bytes (h, w, 3). */
export function latentPreviewRgb(latent: HostArray, map: LatentPreviewMap, index = 0): { width: number; height: number; rgb: Uint8Array } {
  const [B, C, h, w] = latent.shape as [number, number, number, number];
  if (C !== map.channels) throw new Error(`latent preview: latent has ${C} channels, the preview map expects ${map.channels}`);
  if (!(index >= 0 && index < B)) throw new Error(`latent preview: batch index ${index} outside 0..${B - 1}`);
  const hw = h * w, base = index * C * hw;
  const rgb = new Uint8Array(hw * 3);
  for (let p = 0; p < hw; p++) {
    for (let k = 0; k < 3; k++) {
      let v = map.bias[k]!;
      for (let c = 0; c < C; c++) v += map.weight[k * C + c]! * latent.data[base + c * hw + p]!;
      // decoder range [-1, 1] → [0, 255], as the final image conversion does
      rgb[p * 3 + k] = Math.round(Math.min(1, Math.max(0, v * 0.5 + 0.5)) * 255);
    }
  }
  return { width: w, height: h, rgb };
}
