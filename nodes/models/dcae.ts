// The decoder of AutoencoderDC (DC-AE f32c32, the Sana VAE; shared/spec/sana.md §4) on the Backend interface,
// plus tiled decoding with linear seam blending for large images in bounded memory.
//
// Module paths equal the diffusers keys under `decoder.`. Activations are channels-last (B, H, W, C)
// from conv_in to conv_out (the latent is transposed once in, the image once out): 1×1
// convolutions are linears over pixels and the 3×3 ones run on NHWC (`conv2dNhwc`), so no op
// reorders its input (dcae_blocks.ts, runBlockNhwc).
// Letters: B batch, C stage width, H·W grid, N = H·W pixels, G heads of hd channels.
import { join } from 'node:path';
import type { Backend, DType, Tensor } from '../../native/api.ts';
import { blockLayout, checkDcaeDtype, configNumber, free, halfEntryPoints, loadBlockNhwc, latentShortcut, loadHalfFromFolder, parseDcaeHalf, perStage, runBlockNhwc, tiledMap, view, type BlockNhwcW, type DcaeHalfConfig, type DcaeHalfModel, type HalfRunOptions, type TileOptions } from './dcae_blocks.ts';
import { checkLayout, conv, layoutShapes, rmsNormAffine, unexpectedLine, type Layout } from './layout.ts';
import type { HostArray, TensorInput } from './tensor_input.ts';
import { WeightSet, type WeightSource } from './weight_set.ts';
import { readJsonConfig, type FolderLoadOptions } from './weights.ts';

export { axisBlend, tileAxis, tileStarts, TILE_DEFAULTS, type DcaeBlockType } from './dcae_blocks.ts';

// ------------------------------------------------------------------------------------------------
// Config

export interface DcaeDecoderConfig extends DcaeHalfConfig {
  /** Image channels produced (3). */
  outChannels: number;
  actFns: Array<'silu' | 'relu'>;
  upsampleBlockType: 'interpolate' | 'pixel_shuffle';
  inShortcut: boolean;
}

/** Parses a diffusers AutoencoderDC config.json (decoder part), refusing variants not implemented. */
export function parseDcaeConfig(raw: Record<string, unknown>, file = 'vae/config.json'): DcaeDecoderConfig {
  const half = parseDcaeHalf(raw, 'decoder', file);
  const { blockOutChannels, layersPerBlock } = half;
  const S = blockOutChannels.length;
  if (layersPerBlock[0] === 0) throw new Error(`${file}: decoder_layers_per_block[0] = 0 (pixel-shuffle output head) is not supported; Sana's DC-AE has blocks in every stage`);
  const isStr = (x: unknown): x is string => typeof x === 'string';
  const norms = perStage(raw.decoder_norm_types ?? 'rms_norm', S, 'decoder_norm_types', file, isStr);
  for (const n of norms) if (n !== 'rms_norm') throw new Error(`${file}: decoder norm type ${n} is not supported (only rms_norm, as in Sana's DC-AE; the BatchNorm DC-AE releases are out of scope)`);
  const acts = perStage(raw.decoder_act_fns ?? 'silu', S, 'decoder_act_fns', file, isStr);
  for (const a of acts) if (a !== 'silu' && a !== 'relu') throw new Error(`${file}: decoder activation ${a} is not supported (silu, relu)`);
  const up = raw.upsample_block_type ?? 'pixel_shuffle';
  if (up !== 'interpolate' && up !== 'pixel_shuffle') throw new Error(`${file}: upsample_block_type ${JSON.stringify(up)} is not supported (interpolate, pixel_shuffle)`);
  const convAct = raw.decoder_conv_act_fn ?? 'relu';
  if (convAct !== 'relu') throw new Error(`${file}: decoder_conv_act_fn ${JSON.stringify(convAct)} is not supported (relu)`);
  const cfg: DcaeDecoderConfig = {
    ...half,
    outChannels: configNumber(raw, 'in_channels', 3, file),
    actFns: acts as Array<'silu' | 'relu'>,
    upsampleBlockType: up,
    inShortcut: latentShortcut(raw, 'decoder_in_shortcut', half, file),
  };
  for (let i = 0; i < S - 1; i++) {
    const C = blockOutChannels[i]!;
    if (layersPerBlock[i]! > 0 && (4 * C) % blockOutChannels[i + 1]! !== 0) {
      throw new Error(`${file}: stage ${i} upsampler ${blockOutChannels[i + 1]} → ${C} channels: 4·${C} is not a multiple of ${blockOutChannels[i + 1]}`);
    }
  }
  return cfg;
}

