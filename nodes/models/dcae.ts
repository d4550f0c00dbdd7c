// The decoder of AutoencoderDC (DC-AE f32c32, the Sana VAE; spec §4) on the Backend interface,
// plus tiled decoding with linear seam blending for large images in bounded memory.
//
// Module paths equal the diffusers keys under `decoder.`. Everything stays NCHW: the "Linear"
// projections of the attention are applied as 1×1 convolutions over channels.
// Letters: B batch, C stage width, H·W grid, N = H·W pixels, G heads of hd channels.
import { join } from 'node:path';
import type { Backend, DType, NativeModule, Tensor } from '../../native/api.ts';
import { blockTensorShapes, free, halfEntryPoints, loadBlock, loadHalfFromFolder, perStage, runBlock, tiledMap, weightLoader, type BlockW, type DcaeBlockType, type HalfRunOptions, type TileOptions } from './dcae_blocks.ts';
import type { HostArray, TensorInput, WeightSource } from './sana_dit.ts';
import { readJsonConfig, tensorShapeProblems } from './weights.ts';

export { tileStarts, type DcaeBlockType } from './dcae_blocks.ts';

// ------------------------------------------------------------------------------------------------
// Config

export interface DcaeDecoderConfig {
  /** Image channels produced (3). */
  outChannels: number;
  latentChannels: number;
  attentionHeadDim: number;
  blockTypes: DcaeBlockType[];
  blockOutChannels: number[];
  layersPerBlock: number[];
  qkvMultiscales: number[][];
  actFns: Array<'silu' | 'relu'>;
  upsampleBlockType: 'interpolate' | 'pixel_shuffle';
  inShortcut: boolean;
  scalingFactor: number;
  /** 2^(stages − 1): pixels per latent pixel along each axis. */
  spatialCompression: number;
}

