// DC-AE decoder (Sana's f32c32 VAE, real config, random weights) on the CPU backend.
//   npm run bench -- dcae
// Rows: decode at 512² (bf16, f32) and 1024² (bf16; f32 with SANA_BENCH_FULL=1): time, FLOPs,
// TFLOP/s, peak backend memory; tiled bf16 decodes: 1024² in 512-px tiles, and with
// SANA_BENCH_FULL=1 4096² (latent 128²) in 1024-px tiles with 128-px blends. The peak of a tiled
// decode is one tile's plus the f32 output.
import * as native from '../native/index.ts';
import { buildDcaeDecoder, expectedDecoderTensors, parseDcaeConfig, tileStarts, type DcaeDecoderConfig } from '../nodes/models/dcae.ts';
import { noise, randomWeights } from './dit.bench.ts';
import type { BenchRow } from './types.ts';

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

const MB = 1 / (1024 * 1024);
/** SANA_BENCH_FULL=1 adds the 1024² f32 decode and the tiled 4096² decode (≈ 100 TFLOP: minutes
 *  even on an idle machine). */
const FULL = process.env.SANA_BENCH_FULL === '1';

export default async function dcaeBench(): Promise<BenchRow[]> {
  const backend = native.getBackend('cpu');
  const cfg = parseDcaeConfig(SANA_VAE_CONFIG, 'dc-ae-f32c32-sana-1.0 (bench)');
  const src = randomWeights(expectedDecoderTensors(cfg));
  const rows: BenchRow[] = [];
  const peakOf = (fn: () => void): { seconds: number; peakMb: number } => {
    backend.resetPeak();
    const base = backend.memory().allocated;
    const t0 = process.hrtime.bigint();
    fn();
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, peakMb: (backend.memory().peak - base) * MB };
  };
  for (const dtype of ['bf16', 'f32'] as const) {
    const dec = buildDcaeDecoder(cfg, src, backend, dtype, 'random weights');
    try {
      for (const side of [512, 1024]) {
        if (side === 1024 && dtype === 'f32' && !FULL) continue;
        const h = side / 32;
        const z = { data: noise(32 * h * h, 2, 17), shape: [1, 32, h, h] };
        if (side === 512) dec.decode(z).dispose(); // warm-up: packs the conv weights
        native.profiler.stage(`dcae.decode.${side}.${dtype}`);
        const { seconds, peakMb } = peakOf(() => dec.decode(z).dispose());
        const flops = dcaeFlops(cfg, h, h);
        rows.push({
          name: `dcae.decode.${side}.${dtype}`,
          metrics: { seconds, tflop: flops / 1e12, tflops: flops / seconds / 1e12, peak_act_mb: peakMb, weights_mb: dec.bytes * MB },
        });
      }
      if (dtype === 'bf16') {
        // Tiles are decoded one after another and each is freed before the next: the peak is one
        // tile's, whatever the image size. Shown on 1024² in 512-px tiles (vs the untiled row
        // above), and with SANA_BENCH_FULL on 4096² in 1024-px tiles.
        const cases: Array<[number, number, number]> = [[1024, 16, 2], ...(FULL ? [[4096, 32, 4] as [number, number, number]] : [])];
        for (const [side, tile, overlap] of cases) {
          const h = side / 32;
          const z = { data: noise(32 * h * h, 2, 19), shape: [1, 32, h, h] };
          let tiles = 0;
          native.profiler.stage(`dcae.decode_tiled.${side}.tile${tile * 32}.bf16`);
          const { seconds, peakMb } = peakOf(() =>
            dec
              .decodeTiled(z, {
                tile,
                overlap,
                onTile: (d) => {
                  tiles = d;
                },
              })
              .dispose(),
          );
          rows.push({
            name: `dcae.decode_tiled.${side}.tile${tile * 32}.bf16`,
            metrics: { seconds, tiles, tiles_per_axis: tileStarts(h, tile, overlap).length, peak_act_mb: peakMb, output_mb: 3 * side * side * 4 * MB },
          });
        }
      }
    } finally {
      dec.dispose();
    }
  }
  return rows;
}