/** Every `decoder.*` tensor of this config in state_dict order (encoder tensors are not needed):
 *  the stages run from the latent side (S − 1) to the image side (0). */
export function decoderLayout(cfg: DcaeDecoderConfig): Layout {
  const Cs = cfg.blockOutChannels, S = Cs.length, hd = cfg.attentionHeadDim;
  const t: Layout = [];
  conv(t, 'decoder.conv_in', Cs[S - 1]!, cfg.latentChannels, 3, true);
  for (let i = S - 1; i >= 0; i--) {
    const C = Cs[i]!;
    let j = 0;
    const pre = (k: number): string => `decoder.up_blocks.${i}.${k}.`;
    if (i < S - 1 && cfg.layersPerBlock[i]! > 0) {
      conv(t, `${pre(0)}conv`, cfg.upsampleBlockType === 'interpolate' ? C : 4 * C, Cs[i + 1]!, 3, true);
      j = 1;
    }
    for (let l = 0; l < cfg.layersPerBlock[i]!; l++, j++) blockLayout(t, pre(j), cfg.blockTypes[i]!, C, hd, cfg.qkvMultiscales[i]!);
  }
  rmsNormAffine(t, 'decoder.norm_out', Cs[0]!);
  // Gain 0.5 on the last conv: the tiny model's decoded images sit mostly inside [-1, 1].
  conv(t, 'decoder.conv_out', cfg.outChannels, Cs[0]!, 3, true, 1, 0.5);
  return t;
}

/** Every `decoder.*` tensor of this config with its shape. */
export function expectedDecoderTensors(cfg: DcaeDecoderConfig): Map<string, number[]> {
  return layoutShapes(decoderLayout(cfg));
}

export function validateDecoderTensors(cfg: DcaeDecoderConfig, src: Pick<WeightSource, 'keys' | 'entry'>, where: string, layout = decoderLayout(cfg)): void {
  checkLayout(layout, src, { what: 'DC-AE decoder', where, extra: (extra) => unexpectedLine(extra.filter((k) => k.startsWith('decoder.')), 'decoder tensor') });
}

// ------------------------------------------------------------------------------------------------
// Model

/** An up-block's resampler. interpolate: the conv after the nearest 2× as its 2×2 phase kernels
 *  (phaseWeights), (4·Cout, Cin, 2, 2) and bias (4·Cout); pixel_shuffle: the 3×3 conv itself. */
interface UpW { convW: Tensor; convB: Tensor; repeats: number; interpolate: boolean }

/**
 * conv3x3(nearest2x(x)) as one 2×2 conv on x: output row 2h + i reads upsampled rows 2h+i−1..2h+i+1,
 * i.e. x rows (h−1, h, h) for i = 0 and (h, h, h+1) for i = 1, so each phase's kernel sums the 3×3
 * taps that land on the same x pixel (tap rows {0}, {1, 2} for i = 0; {0, 1}, {2} for i = 1; columns
 * alike). w (Cout, Cin, 3, 3) → (4·Cout, Cin, 2, 2), phase p = 2i + j in rows [p·Cout, (p+1)·Cout);
 * with padding 1 the conv's output (h + i, w + j) is phase (i, j) of upsampled pixel (2h+i, 2w+j)
 * (upsamplePhasesNhwc). 16 taps per output pixel instead of 36; sums in float64 from the
 * checkpoint's values, rounded once to the compute dtype.
 */
export function phaseWeights(w: Float32Array, Cout: number, Cin: number): Float32Array {
  const R = [
    [[1, 0, 0], [0, 1, 1]],
    [[1, 1, 0], [0, 0, 1]],
  ]; // R[i][a][k]: does 3×3 tap k fold into 2×2 tap a for phase parity i
  const out = new Float32Array(4 * Cout * Cin * 4);
  for (let i = 0; i < 2; i++)
    for (let j = 0; j < 2; j++)
      for (let co = 0; co < Cout; co++)
        for (let ci = 0; ci < Cin; ci++) {
          const src = (co * Cin + ci) * 9, dst = (((2 * i + j) * Cout + co) * Cin + ci) * 4;
          for (let a = 0; a < 2; a++)
            for (let b = 0; b < 2; b++) {
              let s = 0;
              for (let kh = 0; kh < 3; kh++) {
                if (!R[i]![a]![kh]) continue;
                for (let kw = 0; kw < 3; kw++) if (R[j]![b]![kw]) s += w[src + kh * 3 + kw]!;
              }
              out[dst + a * 2 + b] = s;
            }
        }
  return out;
}