/** Parses a diffusers AutoencoderDC config.json (decoder part), refusing variants not implemented. */
export function parseDcaeConfig(raw: Record<string, unknown>, file = 'vae/config.json'): DcaeDecoderConfig {
  if (raw._class_name !== undefined && raw._class_name !== 'AutoencoderDC') {
    throw new Error(`${file}: _class_name is ${JSON.stringify(raw._class_name)}, expected "AutoencoderDC"`);
  }
  const nums = (key: string, alt?: string): number[] => {
    const v = raw[key] ?? (alt ? raw[alt] : undefined);
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
      throw new Error(`${file}: "${key}" must be a list of non-negative integers (got ${JSON.stringify(v)})`);
    }
    return v as number[];
  };
  const blockOutChannels = nums('decoder_block_out_channels', 'block_out_channels');
  const S = blockOutChannels.length;
  const layersPerBlock = nums('decoder_layers_per_block');
  if (layersPerBlock.length !== S) throw new Error(`${file}: decoder_layers_per_block has ${layersPerBlock.length} entries for ${S} stages`);
  if (layersPerBlock[0] === 0) throw new Error(`${file}: decoder_layers_per_block[0] = 0 (pixel-shuffle output head) is not supported; Sana's DC-AE has blocks in every stage`);
  const isStr = (x: unknown): x is string => typeof x === 'string';
  const blockTypes = perStage(raw.decoder_block_types ?? 'ResBlock', S, 'decoder_block_types', file, isStr);
  for (const t of blockTypes) if (t !== 'ResBlock' && t !== 'EfficientViTBlock') throw new Error(`${file}: decoder block type ${t} is not supported (ResBlock, EfficientViTBlock)`);
  const norms = perStage(raw.decoder_norm_types ?? 'rms_norm', S, 'decoder_norm_types', file, isStr);
  for (const n of norms) if (n !== 'rms_norm') throw new Error(`${file}: decoder norm type ${n} is not supported (only rms_norm, as in Sana's DC-AE; the BatchNorm DC-AE releases are out of scope)`);
  const acts = perStage(raw.decoder_act_fns ?? 'silu', S, 'decoder_act_fns', file, isStr);
  for (const a of acts) if (a !== 'silu' && a !== 'relu') throw new Error(`${file}: decoder activation ${a} is not supported (silu, relu)`);
  const ms = raw.decoder_qkv_multiscales ?? [[], [], [], [5], [5], [5]];
  if (!Array.isArray(ms) || ms.length !== S || !ms.every((l) => Array.isArray(l) && l.every((k) => typeof k === 'number' && k % 2 === 1))) {
    throw new Error(`${file}: decoder_qkv_multiscales must be ${S} lists of odd kernel sizes (got ${JSON.stringify(ms)})`);
  }
  const up = raw.upsample_block_type ?? 'pixel_shuffle';
  if (up !== 'interpolate' && up !== 'pixel_shuffle') throw new Error(`${file}: upsample_block_type ${JSON.stringify(up)} is not supported (interpolate, pixel_shuffle)`);
  const convAct = raw.decoder_conv_act_fn ?? 'relu';
  if (convAct !== 'relu') throw new Error(`${file}: decoder_conv_act_fn ${JSON.stringify(convAct)} is not supported (relu)`);
  const num = (key: string, d: number): number => {
    const v = raw[key] ?? d;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${file}: "${key}" must be a number (got ${JSON.stringify(raw[key])})`);
    return v;
  };
  const cfg: DcaeDecoderConfig = {
    outChannels: num('in_channels', 3),
    latentChannels: num('latent_channels', 32),
    attentionHeadDim: num('attention_head_dim', 32),
    blockTypes: blockTypes as DcaeBlockType[],
    blockOutChannels,
    layersPerBlock,
    qkvMultiscales: ms as number[][],
    actFns: acts as Array<'silu' | 'relu'>,
    upsampleBlockType: up,
    inShortcut: raw.decoder_in_shortcut === undefined ? true : raw.decoder_in_shortcut === true,
    scalingFactor: num('scaling_factor', 1.0),
    spatialCompression: 2 ** (S - 1),
  };
  for (let i = 0; i < S; i++) {
    const C = blockOutChannels[i]!;
    if (blockTypes[i] === 'EfficientViTBlock' && C % cfg.attentionHeadDim !== 0) {
      throw new Error(`${file}: stage ${i} width ${C} is not a multiple of attention_head_dim ${cfg.attentionHeadDim}`);
    }
    if (i < S - 1 && layersPerBlock[i]! > 0 && (4 * C) % blockOutChannels[i + 1]! !== 0) {
      throw new Error(`${file}: stage ${i} upsampler ${blockOutChannels[i + 1]} → ${C} channels: 4·${C} is not a multiple of ${blockOutChannels[i + 1]}`);
    }
  }
  if (cfg.inShortcut && blockOutChannels[S - 1]! % cfg.latentChannels !== 0) {
    throw new Error(`${file}: decoder_in_shortcut needs the last width ${blockOutChannels[S - 1]} to be a multiple of latent_channels ${cfg.latentChannels}`);
  }
  return cfg;
}

/** Every `decoder.*` tensor of this config with its shape (encoder tensors are not needed). */
export function expectedDecoderTensors(cfg: DcaeDecoderConfig): Map<string, number[]> {
  const Cs = cfg.blockOutChannels, S = Cs.length, hd = cfg.attentionHeadDim;
  const m = new Map<string, number[]>();
  m.set('decoder.conv_in.weight', [Cs[S - 1]!, cfg.latentChannels, 3, 3]);
  m.set('decoder.conv_in.bias', [Cs[S - 1]!]);
  for (let i = 0; i < S; i++) {
    const C = Cs[i]!;
    let j = 0;
    const pre = (k: number): string => `decoder.up_blocks.${i}.${k}.`;
    if (i < S - 1 && cfg.layersPerBlock[i]! > 0) {
      const outC = cfg.upsampleBlockType === 'interpolate' ? C : 4 * C;
      m.set(`${pre(0)}conv.weight`, [outC, Cs[i + 1]!, 3, 3]);
      m.set(`${pre(0)}conv.bias`, [outC]);
      j = 1;
    }
    for (let l = 0; l < cfg.layersPerBlock[i]!; l++, j++) blockTensorShapes(m, pre(j), cfg.blockTypes[i]!, C, hd, cfg.qkvMultiscales[i]!);
  }
  m.set('decoder.norm_out.weight', [Cs[0]!]);
  m.set('decoder.norm_out.bias', [Cs[0]!]);
  m.set('decoder.conv_out.weight', [cfg.outChannels, Cs[0]!, 3, 3]);
  m.set('decoder.conv_out.bias', [cfg.outChannels]);
  return m;
}

export function validateDecoderTensors(cfg: DcaeDecoderConfig, src: Pick<WeightSource, 'keys' | 'entry'>, where: string): void {
  const { problems, extra: unexpected } = tensorShapeProblems(expectedDecoderTensors(cfg), src);
  const extra = unexpected.filter((k) => k.startsWith('decoder.'));
  if (extra.length > 0) problems.push(`${extra.length} unexpected decoder tensor(s): ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', …' : ''}`);
  if (problems.length > 0) {
    throw new Error(`DC-AE decoder weights in ${where} do not match its config (${problems.length} problem(s)):\n  ${problems.slice(0, 12).join('\n  ')}`);
  }
}

// ------------------------------------------------------------------------------------------------
// Model

interface UpW { convW: Tensor; convB: Tensor; repeats: number; interpolate: boolean }
interface Stage { up?: UpW; blocks: BlockW[] }

export type TiledDecodeOptions = TileOptions;

export type DecodeOptions = HalfRunOptions;

export interface DcaeDecoder {
  readonly config: DcaeDecoderConfig;
  readonly dtype: DType;
  readonly bytes: number;
  /** z (B, latent, h, w), already divided by scaling_factor by the caller → image (B, 3, 32h, 32w), f32. */
  decode(z: TensorInput, opts?: DecodeOptions): Tensor;
  /** The same decode over overlapping latent tiles; device memory is bounded by one tile. */
  decodeTiled(z: TensorInput, opts?: TiledDecodeOptions): Tensor;
  dispose(): void;
}

export function buildDcaeDecoder(cfg: DcaeDecoderConfig, src: WeightSource, backend: Backend, dtype: DType, where = 'weights'): DcaeDecoder {
  if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`DC-AE decoder: compute dtype ${dtype} is not supported (f32 or bf16; fp16 overflows, spec §8)`);
  validateDecoderTensors(cfg, src, where);
  const bk = backend;
  const wl = weightLoader(src, bk, dtype);
  const ld = wl.ld;
  const Cs = cfg.blockOutChannels, S = Cs.length;
  try {
    const convInW = ld('decoder.conv_in.weight'), convInB = ld('decoder.conv_in.bias');
    const stages: Stage[] = [];
    for (let i = 0; i < S; i++) {
      const C = Cs[i]!;
      const pre = (k: number): string => `decoder.up_blocks.${i}.${k}.`;
      const stage: Stage = { blocks: [] };
      let j = 0;
      if (i < S - 1 && cfg.layersPerBlock[i]! > 0) {
        stage.up = { convW: ld(`${pre(0)}conv.weight`), convB: ld(`${pre(0)}conv.bias`), repeats: (4 * C) / Cs[i + 1]!, interpolate: cfg.upsampleBlockType === 'interpolate' };
        j = 1;
      }
      for (let l = 0; l < cfg.layersPerBlock[i]!; l++, j++) stage.blocks.push(loadBlock(wl, pre(j), cfg.blockTypes[i]!, C, cfg.qkvMultiscales[i]!, cfg.actFns[i]!));
      stages.push(stage);
    }
    const normW = ld('decoder.norm_out.weight'), normB = ld('decoder.norm_out.bias');
    const outW = ld('decoder.conv_out.weight'), outB = ld('decoder.conv_out.bias');
    const bytes = wl.bytes();
    const hd = cfg.attentionHeadDim;

    const upsample = (X: Tensor, w: UpW): Tensor => {
      let main: Tensor;
      if (w.interpolate) {
        const up = bk.upsampleNearest(X, 2); // (B, Cin, 2H, 2W)
        main = bk.conv2d(up, w.convW, w.convB, { padding: 1 }); // (B, Cout, 2H, 2W)
        free(up);
      } else {
        const c = bk.conv2d(X, w.convW, w.convB, { padding: 1 }); // (B, 4·Cout, H, W)
        main = bk.pixelShuffle(c, 2);
        free(c);
      }
      const rep = bk.repeatInterleave(X, w.repeats, 1); // (B, 4·Cout, H, W)
      const short = bk.pixelShuffle(rep, 2); // (B, Cout, 2H, 2W)
      free(rep);
      return bk.add(main, short);
    };

    const decodeDevice = (z: Tensor, capture?: (name: string, t: Tensor) => void, onBlock?: () => void): Tensor => bk.scope(() => {
      const [, Cz] = z.shape as [number, number, number, number];
      if (z.shape.length !== 4 || Cz !== cfg.latentChannels) throw new Error(`DC-AE decoder: latent has shape ${JSON.stringify(z.shape)}, expected (B, ${cfg.latentChannels}, h, w)`);
      const zz = z.dtype === dtype ? z : bk.cast(z, dtype);
      let X = bk.conv2d(zz, convInW, convInB, { padding: 1 }); // (B, C_last, h, w)
      if (cfg.inShortcut) X = bk.add(X, bk.repeatInterleave(zz, Cs[S - 1]! / cfg.latentChannels, 1));
      capture?.('decoder.after_conv_in', X);
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
        for (const b of st.blocks) step((x) => runBlock(bk, x, b, hd));
        capture?.(`decoder.up_blocks.${i}`, X);
      }
      const img = bk.conv2d(bk.relu(bk.rmsnorm2d(X, normW, normB, 1e-5)), outW, outB, { padding: 1 }); // (B, 3, H, W)
      return img.dtype === 'f32' ? img : bk.cast(img, 'f32');
    });

    const entry = halfEntryPoints(bk, 'DC-AE decoder', decodeDevice, (z, fn, opts) => tiledDecode(z, cfg.spatialCompression, fn, opts), () => wl.disposeAll());
    return { config: cfg, dtype, bytes, decode: entry.whole, decodeTiled: entry.tiled, dispose: entry.dispose };
  } catch (e) {
    wl.disposeAll();
    throw e;
  }
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
  opts: { native?: Pick<NativeModule, 'openSafetensors'>; variant?: string } = {},
): Promise<DcaeDecoder> {
  return loadHalfFromFolder(dir, backend, dtype, opts, parseDcaeConfig, buildDcaeDecoder);
}
