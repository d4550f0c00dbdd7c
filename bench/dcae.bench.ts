// DC-AE decoder (Sana's f32c32 VAE, real config, random weights) on the CPU backend.
//   npm run bench -- dcae
// Rows: untiled decode at each side of SANA_BENCH_DCAE_SIDES (default 512,1024; bf16) and 512² f32
// (1024² f32 with SANA_BENCH_FULL=1): time, FLOPs, TFLOP/s, peak backend memory; for bf16 the matmul
// floor (the decode's dense convolutions and 1×1 projections as bf16 linears of their im2col GEMM
// shapes, timed alone in the same run) and decode / floor. Tiled bf16
// decodes of the same latents right after their untiled row (same run, so `vs_untiled` is a fair
// ratio): tile count and side, decoded tile area / latent area, the tiles' decode time vs the host
// side (tile gathering, blending, copies), the first tile (new primitive shapes) vs the median
// tile. Each timed decode's shapes (whole latent, tile) are decoded once first. With SANA_BENCH_FULL=1 also 4096² (latent 128²) with the default tiling. The peak of a
// tiled decode is one tile's plus the f32 output.
import * as native from '../native/index.ts';
import {
  buildDcaeDecoder,
  expectedDecoderTensors,
  parseDcaeConfig,
  tileAxis,
  tiledDecode,
  TILE_DEFAULTS,
  type DcaeDecoderConfig,
} from '../nodes/models/dcae.ts';
import type { Backend } from '../native/api.ts';
import type { HostArray } from '../nodes/models/tensor_input.ts';
import { noise, randomWeights } from './dit.bench.ts';
import type { BenchRow } from './types.ts';
import { matmulCeiling } from './ceiling.ts';

export const SANA_VAE_CONFIG = {
  _class_name: 'AutoencoderDC',
  attention_head_dim: 32,
  decoder_act_fns: 'silu',
  decoder_block_out_channels: [128, 256, 512, 512, 1024, 1024],
  decoder_block_types: ['ResBlock', 'ResBlock', 'ResBlock', 'EfficientViTBlock', 'EfficientViTBlock', 'EfficientViTBlock'],
  decoder_layers_per_block: [3, 3, 3, 3, 3, 3],
  decoder_norm_types: 'rms_norm',
  decoder_qkv_multiscales: [[], [], [], [5], [5], [5]],
  in_channels: 3,
  latent_channels: 32,
  scaling_factor: 0.41407,
  upsample_block_type: 'interpolate',
};

/** FLOPs of one decode of a latent h×w (convolutions and the linear attention; norms omitted). */
export function dcaeFlops(c: DcaeDecoderConfig, h: number, w: number): number {
  const conv = (cout: number, cinPerGroup: number, k: number, px: number): number => 2 * cout * cinPerGroup * k * k * px;
  const Cs = c.blockOutChannels,
    S = Cs.length,
    hd = c.attentionHeadDim;
  let f = conv(Cs[S - 1]!, c.latentChannels, 3, h * w);
  let px = h * w;
  for (let i = S - 1; i >= 0; i--) {
    const C = Cs[i]!;
    if (i < S - 1) {
      px *= 4;
      f += conv(c.upsampleBlockType === 'interpolate' ? C : 4 * C, Cs[i + 1]!, 3, px);
    }
    for (let l = 0; l < c.layersPerBlock[i]!; l++) {
      if (c.blockTypes[i] === 'ResBlock') {
        f += 2 * conv(C, C, 3, px);
      } else {
        const ns = c.qkvMultiscales[i]!.length;
        f += conv(3 * C, C, 1, px); // q, k, v
        for (const k of c.qkvMultiscales[i]!) f += conv(3 * C, 1, k, px) + conv(3 * C, hd, 1, px);
        f += 2 * 2 * px * C * (1 + ns) * (hd + 1); // linear attention over 2·heads·(1+ns)/2 heads of hd
        f += conv(C, C * (1 + ns), 1, px); // to_out
        f += conv(8 * C, C, 1, px) + conv(8 * C, 1, 3, px) + conv(C, 4 * C, 1, px); // GLUMBConv
      }
    }
  }
  return f + conv(c.outChannels, Cs[0]!, 3, px);
}

/** The decode's dense convolutions as GEMMs [M pixels, K = C_in·k², N = C_out] (each conv of
 *  dcaeFlops with groups = 1, at its nominal size: the upsampler's 3×3 conv over the upsampled map). */