interface Stage { up?: UpW; blocks: BlockNhwcW[] }

export type TiledDecodeOptions = TileOptions;

export type DecodeOptions = HalfRunOptions;

export interface DcaeDecoder extends DcaeHalfModel<DcaeDecoderConfig> {
  /** z (B, latent, h, w), already divided by scaling_factor by the caller → image (B, 3, 32h, 32w), f32. */
  decode(z: TensorInput, opts?: DecodeOptions): Tensor;
  /** The same decode over overlapping latent tiles; device memory is bounded by one tile. */
  decodeTiled(z: TensorInput, opts?: TiledDecodeOptions): Tensor;
}

export function buildDcaeDecoder(cfg: DcaeDecoderConfig, src: WeightSource, backend: Backend, dtype: DType, where = 'weights'): DcaeDecoder {
  checkDcaeDtype('DC-AE decoder', dtype);
  const layout = decoderLayout(cfg);
  validateDecoderTensors(cfg, src, where, layout);
  const bk = backend;
  const Cs = cfg.blockOutChannels, S = Cs.length;
  return new WeightSet(src, bk, dtype, layout).build((wl) => {
    const ld = (name: string): Tensor => wl.get(name);
    const convInW = ld('decoder.conv_in.weight'), convInB = ld('decoder.conv_in.bias');
    const stages: Stage[] = [];
    for (let i = 0; i < S; i++) {
      const C = Cs[i]!;
      const pre = (k: number): string => `decoder.up_blocks.${i}.${k}.`;
      const stage: Stage = { blocks: [] };
      let j = 0;
      if (i < S - 1 && cfg.layersPerBlock[i]! > 0) {
        const interpolate = cfg.upsampleBlockType === 'interpolate', Cin = Cs[i + 1]!;
        const name = `${pre(0)}conv`;
        if (interpolate) {
          const host = (n: string): Float32Array => {
            const t = src.load(n, bk, 'f32');
            try { return t.toFloat32(); } finally { t.dispose(); }
          };
          const b = host(`${name}.bias`), b4 = new Float32Array(4 * C);
          for (let p = 0; p < 4; p++) b4.set(b, p * C);
          stage.up = {
            convW: wl.keep(bk.fromArray(phaseWeights(host(`${name}.weight`), C, Cin), [4 * C, Cin, 2, 2], dtype)),
            convB: wl.keep(bk.fromArray(b4, [4 * C], 'f32')),
            repeats: (4 * C) / Cin, interpolate,
          };
        } else stage.up = { convW: ld(`${name}.weight`), convB: ld(`${name}.bias`), repeats: (4 * C) / Cin, interpolate };
        j = 1;
      }
      for (let l = 0; l < cfg.layersPerBlock[i]!; l++, j++) stage.blocks.push(loadBlockNhwc(wl, src, bk, pre(j), cfg.blockTypes[i]!, C, cfg.attentionHeadDim, cfg.qkvMultiscales[i]!, cfg.actFns[i]!));
      stages.push(stage);
    }
    const normW = ld('decoder.norm_out.weight'), normB = ld('decoder.norm_out.bias');
    const outW = ld('decoder.conv_out.weight'), outB = ld('decoder.conv_out.bias');
    const bytes = wl.bytes;
    const hd = cfg.attentionHeadDim;

    // pixel_shuffle(x, 2) channels-last: channel 4c + 2i + j of pixel (h, w) → channel c of (2h+i, 2w+j).
    const pixelShuffleNhwc = (x: Tensor): Tensor => {
      const [B, H, W, C4] = x.shape as [number, number, number, number];
      const x6 = bk.reshape(x, [B, H, W, C4 / 4, 2, 2]);
      const p = bk.permute(x6, [0, 1, 4, 2, 5, 3]); // (B, H, 2, W, 2, C)
      free(x6);
      return view(bk, p, [B, 2 * H, 2 * W, C4 / 4]);
    };
    const upsample = (X: Tensor, w: UpW): Tensor => {
      if (w.interpolate) {
        const y = bk.conv2dNhwc(X, w.convW, w.convB, { padding: 1 }); // (B, H+1, W+1, 4·Cout): the 4 phases
        const out = bk.upsamplePhasesNhwc(y, X); // (B, 2H, 2W, Cout), + the shortcut
        free(y);
        return out;
      }
      const c = bk.conv2dNhwc(X, w.convW, w.convB, { padding: 1 }); // (B, H, W, 4·Cout)
      const main = pixelShuffleNhwc(c);
      free(c);
      const rep = bk.repeatInterleave(X, w.repeats, 3); // (B, H, W, 4·Cout)
      const short = pixelShuffleNhwc(rep); // (B, 2H, 2W, Cout)
      free(rep);
      return bk.add(main, short);
    };

    const decodeDevice = (z: Tensor, capture?: (name: string, t: Tensor) => void, onBlock?: () => void): Tensor => bk.scope(() => {
      const [, Cz] = z.shape as [number, number, number, number];
      if (z.shape.length !== 4 || Cz !== cfg.latentChannels) throw new Error(`DC-AE decoder: latent has shape ${JSON.stringify(z.shape)}, expected (B, ${cfg.latentChannels}, h, w)`);
      // the captured intermediates are compared with diffusers' NCHW ones
      const cap = capture && ((name: string, t: Tensor): void => capture(name, bk.permute(t, [0, 3, 1, 2])));
      const zz = bk.permute(z.dtype === dtype ? z : bk.cast(z, dtype), [0, 2, 3, 1]); // (B, h, w, c)
      let X = bk.conv2dNhwc(zz, convInW, convInB, { padding: 1 }); // (B, h, w, C_last)
      if (cfg.inShortcut) X = bk.add(X, bk.repeatInterleave(zz, Cs[S - 1]! / cfg.latentChannels, 3));
      cap?.('decoder.after_conv_in', X);
      // Each step runs in its own scope and frees its input at once: stage-0 maps of a 1024² image
      // are 256 MB apiece in bf16, so holding a whole stage's intermediates would multiply the peak.
      const step = (f: (x: Tensor) => Tensor): void => {
        onBlock?.();
        const Y = bk.scope(() => f(X));
        X.dispose();
        X = Y;
      };
      for (let i = S - 1; i >= 0; i--) {
        const st = stages[i]!;
        if (st.up) step((x) => upsample(x, st.up!));
        for (const b of st.blocks) step((x) => runBlockNhwc(bk, x, b, hd));
        cap?.(`decoder.up_blocks.${i}`, X);
      }
      const n = bk.rmsnormAct(X, normW, normB, 1e-5, 'relu');
      const img = bk.permute(bk.conv2dNhwc(n, outW, outB, { padding: 1 }), [0, 3, 1, 2]); // (B, 3, H, W)
      return img.dtype === 'f32' ? img : bk.cast(img, 'f32');
    });

    const entry = halfEntryPoints(bk, 'DC-AE decoder', decodeDevice, (z, fn, opts) => tiledDecode(z, cfg.spatialCompression, fn, opts), () => wl.dispose());
    return { config: cfg, dtype, bytes, decode: entry.whole, decodeTiled: entry.tiled, dispose: entry.dispose };
  });
}

// ------------------------------------------------------------------------------------------------
// Tiled decoding

/**
 * Decodes a latent (B, c, h, w) as overlapping tiles and blends them (`tiledMap`): `decodeTile`
 * maps a latent tile to its image (B, 3, f·th, f·tw) on the host.
 */
export function tiledDecode(
  z: HostArray, factor: number, decodeTile: (tile: HostArray) => Float32Array, opts: TiledDecodeOptions = {},
): HostArray {
  return tiledMap(z, 1, factor, decodeTile, opts, 'DC-AE tiled decode');
}

// ------------------------------------------------------------------------------------------------
// Loading from a diffusers `vae/` folder

export function readDcaeConfig(dir: string): DcaeDecoderConfig {
  return parseDcaeConfig(readJsonConfig(dir), join(dir, 'config.json'));
}

/** Loads the DC-AE decoder from a diffusers `vae/` folder (encoder tensors are left on disk). */
export async function loadDcaeDecoder(
  dir: string, backend: Backend, dtype: DType,
  opts: FolderLoadOptions = {},
): Promise<DcaeDecoder> {
  return loadHalfFromFolder(dir, backend, dtype, opts, parseDcaeConfig, buildDcaeDecoder);
}
