// The encoder of AutoencoderDC (DC-AE f32c32; shared/spec/sana.md §4.5) on the Backend interface, with tiled
// encoding for large images: `AutoencoderDC.encode(image)[0]`, no scaling inside (the diffusion
// latent is `encode(x) · scaling_factor`, which the DCAEEncode node applies).
//
// conv_in 3×3 → stages 0…S−1, each = `layers` blocks then (but the last) a DCDownBlock2d to the
// next width → conv_out 3×3 (+ the channel-averaging out-shortcut). The blocks are the decoder's
// (dcae_blocks.ts); module paths equal the diffusers keys under `encoder.`.
// Letters: B batch, C stage width, H·W grid, g channels averaged by a shortcut.
import { join } from 'node:path';
import type { Backend, DType, Tensor } from '../../native/api.ts';
import { blockLayout, checkDcaeDtype, configNumber, free, halfEntryPoints, loadBlock, latentShortcut, loadHalfFromFolder, parseDcaeHalf, runBlock, tiledMap, view, type BlockW, type DcaeHalfConfig, type DcaeHalfModel, type HalfRunOptions, type TileOptions } from './dcae_blocks.ts';
import { checkLayout, conv, layoutShapes, unexpectedLine, type Layout } from './layout.ts';
import type { HostArray, TensorInput } from './tensor_input.ts';
import { WeightSet, type WeightSource } from './weight_set.ts';
import { readJsonConfig, type FolderLoadOptions } from './weights.ts';

export interface DcaeEncoderConfig extends DcaeHalfConfig {
  /** Image channels taken (3). */
  inChannels: number;
  /** diffusers: 'pixel_unshuffle' = conv then pixel-unshuffle; anything else a stride-2 conv. */
  downsample: 'conv' | 'pixel_unshuffle';
  outShortcut: boolean;
}

/** Parses the encoder part of a diffusers AutoencoderDC config.json (defaults = diffusers'). */
export function parseDcaeEncoderConfig(raw: Record<string, unknown>, file = 'vae/config.json'): DcaeEncoderConfig {
  const half = parseDcaeHalf(raw, 'encoder', file, { blockOutChannels: [128, 256, 512, 512, 1024, 1024], layersPerBlock: [2, 2, 2, 3, 3, 3] });
  const { blockOutChannels, layersPerBlock } = half;
  const S = blockOutChannels.length;
  const zero = layersPerBlock.indexOf(0);
  if (zero >= 0) throw new Error(`${file}: encoder_layers_per_block[${zero}] = 0 is not supported (Sana's DC-AE has blocks in every encoder stage)`);
  const down = raw.downsample_block_type ?? 'pixel_unshuffle';
  if (typeof down !== 'string') throw new Error(`${file}: downsample_block_type must be a string (got ${JSON.stringify(down)})`);
  const cfg: DcaeEncoderConfig = {
    ...half,
    inChannels: configNumber(raw, 'in_channels', 3, file),
    // diffusers compares with == "pixel_unshuffle" only, so "Conv" / "conv" both mean the strided conv.
    downsample: down === 'pixel_unshuffle' ? 'pixel_unshuffle' : 'conv',
    outShortcut: latentShortcut(raw, 'encoder_out_shortcut', half, file),
  };
  for (let i = 0; i < S - 1; i++) {
    const C = blockOutChannels[i]!;
    const next = blockOutChannels[i + 1]!;
    if ((4 * C) % next !== 0) throw new Error(`${file}: encoder stage ${i} downsampler ${C} → ${next} channels: 4·${C} is not a multiple of ${next}`);
    if (cfg.downsample === 'pixel_unshuffle' && next % 4 !== 0) throw new Error(`${file}: pixel_unshuffle downsampler to ${next} channels needs a multiple of 4`);
  }
  return cfg;
}

/** Every `encoder.*` tensor of this config in state_dict order. */
export function encoderLayout(cfg: DcaeEncoderConfig): Layout {
  const Cs = cfg.blockOutChannels, S = Cs.length, hd = cfg.attentionHeadDim;
  const t: Layout = [];
  conv(t, 'encoder.conv_in', Cs[0]!, cfg.inChannels, 3, true);
  for (let i = 0; i < S; i++) {
    const n = cfg.layersPerBlock[i]!;
    for (let j = 0; j < n; j++) blockLayout(t, `encoder.down_blocks.${i}.${j}.`, cfg.blockTypes[i]!, Cs[i]!, hd, cfg.qkvMultiscales[i]!);
    if (i < S - 1) conv(t, `encoder.down_blocks.${i}.${n}.conv`, cfg.downsample === 'pixel_unshuffle' ? Cs[i + 1]! / 4 : Cs[i + 1]!, Cs[i]!, 3, true);
  }
  conv(t, 'encoder.conv_out', cfg.latentChannels, Cs[S - 1]!, 3, true);
  return t;
}

