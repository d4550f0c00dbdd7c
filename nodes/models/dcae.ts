// The decoder of AutoencoderDC (DC-AE f32c32, the Sana VAE; spec §4) on the Backend interface,
// plus tiled decoding with linear seam blending for large images in bounded memory.
//
// Module paths equal the diffusers keys under `decoder.`. Everything stays NCHW: the "Linear"
// projections of the attention are applied as 1×1 convolutions over channels.
// Letters: B batch, C stage width, H·W grid, N = H·W pixels, G heads of hd channels.
import { join } from 'node:path';
import type { Backend, DType, NativeModule, Tensor } from '../../native/api.ts';
import { importNative, type HostArray, type TensorInput, type WeightSource } from './sana_dit.ts';
import { pickSafetensors, readJsonConfig, tensorShapeProblems } from './weights.ts';

// ------------------------------------------------------------------------------------------------
// Config

export type DcaeBlockType = 'ResBlock' | 'EfficientViTBlock';

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

function perStage<T>(v: unknown, n: number, key: string, file: string, check: (x: unknown) => x is T): T[] {
  if (check(v)) return new Array<T>(n).fill(v);
  if (Array.isArray(v) && v.length === n && v.every(check)) return v as T[];
  throw new Error(`${file}: "${key}" must be one value or a list of ${n} (got ${JSON.stringify(v)})`);
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
    for (let l = 0; l < cfg.layersPerBlock[i]!; l++, j++) {
      const b = pre(j);
      if (cfg.blockTypes[i] === 'ResBlock') {
        m.set(`${b}conv1.weight`, [C, C, 3, 3]);
        m.set(`${b}conv1.bias`, [C]);
        m.set(`${b}conv2.weight`, [C, C, 3, 3]);
        m.set(`${b}norm.weight`, [C]);
        m.set(`${b}norm.bias`, [C]);
      } else {
        const I = C; // heads = C / hd (mult 1), inner = heads · hd
        for (const n of ['to_q', 'to_k', 'to_v']) m.set(`${b}attn.${n}.weight`, [I, C]);
        cfg.qkvMultiscales[i]!.forEach((k, s) => {
          m.set(`${b}attn.to_qkv_multiscale.${s}.proj_in.weight`, [3 * I, 1, k, k]);
          m.set(`${b}attn.to_qkv_multiscale.${s}.proj_out.weight`, [3 * I, hd, 1, 1]);
        });
        m.set(`${b}attn.to_out.weight`, [C, I * (1 + cfg.qkvMultiscales[i]!.length)]);
        m.set(`${b}attn.norm_out.weight`, [C]);
        m.set(`${b}attn.norm_out.bias`, [C]);
        m.set(`${b}conv_out.conv_inverted.weight`, [8 * C, C, 1, 1]);
        m.set(`${b}conv_out.conv_inverted.bias`, [8 * C]);
        m.set(`${b}conv_out.conv_depth.weight`, [8 * C, 1, 3, 3]);
        m.set(`${b}conv_out.conv_depth.bias`, [8 * C]);
        m.set(`${b}conv_out.conv_point.weight`, [C, 4 * C, 1, 1]);
        m.set(`${b}conv_out.norm.weight`, [C]);
        m.set(`${b}conv_out.norm.bias`, [C]);
      }
    }
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

interface ResBlockW { kind: 'res'; c1W: Tensor; c1B: Tensor; c2W: Tensor; nW: Tensor; nB: Tensor; act: 'silu' | 'relu' }
interface EvitBlockW {
  kind: 'evit';
  qkvW: Tensor; // (3I, C, 1, 1) fused to_q|to_k|to_v
  scales: Array<{ k: number; inW: Tensor; outW: Tensor }>;
  outW: Tensor; // (C, I·(1+S), 1, 1)
  anW: Tensor; anB: Tensor;
  invW: Tensor; invB: Tensor; dwW: Tensor; dwB: Tensor; ptW: Tensor; gnW: Tensor; gnB: Tensor;
}
interface UpW { convW: Tensor; convB: Tensor; repeats: number; interpolate: boolean }
interface Stage { up?: UpW; blocks: Array<ResBlockW | EvitBlockW> }

export interface TiledDecodeOptions {
  /** Latent tile side (default 32 = 1024 px). */
  tile?: number;
  /** Latent overlap between neighbouring tiles, blended linearly (default 4 = 128 px). */
  overlap?: number;
  /** Called after each tile with (done, total). */
  onTile?: (done: number, total: number) => void;
  /** Called between decoder blocks of every tile (see `DecodeOptions.onBlock`). */
  onBlock?: () => void;
}

export interface DecodeOptions {
  capture?: (name: string, t: Tensor) => void;
  /**
   * Called between decoder blocks: a throw from it (an interrupt) abandons the decode with its
   * tensors freed, so a stop request need not wait for a whole 4K decode.
   */
  onBlock?: () => void;
}

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

const isHost = (x: TensorInput): x is HostArray => (x as HostArray).data instanceof Float32Array;

export function buildDcaeDecoder(cfg: DcaeDecoderConfig, src: WeightSource, backend: Backend, dtype: DType, where = 'weights'): DcaeDecoder {
  if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`DC-AE decoder: compute dtype ${dtype} is not supported (f32 or bf16; fp16 overflows, spec §8)`);
  validateDecoderTensors(cfg, src, where);
  const bk = backend;
  const owned: Tensor[] = [];
  const keepT = (t: Tensor): Tensor => { owned.push(t); return t; };
  const ld = (name: string): Tensor => keepT(src.load(name, bk, dtype));
  const ldCat = (names: string[], shape: number[]): Tensor => {
    const parts = names.map((n) => src.load(n, bk, dtype));
    const cat = keepT(bk.concat(parts, 0));
    parts.forEach((p) => p.dispose());
    return keepT(bk.reshape(cat, shape));
  };
  const ldAs = (name: string, shape: number[]): Tensor => keepT(bk.reshape(ld(name), shape));
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
      for (let l = 0; l < cfg.layersPerBlock[i]!; l++, j++) {
        const b = pre(j);
        if (cfg.blockTypes[i] === 'ResBlock') {
          stage.blocks.push({ kind: 'res', c1W: ld(`${b}conv1.weight`), c1B: ld(`${b}conv1.bias`), c2W: ld(`${b}conv2.weight`), nW: ld(`${b}norm.weight`), nB: ld(`${b}norm.bias`), act: cfg.actFns[i]! });
        } else {
          const I = C, nS = cfg.qkvMultiscales[i]!.length;
          stage.blocks.push({
            kind: 'evit',
            qkvW: ldCat([`${b}attn.to_q.weight`, `${b}attn.to_k.weight`, `${b}attn.to_v.weight`], [3 * I, C, 1, 1]),
            scales: cfg.qkvMultiscales[i]!.map((k, s) => ({ k, inW: ld(`${b}attn.to_qkv_multiscale.${s}.proj_in.weight`), outW: ld(`${b}attn.to_qkv_multiscale.${s}.proj_out.weight`) })),
            outW: ldAs(`${b}attn.to_out.weight`, [C, I * (1 + nS), 1, 1]),
            anW: ld(`${b}attn.norm_out.weight`), anB: ld(`${b}attn.norm_out.bias`),
            invW: ld(`${b}conv_out.conv_inverted.weight`), invB: ld(`${b}conv_out.conv_inverted.bias`),
            dwW: ld(`${b}conv_out.conv_depth.weight`), dwB: ld(`${b}conv_out.conv_depth.bias`),
            ptW: ld(`${b}conv_out.conv_point.weight`),
            gnW: ld(`${b}conv_out.norm.weight`), gnB: ld(`${b}conv_out.norm.bias`),
          });
        }
      }
      stages.push(stage);
    }
    const normW = ld('decoder.norm_out.weight'), normB = ld('decoder.norm_out.bias');
    const outW = ld('decoder.conv_out.weight'), outB = ld('decoder.conv_out.bias');
    const bytes = owned.reduce((s, t) => s + t.nbytes, 0);
    const hd = cfg.attentionHeadDim;

    // Intermediates are freed as soon as they are consumed (the enclosing scope would free them
    // too, but only at the end of the block): at 1024² a stage-0 map is 256–512 MB.
    const free = (...ts: Tensor[]): void => ts.forEach((t) => t.dispose());
    // reshape that hands the storage over to the view (storage is refcounted: the base must go too)
    const view = (t: Tensor, shape: number[]): Tensor => {
      const v = bk.reshape(t, shape);
      t.dispose();
      return v;
    };
    const evit = (X: Tensor, w: EvitBlockW): Tensor => {
      const [B, C, H, W] = X.shape as [number, number, number, number];
      const N = H * W;
      // LiteMLA: multi-scale q/k/v, ReLU linear attention per 3·hd-channel group, projection, norm, residual
      const qkv = bk.conv2d(X, w.qkvW, undefined); // (B, 3I, H, W)
      const branches = [qkv];
      for (const s of w.scales) {
        const dw = bk.conv2d(qkv, s.inW, undefined, { padding: (s.k - 1) / 2, groups: 3 * C }); // (B, 3I, H, W)
        branches.push(bk.conv2d(dw, s.outW, undefined, { groups: (3 * C) / hd })); // (B, 3I, H, W)
        free(dw);
      }
      const T = branches.length === 1 ? qkv : bk.concat(branches, 1); // (B, 3I·(1+S), H, W)
      if (T !== qkv) free(...branches);
      const G = T.shape[1]! / (3 * hd);
      // Groups of 3·hd consecutive channels hold [query | key | value] of one head (fixture README).
      const T5 = view(T, [B, G, 3, hd, N]);
      const t5 = bk.permute(T5, [2, 0, 1, 4, 3]); // (3, B, G, N, hd)
      free(T5);
      const [q, k, v] = [0, 1, 2].map((i) => view(bk.slice(t5, 0, i, i + 1), [B, G, N, hd])) as [Tensor, Tensor, Tensor];
      free(t5);
      // The quadratic path diffusers takes when N ≤ hd is the same normalised ReLU-kernel
      // attention evaluated in another order, so one op serves both.
      const o = bk.linearAttention(q, k, v, 1e-15, true); // (B, G, N, hd)
      free(q, k, v);
      const oImg = view(bk.permute(o, [0, 1, 3, 2]), [B, G * hd, H, W]); // (B, I·(1+S), H, W)
      free(o);
      const proj = bk.conv2d(oImg, w.outW, undefined); // (B, C, H, W)
      free(oImg);
      const att = bk.rmsnorm2d(proj, w.anW, w.anB, 1e-5);
      free(proj);
      const X1 = bk.add(att, X);
      free(att);
      // GLUMBConv (expand 4): 1×1 → SiLU → depthwise 3×3 → value·SiLU(gate) → 1×1 → RMSNorm → residual
      const u0 = bk.conv2d(X1, w.invW, w.invB); // (B, 8C, H, W)
      const u = bk.silu(u0);
      free(u0);
      const d = bk.conv2d(u, w.dwW, w.dwB, { padding: 1, groups: 8 * C }); // (B, 8C, H, W)
      free(u);
      const val = bk.slice(d, 1, 0, 4 * C), gate = bk.slice(d, 1, 4 * C, 8 * C); // (B, 4C, H, W) each
      free(d);
      const glu = bk.gluMul(val, gate, 'silu'); // (B, 4C, H, W)
      free(val, gate);
      const pt = bk.conv2d(glu, w.ptW, undefined); // (B, C, H, W)
      free(glu);
      const g = bk.rmsnorm2d(pt, w.gnW, w.gnB, 1e-5);
      free(pt);
      return bk.add(g, X1);
    };
    const res = (X: Tensor, w: ResBlockW): Tensor => {
      const h1 = bk.conv2d(X, w.c1W, w.c1B, { padding: 1 }); // (B, C, H, W)
      const a = w.act === 'silu' ? bk.silu(h1) : bk.relu(h1);
      free(h1);
      const c2 = bk.conv2d(a, w.c2W, undefined, { padding: 1 });
      free(a);
      const h2 = bk.rmsnorm2d(c2, w.nW, w.nB, 1e-5);
      free(c2);
      return bk.add(h2, X);
    };
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
        for (const b of st.blocks) step((x) => (b.kind === 'res' ? res(x, b) : evit(x, b)));
        capture?.(`decoder.up_blocks.${i}`, X);
      }
      const img = bk.conv2d(bk.relu(bk.rmsnorm2d(X, normW, normB, 1e-5)), outW, outB, { padding: 1 }); // (B, 3, H, W)
      return img.dtype === 'f32' ? img : bk.cast(img, 'f32');
    });

    const toDev = (z: TensorInput): Tensor => (isHost(z) ? bk.fromArray(z.data, z.shape, 'f32') : z.device === bk.name ? z : bk.upload(z));
    let disposed = false;
    const alive = (): void => { if (disposed) throw new Error('DC-AE decoder: used after dispose()'); };
    return {
      config: cfg,
      dtype,
      bytes,
      decode: (z, opts = {}) => {
        alive();
        const dz = toDev(z);
        try { return decodeDevice(dz, opts.capture, opts.onBlock); } finally { if (dz !== z) dz.dispose(); }
      },
      decodeTiled: (z, opts = {}) => {
        alive();
        const host: HostArray = isHost(z) ? z : { data: z.toFloat32(), shape: z.shape };
        const out = tiledDecode(host, cfg.spatialCompression, (tile) => {
          const dz = bk.fromArray(tile.data, tile.shape, 'f32');
          try {
            const img = decodeDevice(dz, undefined, opts.onBlock);
            try { return img.toFloat32(); } finally { img.dispose(); }
          } finally { dz.dispose(); }
        }, opts);
        return bk.fromArray(out.data, out.shape, 'f32');
      },
      dispose: () => {
        if (disposed) return;
        disposed = true;
        for (const t of [...owned].reverse()) if (!t.disposed) t.dispose();
      },
    };
  } catch (e) {
    for (const t of [...owned].reverse()) if (!t.disposed) t.dispose();
    throw e;
  }
}