export function dcaeGemms(c: DcaeDecoderConfig, h: number, w: number): Array<[number, number, number]> {
  const Cs = c.blockOutChannels,
    S = Cs.length;
  const g: Array<[number, number, number]> = [[h * w, 9 * c.latentChannels, Cs[S - 1]!]];
  let px = h * w;
  for (let i = S - 1; i >= 0; i--) {
    const C = Cs[i]!;
    if (i < S - 1) {
      px *= 4;
      g.push([px, 9 * Cs[i + 1]!, c.upsampleBlockType === 'interpolate' ? C : 4 * C]);
    }
    for (let l = 0; l < c.layersPerBlock[i]!; l++) {
      if (c.blockTypes[i] === 'ResBlock') g.push([px, 9 * C, C], [px, 9 * C, C]);
      else g.push([px, C, 3 * C], [px, C * (1 + c.qkvMultiscales[i]!.length), C], [px, C, 8 * C], [px, 4 * C, C]);
    }
  }
  g.push([px, 9 * Cs[0]!, c.outChannels]);
  return g;
}

/** The matmul floor of a decode: its GEMMs (dcaeGemms) as bf16 linears at the rate the backend
 *  reaches for each shape, timed on up to 8192 rows and scaled to M. */
function matmulFloor(backend: Backend, gemms: Array<[number, number, number]>): number {
  const rate = new Map<string, number>(); // s per row, by K×N
  let s = 0;
  for (const [M, K, N] of gemms) {
    const key = `${K}x${N}`;
    if (!rate.has(key)) {
      const rows = 8192;
      const x = backend.fromArray(noise(rows * K, 1, 3), [rows, K], 'bf16');
      const wt = backend.fromArray(noise(N * K, 0.05, 4), [N, K], 'bf16');
      backend.linear(x, wt).dispose();
      let best = Infinity;
      for (let r = 0; r < 3; r++) {
        const t0 = Number(process.hrtime.bigint());
        backend.linear(x, wt).dispose();
        best = Math.min(best, (Number(process.hrtime.bigint()) - t0) / 1e9);
      }
      x.dispose();
      wt.dispose();
      rate.set(key, best / rows);
    }
    s += rate.get(key)! * M;
  }
  return s;
}

const MB = 1 / (1024 * 1024);
/** SANA_BENCH_FULL=1 adds the 1024² f32 decode and the tiled 4096² decode (≈ 100 TFLOP: minutes
 *  even on an idle machine). */
const FULL = process.env.SANA_BENCH_FULL === '1';
/** Image sides of the untiled + tiled bf16 rows (multiples of 32). */
const SIDES = (process.env.SANA_BENCH_DCAE_SIDES ?? '512,1024').split(',').map(Number);
/** Tiled cases per side, [tile, overlap] in latent pixels: 512-px tiles with 64-px blends (ComfyUI's
 *  VAEDecodeTiled defaults, diffusers' AutoencoderDC tiling) and 768-px tiles where they split the
 *  image, 384-px tiles at 512²; `undefined` = the decoder's defaults. */
const tileCases = (side: number): Array<[number | undefined, number | undefined]> => {
  const cases: Array<[number | undefined, number | undefined]> = [];
  if (side === 512) cases.push([12, 2]);
  if (side > 1024)
    cases.push([undefined, undefined]); // 2048² and up: the defaults only
  else if (side > 512) cases.push([16, 2]);
  if (side > 768 && side <= 1024) cases.push([24, 2]);
  return cases;
};