/** Every `encoder.*` tensor of this config with its shape. */
export function expectedEncoderTensors(cfg: DcaeEncoderConfig): Map<string, number[]> {
  return layoutShapes(encoderLayout(cfg));
}

export function validateEncoderTensors(cfg: DcaeEncoderConfig, src: Pick<WeightSource, 'keys' | 'entry'>, where: string, layout = encoderLayout(cfg)): void {
  if (!src.keys().some((k) => k.startsWith('encoder.'))) {
    throw new Error(`DC-AE encoder: ${where} has no encoder weights (missing encoder.conv_in.weight and every other encoder.* tensor); this VAE can decode but not encode — use a complete AutoencoderDC checkpoint (encoder + decoder) to encode images`);
  }
  checkLayout(layout, src, { what: 'DC-AE encoder', where, extra: (extra) => unexpectedLine(extra.filter((k) => k.startsWith('encoder.')), 'encoder tensor') });
}

export type EncodeOptions = HalfRunOptions;

export interface DcaeEncoder extends DcaeHalfModel<DcaeEncoderConfig> {
  /** image (B, 3, H, W) in [−1, 1], H and W multiples of spatialCompression → latent (B, c, H/f, W/f), f32, unscaled. */
  encode(x: TensorInput, opts?: EncodeOptions): Tensor;
  /** The same over overlapping image tiles (sizes in latent pixels); memory is bounded by one tile. */
  encodeTiled(x: TensorInput, opts?: TileOptions): Tensor;
}

interface DownW { convW: Tensor; convB: Tensor; unshuffle: boolean; mean: Tensor }
interface Stage { blocks: BlockW[]; down?: DownW }