// ------------------------------------------------------------------------------------------------
// Tiled decoding

/** Tile starts along one axis: evenly spread so that consecutive tiles overlap by ≥ `overlap`
 *  and the last tile ends at the edge. */
export function tileStarts(size: number, tile: number, overlap: number): number[] {
  if (size <= tile) return [0];
  const n = Math.ceil((size - overlap) / (tile - overlap));
  const starts: number[] = [];
  for (let k = 0; k < n; k++) starts.push(Math.round((k * (size - tile)) / (n - 1)));
  return starts;
}

/** Per-pixel blend weight along one axis of a tile of `len` pixels: a linear ramp over the part
 *  shared with the previous / next tile, 1 elsewhere. Never 0, so every pixel is covered. */
function rampWeights(len: number, overlapPrev: number, overlapNext: number): Float32Array {
  const w = new Float32Array(len).fill(1);
  for (let j = 0; j < overlapPrev; j++) w[j] = Math.min(w[j]!, (j + 0.5) / overlapPrev);
  for (let j = 0; j < overlapNext; j++) w[len - 1 - j] = Math.min(w[len - 1 - j]!, (j + 0.5) / overlapNext);
  return w;
}

/**
 * Decodes a latent (B, c, h, w) as overlapping tiles and blends them: each output pixel is the
 * weighted mean of the tiles covering it, with separable linear ramps across every overlap, so
 * seams are continuous. `decodeTile` maps a latent tile to its image (B, 3, f·th, f·tw) on the host.
 * When a tile decode is the exact restriction of a global decode (e.g. a per-pixel map), the result
 * equals the untiled decode.
 */