const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length === 0 ? 0 : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export default async function dcaeBench(): Promise<BenchRow[]> {
  const backend = native.getBackend('cpu');
  const cfg = parseDcaeConfig(SANA_VAE_CONFIG, 'dc-ae-f32c32-sana-1.0 (bench)');
  const src = randomWeights(expectedDecoderTensors(cfg));
  const rows: BenchRow[] = matmulCeiling(backend, 'start');
  const now = (): number => Number(process.hrtime.bigint()) / 1e9;
  const peakOf = (fn: () => void): { seconds: number; peakMb: number } => {
    backend.resetPeak();
    const base = backend.memory().allocated;
    const t0 = now();
    fn();
    return { seconds: now() - t0, peakMb: (backend.memory().peak - base) * MB };
  };
  for (const dtype of ['bf16', 'f32'] as const) {
    const dec = buildDcaeDecoder(cfg, src, backend, dtype, 'random weights');
    try {
      const sides = dtype === 'bf16' ? [...SIDES, ...(FULL ? [4096] : [])] : [512, ...(FULL ? [1024] : [])];
      let warm = false;
      for (const side of sides) {
        const h = side / 32;
        const z = { data: noise(32 * h * h, 2, 17), shape: [1, 32, h, h] };
        if (!warm) {
          const w = { data: noise(32 * 16 * 16, 2, 5), shape: [1, 32, 16, 16] };
          dec.decode(w).dispose(); // warm-up: packs the conv weights
          warm = true;
        }
        // Every timed decode runs on a shape decoded once before: a first decode at a new size pays
        // its primitives and ~1.4 GB (1024²) of never-touched pages (~0.5 GB/s on these VMs), which
        // made untiled rows slower than tiled ones.
        const warmShape = (th: number, tw: number): void => dec.decode({ data: noise(32 * th * tw, 2, 5), shape: [1, 32, th, tw] }).dispose();
        let untiled = NaN;
        if (side <= 1024) {
          warmShape(h, h);
          native.profiler.stage(`dcae.decode.${side}.${dtype}`);
          const { seconds, peakMb } = peakOf(() => dec.decode(z).dispose());
          const flops = dcaeFlops(cfg, h, h);
          untiled = seconds;
          rows.push({
            name: `dcae.decode.${side}.${dtype}`,
            metrics: { seconds, tflop: flops / 1e12, tflops: flops / seconds / 1e12, peak_act_mb: peakMb, weights_mb: dec.bytes * MB },
          });
          if (dtype === 'bf16') {
            native.profiler.stage(`dcae.decode.${side}.bf16.matmul_floor`);
            const floor = matmulFloor(backend, dcaeGemms(cfg, h, h));
            native.profiler.endStage();
            rows.push({
              name: `dcae.decode.${side}.bf16.matmul_floor`,
              metrics: { seconds: floor, decode_over_floor: seconds / floor },
              units: { decode_over_floor: '×' },
            });
          }
        }
        if (dtype !== 'bf16') continue;
        // The same latent in tiles, one after another, each freed before the next: the peak is
        // one tile's whatever the image size. The tile decode is the decoder's whole-image call on
        // the tile (what decodeTiled runs), timed apart from the host-side tiling work.
        for (const [tile, overlap] of tileCases(side)) {
          const tileTimes: number[] = [];
          let area = 0,
            tileH = 0,
            tileW = 0;
          const runTile = (t: HostArray): Float32Array => {
            const t0 = now();
            const y = dec.decode(t);
            try {
              return y.toFloat32();
            } finally {
              y.dispose();
              tileTimes.push(now() - t0);
              area += t.shape[2]! * t.shape[3]!;
              tileH = Math.max(tileH, t.shape[2]!);
              tileW = Math.max(tileW, t.shape[3]!);
            }
          };
          const ax = tileAxis(h, tile ?? TILE_DEFAULTS.tile, overlap ?? TILE_DEFAULTS.overlap);
          warmShape(ax.len, ax.len);
          const label = tile === undefined ? 'default' : `tile${tile * 32}.ov${overlap! * 32}`;
          native.profiler.stage(`dcae.decode_tiled.${side}.${label}.bf16`);
          const { seconds, peakMb } = peakOf(() => {
            tiledDecode(z, cfg.spatialCompression, runTile, { tile, overlap });
          });
          const decodeS = tileTimes.reduce((a, b) => a + b, 0);
          rows.push({
            name: `dcae.decode_tiled.${side}.${label}.bf16`,
            metrics: {
              seconds,
              vs_untiled: seconds / untiled,
              tiles: tileTimes.length,
              tile_h: tileH,
              tile_w: tileW,
              area_ratio: area / (h * h),
              decode_s: decodeS,
              host_s: seconds - decodeS,
              first_tile_s: tileTimes[0] ?? 0,
              median_tile_s: median(tileTimes.slice(1)),
              peak_act_mb: peakMb,
              output_mb: 3 * side * side * 4 * MB,
            },
            units: { vs_untiled: '×', tiles: '', tile_h: 'latent px', tile_w: 'latent px', area_ratio: '×' },
          });
        }
      }
    } finally {
      dec.dispose();
    }
  }
  rows.push(...matmulCeiling(backend, 'end'));
  return rows;
}