export function buildDcaeEncoder(cfg: DcaeEncoderConfig, src: WeightSource, backend: Backend, dtype: DType, where = 'weights'): DcaeEncoder {
  checkDcaeDtype('DC-AE encoder', dtype);
  const layout = encoderLayout(cfg);
  validateEncoderTensors(cfg, src, where, layout);
  const bk = backend;
  const Cs = cfg.blockOutChannels, S = Cs.length, hd = cfg.attentionHeadDim;
  return new WeightSet(src, bk, dtype, layout).build((wl) => {
    const ld = (name: string): Tensor => wl.get(name);
    // Averaging K channels in consecutive groups of g is a grouped 1×1 convolution with weights 1/g
    // (exact in bf16 too for the power-of-two g of every DC-AE): (K/g, g, 1, 1), groups K/g.
    const meanWeights = (K: number, g: number): Tensor => wl.keep(bk.full([K / g, g, 1, 1], 1 / g, dtype));
    const convInW = ld('encoder.conv_in.weight'), convInB = ld('encoder.conv_in.bias');
    const stages: Stage[] = [];
    for (let i = 0; i < S; i++) {
      const C = Cs[i]!, n = cfg.layersPerBlock[i]!;
      const pre = (k: number): string => `encoder.down_blocks.${i}.${k}.`;
      // diffusers builds every encoder block with rms_norm and silu, whatever the decoder's settings.
      const stage: Stage = { blocks: Array.from({ length: n }, (_, j) => loadBlock(wl, pre(j), cfg.blockTypes[i]!, C, cfg.qkvMultiscales[i]!, 'silu')) };
      if (i < S - 1) {
        stage.down = { convW: ld(`${pre(n)}conv.weight`), convB: ld(`${pre(n)}conv.bias`), unshuffle: cfg.downsample === 'pixel_unshuffle', mean: meanWeights(4 * C, (4 * C) / Cs[i + 1]!) };
      }
      stages.push(stage);
    }
    const outW = ld('encoder.conv_out.weight'), outB = ld('encoder.conv_out.bias');
    const outMean = cfg.outShortcut ? meanWeights(Cs[S - 1]!, Cs[S - 1]! / cfg.latentChannels) : undefined;
    const bytes = wl.bytes;

    // pixel_unshuffle(X, 2) as a view and one permuted copy: out channel 4c + 2i + j = X[c, 2r+i, 2s+j].
    const pixelUnshuffle = (X: Tensor): Tensor => {
      const [B, C, H, W] = X.shape as [number, number, number, number];
      const x6 = bk.reshape(X, [B, C, H / 2, 2, W / 2, 2]);
      const p = bk.permute(x6, [0, 1, 3, 5, 2, 4]); // (B, C, 2, 2, H/2, W/2)
      free(x6);
      return view(bk, p, [B, 4 * C, H / 2, W / 2]);
    };
    const downsample = (X: Tensor, w: DownW): Tensor => {
      let main: Tensor;
      if (w.unshuffle) {
        const c = bk.conv2d(X, w.convW, w.convB, { padding: 1 }); // (B, Cout/4, H, W)
        main = pixelUnshuffle(c); // (B, Cout, H/2, W/2)
        free(c);
      } else {
        main = bk.conv2d(X, w.convW, w.convB, { padding: 1, stride: 2 }); // (B, Cout, H/2, W/2)
      }
      const un = pixelUnshuffle(X); // (B, 4C, H/2, W/2)
      const groups = w.mean.shape[0]!;
      const short = bk.conv2d(un, w.mean, undefined, { groups }); // (B, Cout, H/2, W/2)
      free(un);
      const out = bk.add(main, short);
      free(main, short);
      return out;
    };

    const encodeDevice = (x: Tensor, capture?: (name: string, t: Tensor) => void, onBlock?: () => void): Tensor => bk.scope(() => {
      const [, Cx, H, W] = x.shape as [number, number, number, number];
      const f = cfg.spatialCompression;
      if (x.shape.length !== 4 || Cx !== cfg.inChannels) throw new Error(`DC-AE encoder: image has shape ${JSON.stringify(x.shape)}, expected (B, ${cfg.inChannels}, H, W)`);
      if (H % f !== 0 || W % f !== 0 || H === 0 || W === 0) throw new Error(`DC-AE encoder: image ${H}x${W} is not a positive multiple of ${f} on each side`);
      const xx = x.dtype === dtype ? x : bk.cast(x, dtype);
      let X = bk.conv2d(xx, convInW, convInB, { padding: 1 }); // (B, C0, H, W)
      // Each step runs in its own scope and frees its input at once (as in the decoder: stage-0
      // maps of a 1024² image are 256 MB apiece in bf16).
      const step = (fn: (t: Tensor) => Tensor): void => {
        onBlock?.();
        const Y = bk.scope(() => fn(X));
        X.dispose();
        X = Y;
      };
      for (let i = 0; i < S; i++) {
        const st = stages[i]!;
        for (const b of st.blocks) step((t) => runBlock(bk, t, b, hd));
        if (st.down) step((t) => downsample(t, st.down!));
        capture?.(`encoder.down_blocks.${i}`, X);
      }
      onBlock?.();
      let z = bk.conv2d(X, outW, outB, { padding: 1 }); // (B, c, h, w)
      if (outMean) z = bk.add(z, bk.conv2d(X, outMean, undefined, { groups: cfg.latentChannels }));
      return z.dtype === 'f32' ? z : bk.cast(z, 'f32');
    });

    const entry = halfEntryPoints(bk, 'DC-AE encoder', encodeDevice, (x, fn, opts) => tiledEncode(x, cfg.spatialCompression, fn, opts), () => wl.dispose());
    return { config: cfg, dtype, bytes, encode: entry.whole, encodeTiled: entry.tiled, dispose: entry.dispose };
  });
}

/**
 * Encodes an image (B, 3, f·h, f·w) as overlapping tiles of `tile` latent pixels and blends the
 * latent tiles linearly over `overlap` latent pixels (`tiledMap`). The encoder's attention is
 * global per tile, so this is an approximation of the untiled encode (bounded in the tests).
 */
export function tiledEncode(x: HostArray, factor: number, encodeTile: (tile: HostArray) => Float32Array, opts: TileOptions = {}): HostArray {
  return tiledMap(x, factor, 1, encodeTile, opts, 'DC-AE tiled encode');
}

export function readDcaeEncoderConfig(dir: string): DcaeEncoderConfig {
  return parseDcaeEncoderConfig(readJsonConfig(dir), join(dir, 'config.json'));
}

/** Loads the DC-AE encoder from a diffusers `vae/` folder (decoder tensors are left on disk). */
export async function loadDcaeEncoder(
  dir: string, backend: Backend, dtype: DType,
  opts: FolderLoadOptions = {},
): Promise<DcaeEncoder> {
  return loadHalfFromFolder(dir, backend, dtype, opts, parseDcaeEncoderConfig, buildDcaeEncoder);
}