export function tiledDecode(
  z: HostArray, factor: number, decodeTile: (tile: HostArray) => Float32Array, opts: TiledDecodeOptions = {},
): HostArray {
  const tile = opts.tile ?? 32, overlap = opts.overlap ?? 4;
  if (!(Number.isInteger(tile) && Number.isInteger(overlap) && tile >= 1 && overlap >= 0 && overlap < tile)) {
    throw new Error(`DC-AE tiled decode: tile ${tile} / overlap ${overlap} must be integers with 0 ≤ overlap < tile`);
  }
  const [B, c, h, w] = z.shape as [number, number, number, number];
  const ys = tileStarts(h, tile, overlap), xs = tileStarts(w, tile, overlap);
  const H = h * factor, W = w * factor;
  let outC = 0;
  let acc: Float32Array | undefined;
  const wsum = new Float32Array(H * W);
  const total = ys.length * xs.length;
  let done = 0;
  for (let iy = 0; iy < ys.length; iy++) {
    const y0 = ys[iy]!, th = Math.min(tile, h - y0);
    for (let ix = 0; ix < xs.length; ix++) {
      const x0 = xs[ix]!, tw = Math.min(tile, w - x0);
      // (B, c, th, tw) latent tile
      const t = new Float32Array(B * c * th * tw);
      for (let bc = 0; bc < B * c; bc++) {
        for (let r = 0; r < th; r++) {
          const src = (bc * h + y0 + r) * w + x0;
          t.set(z.data.subarray(src, src + tw), (bc * th + r) * tw);
        }
      }
      const img = decodeTile({ data: t, shape: [B, c, th, tw] });
      const TH = th * factor, TW = tw * factor;
      if (img.length % (B * TH * TW) !== 0) throw new Error(`DC-AE tiled decode: tile decode returned ${img.length} values, not a multiple of B·${TH}·${TW}`);
      const C = img.length / (B * TH * TW);
      if (!acc) { outC = C; acc = new Float32Array(B * C * H * W); }
      const prevY = iy > 0 ? (ys[iy - 1]! + tile - y0) * factor : 0;
      const nextY = iy < ys.length - 1 ? (y0 + th - ys[iy + 1]!) * factor : 0;
      const prevX = ix > 0 ? (xs[ix - 1]! + tile - x0) * factor : 0;
      const nextX = ix < xs.length - 1 ? (x0 + tw - xs[ix + 1]!) * factor : 0;
      const wy = rampWeights(TH, Math.max(0, prevY), Math.max(0, nextY));
      const wx = rampWeights(TW, Math.max(0, prevX), Math.max(0, nextX));
      const Y0 = y0 * factor, X0 = x0 * factor;
      for (let r = 0; r < TH; r++) {
        for (let q = 0; q < TW; q++) wsum[(Y0 + r) * W + X0 + q]! += wy[r]! * wx[q]!;
      }
      for (let bc = 0; bc < B * C; bc++) {
        for (let r = 0; r < TH; r++) {
          const wr = wy[r]!;
          const src = (bc * TH + r) * TW, dst = (bc * H + Y0 + r) * W + X0;
          for (let q = 0; q < TW; q++) acc[dst + q]! += img[src + q]! * wr * wx[q]!;
        }
      }
      opts.onTile?.(++done, total);
    }
  }
  const out = acc!;
  for (let bc = 0; bc < B * outC; bc++) {
    const o = bc * H * W;
    for (let i = 0; i < H * W; i++) out[o + i]! /= wsum[i]!;
  }
  return { data: out, shape: [B, outC, H, W] };
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
  const cfg = readDcaeConfig(dir);
  const native = opts.native ?? (await importNative());
  const ckpt = native.openSafetensors(pickSafetensors(dir, { variant: opts.variant, stems: ['diffusion_pytorch_model', 'model'] }));
  try {
    return buildDcaeDecoder(cfg, ckpt, backend, dtype, ckpt.files.join(', '));
  } finally {
    ckpt.close();
  }
}
