// What the DC-AE encoder and decoder share (shared/spec/sana.md §4): the config helpers, the two block kinds
// (ResBlock and EfficientViTBlock = LiteMLA + GLUMBConv) with their weight lists, loaders and
// forward passes, and the tiling plan with linear seam blending. Each half (dcae.ts,
// dcae_encoder.ts) adds only its own stems and resamplers.
// Letters: B batch, C stage width, H·W grid, N = H·W pixels, G heads of hd channels.
import { join } from 'node:path';
import type { Backend, DType, Tensor } from '../../native/api.ts';
import { conv, linear, rmsNormAffine, type Layout } from './layout.ts';
import { isHost, type HostArray, type TensorInput } from './tensor_input.ts';
import type { WeightSet, WeightSource } from './weight_set.ts';
import { readJsonConfig, withCheckpoint, type FolderLoadOptions } from './weights.ts';

export type DcaeBlockType = 'ResBlock' | 'EfficientViTBlock';

/** A per-stage config value given once (applies to every stage) or as a list of `n`. */
export function perStage<T>(v: unknown, n: number, key: string, file: string, check: (x: unknown) => x is T): T[] {
  if (check(v)) return new Array<T>(n).fill(v);
  if (Array.isArray(v) && v.length === n && v.every(check)) return v as T[];
  throw new Error(`${file}: "${key}" must be one value or a list of ${n} (got ${JSON.stringify(v)})`);
}

/** A numeric config value (`d` when absent). */
export function configNumber(raw: Record<string, unknown>, key: string, d: number, file: string): number {
  const v = raw[key] ?? d;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${file}: "${key}" must be a number (got ${JSON.stringify(raw[key])})`);
  return v;
}

/** `<half>_qkv_multiscales`: per stage, the odd kernel sizes of the multi-scale q/k/v branches. */
export function qkvMultiscales(raw: Record<string, unknown>, key: string, S: number, file: string): number[][] {
  const ms = raw[key] ?? [[], [], [], [5], [5], [5]];
  if (!Array.isArray(ms) || ms.length !== S || !ms.every((l) => Array.isArray(l) && l.every((k) => typeof k === 'number' && k % 2 === 1))) {
    throw new Error(`${file}: ${key} must be ${S} lists of odd kernel sizes (got ${JSON.stringify(ms)})`);
  }
  return ms as number[][];
}

/** What the decoder and encoder parts of an AutoencoderDC config share (diffusers keys `<half>_*`). */
export interface DcaeHalfConfig {
  latentChannels: number;
  attentionHeadDim: number;
  blockTypes: DcaeBlockType[];
  blockOutChannels: number[];
  layersPerBlock: number[];
  qkvMultiscales: number[][];
  scalingFactor: number;
  /** 2^(stages − 1): image pixels per latent pixel along each axis. */
  spatialCompression: number;
}

/**
 * Parses and checks the keys both halves read: `<half>_block_out_channels` (or the shared
 * `block_out_channels`), layers, block types, q/k/v scales, and the stage widths the attention
 * heads need. `defaults`: diffusers' values where the half has them (the encoder's keys are often
 * absent from decoder-era configs); without one the key is required.
 */
export function parseDcaeHalf(raw: Record<string, unknown>, half: 'decoder' | 'encoder', file: string, defaults: { blockOutChannels?: number[]; layersPerBlock?: number[] } = {}): DcaeHalfConfig {
  if (raw._class_name !== undefined && raw._class_name !== 'AutoencoderDC') {
    throw new Error(`${file}: _class_name is ${JSON.stringify(raw._class_name)}, expected "AutoencoderDC"`);
  }
  const nums = (key: string, v: unknown): number[] => {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
      throw new Error(`${file}: "${key}" must be a list of non-negative integers (got ${JSON.stringify(v)})`);
    }
    return v as number[];
  };
  const blockOutChannels = nums(`${half}_block_out_channels`, raw[`${half}_block_out_channels`] ?? raw.block_out_channels ?? defaults.blockOutChannels);
  const S = blockOutChannels.length;
  const layersPerBlock = nums(`${half}_layers_per_block`, raw[`${half}_layers_per_block`] ?? defaults.layersPerBlock);
  if (layersPerBlock.length !== S) throw new Error(`${file}: ${half}_layers_per_block has ${layersPerBlock.length} entries for ${S} stages`);
  const isStr = (x: unknown): x is string => typeof x === 'string';
  const blockTypes = perStage(raw[`${half}_block_types`] ?? 'ResBlock', S, `${half}_block_types`, file, isStr);
  for (const t of blockTypes) if (t !== 'ResBlock' && t !== 'EfficientViTBlock') throw new Error(`${file}: ${half} block type ${t} is not supported (ResBlock, EfficientViTBlock)`);
  const num = (key: string, d: number): number => configNumber(raw, key, d, file);
  const cfg: DcaeHalfConfig = {
    latentChannels: num('latent_channels', 32),
    attentionHeadDim: num('attention_head_dim', 32),
    blockTypes: blockTypes as DcaeBlockType[],
    blockOutChannels,
    layersPerBlock,
    qkvMultiscales: qkvMultiscales(raw, `${half}_qkv_multiscales`, S, file),
    scalingFactor: num('scaling_factor', 1.0),
    spatialCompression: 2 ** (S - 1),
  };
  for (let i = 0; i < S; i++) {
    if (blockTypes[i] === 'EfficientViTBlock' && blockOutChannels[i]! % cfg.attentionHeadDim !== 0) {
      throw new Error(`${file}: ${half} stage ${i} width ${blockOutChannels[i]} is not a multiple of attention_head_dim ${cfg.attentionHeadDim}`);
    }
  }
  return cfg;
}

/** Reads `<half>_in/out_shortcut` (default on): the channel-averaging shortcut between the last
 *  stage and the latent needs the last width to be a multiple of the latent channels. */
export function latentShortcut(raw: Record<string, unknown>, key: string, half: DcaeHalfConfig, file: string): boolean {
  const on = raw[key] === undefined ? true : raw[key] === true;
  const last = half.blockOutChannels[half.blockOutChannels.length - 1]!;
  if (on && last % half.latentChannels !== 0) throw new Error(`${file}: ${key} needs the last width ${last} to be a multiple of latent_channels ${half.latentChannels}`);
  return on;
}

/** What a loaded decoder or encoder has besides its run methods. */
export interface DcaeHalfModel<C> {
  readonly config: C;
  readonly dtype: DType;
  /** Bytes of the weights it owns (the model cache's accounting). */
  readonly bytes: number;
  dispose(): void;
}

/** DC-AE computes in f32 or bf16 only: its activations overflow fp16 (shared/spec/sana.md §8). */
export function checkDcaeDtype(what: string, dtype: DType): void {
  if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`${what}: compute dtype ${dtype} is not supported (f32 or bf16; fp16 overflows, shared/spec/sana.md §8)`);
}

/** Appends the tensors of one block at `b` (ending in '.'), in state_dict order. */
export function blockLayout(t: Layout, b: string, type: DcaeBlockType, C: number, hd: number, scales: readonly number[]): void {
  if (type === 'ResBlock') {
    conv(t, `${b}conv1`, C, C, 3, true);
    conv(t, `${b}conv2`, C, C, 3, false);
    rmsNormAffine(t, `${b}norm`, C);
    return;
  }
  const I = C; // heads = C / hd (mult 1), inner = heads · hd
  for (const n of ['to_q', 'to_k', 'to_v']) linear(t, `${b}attn.${n}`, I, C, false);
  scales.forEach((k, s) => {
    conv(t, `${b}attn.to_qkv_multiscale.${s}.proj_in`, 3 * I, 3 * I, k, false, 3 * I);
    conv(t, `${b}attn.to_qkv_multiscale.${s}.proj_out`, 3 * I, 3 * I, 1, false, (3 * I) / hd);
  });
  linear(t, `${b}attn.to_out`, C, I * (1 + scales.length), false);
  rmsNormAffine(t, `${b}attn.norm_out`, C);
  conv(t, `${b}conv_out.conv_inverted`, 8 * C, C, 1, true);
  conv(t, `${b}conv_out.conv_depth`, 8 * C, 8 * C, 3, true, 8 * C);
  conv(t, `${b}conv_out.conv_point`, C, 4 * C, 1, false);
  rmsNormAffine(t, `${b}conv_out.norm`, C);
}

export interface ResBlockW { kind: 'res'; c1W: Tensor; c1B: Tensor; c2W: Tensor; nW: Tensor; nB: Tensor; act: 'silu' | 'relu' }
export interface EvitBlockW {
  kind: 'evit';
  qkvW: Tensor; // (3I, C, 1, 1) fused to_q|to_k|to_v
  scales: Array<{ k: number; inW: Tensor; outW: Tensor }>;
  outW: Tensor; // (C, I·(1+S), 1, 1)
  anW: Tensor; anB: Tensor;
  invW: Tensor; invB: Tensor; dwW: Tensor; dwB: Tensor; ptW: Tensor; gnW: Tensor; gnB: Tensor;
}
export type BlockW = ResBlockW | EvitBlockW;

export function loadBlock(w: WeightSet, b: string, type: DcaeBlockType, C: number, scales: readonly number[], act: 'silu' | 'relu'): BlockW {
  if (type === 'ResBlock') {
    return { kind: 'res', c1W: w.get(`${b}conv1.weight`), c1B: w.get(`${b}conv1.bias`), c2W: w.get(`${b}conv2.weight`), nW: w.get(`${b}norm.weight`), nB: w.get(`${b}norm.bias`), act };
  }
  const I = C;
  return {
    kind: 'evit',
    qkvW: w.cat([`${b}attn.to_q.weight`, `${b}attn.to_k.weight`, `${b}attn.to_v.weight`], [3 * I, C, 1, 1]),
    scales: scales.map((k, s) => ({ k, inW: w.get(`${b}attn.to_qkv_multiscale.${s}.proj_in.weight`), outW: w.get(`${b}attn.to_qkv_multiscale.${s}.proj_out.weight`) })),
    outW: w.as(`${b}attn.to_out.weight`, [C, I * (1 + scales.length), 1, 1]),
    anW: w.get(`${b}attn.norm_out.weight`), anB: w.get(`${b}attn.norm_out.bias`),
    invW: w.get(`${b}conv_out.conv_inverted.weight`), invB: w.get(`${b}conv_out.conv_inverted.bias`),
    dwW: w.get(`${b}conv_out.conv_depth.weight`), dwB: w.get(`${b}conv_out.conv_depth.bias`),
    ptW: w.get(`${b}conv_out.conv_point.weight`),
    gnW: w.get(`${b}conv_out.norm.weight`), gnB: w.get(`${b}conv_out.norm.bias`),
  };
}

// ------------------------------------------------------------------------------------------------
// Channels-last blocks (the decoder): activations (B, H, W, C) from conv_in to conv_out, so the
// 1×1 convolutions are linears over pixels, GLUMBConv is the DiT's token-major depthwise+GLU op,
// LiteMLA's attention reads q/k/v in place (linearAttentionTokens) and oneDNN runs the 3×3
// convolutions on NHWC without reordering activations for every call.

/** The ResBlock's weights serve both layouts (conv2dNhwc takes OIHW kernels as conv2d does). */
export type ResBlockNhwcW = ResBlockW;
export interface EvitBlockNhwcW {
  kind: 'evit';
  /** (3I, C): to_q|to_k|to_v with rows reordered (heads, 3, hd) → (3, heads, hd), see headMajor. */
  qkvW: Tensor;
  /** the multi-scale branches' depthwise (3I, 1, k, k) and grouped 1×1 (3I, hd, 1, 1), rows reordered the same way */
  scales: Array<{ k: number; inW: Tensor; outW: Tensor }>;
  outW: Tensor; // (C, I·(1+S))
  anW: Tensor; anB: Tensor;
  invW: Tensor; invB: Tensor; // (8C, C), (8C)
  dwW: Tensor; dwB: Tensor; // (8C, 1, 3, 3), (8C)
  ptW: Tensor; // (C, 4C)
  gnW: Tensor; gnB: Tensor;
}
export type BlockNhwcW = ResBlockNhwcW | EvitBlockNhwcW;

/**
 * Rows of t (3I, ...) in diffusers' LiteMLA channel order, where each run of 3·hd consecutive
 * channels of the q|k|v concatenation is one head's [query | key | value] (heads, 3, hd), reordered
 * to (3, heads, hd): the layout linearAttentionTokens reads, (B, N, 3, H, d). The depthwise and the
 * grouped (hd-channel groups) multi-scale convolutions act per channel / per group, so reordering
 * their rows the same way keeps them exact.
 */
function headMajor(bk: Backend, t: Tensor, hd: number): Tensor {
  const rows = t.shape[0]!, rest = t.numel / rows, heads = rows / (3 * hd);
  const v = bk.reshape(t, [heads, 3, hd * rest]);
  const p = bk.permute(v, [1, 0, 2]); // (3, heads, hd·rest)
  v.dispose();
  const out = bk.reshape(p, [...t.shape]);
  p.dispose();
  return out;
}

/** One block's weights for the channels-last forward; reordered tensors are loaded from `src`
 *  straight into `w` (no second copy of the checkpoint order is kept). */
export function loadBlockNhwc(w: WeightSet, src: WeightSource, bk: Backend, b: string, type: DcaeBlockType, C: number, hd: number, scales: readonly number[], act: 'silu' | 'relu'): BlockNhwcW {
  if (type === 'ResBlock') {
    return { kind: 'res', c1W: w.get(`${b}conv1.weight`), c1B: w.get(`${b}conv1.bias`), c2W: w.get(`${b}conv2.weight`), nW: w.get(`${b}norm.weight`), nB: w.get(`${b}norm.bias`), act };
  }
  const I = C;
  const reordered = (names: string[]): Tensor => {
    const parts = names.map((n) => src.load(n, bk, w.dtype));
    const whole = parts.length === 1 ? parts[0]! : bk.concat(parts, 0);
    if (whole !== parts[0]) free(...parts);
    const r = headMajor(bk, whole, hd);
    whole.dispose();
    return w.keep(r);
  };
  return {
    kind: 'evit',
    qkvW: reordered([`${b}attn.to_q.weight`, `${b}attn.to_k.weight`, `${b}attn.to_v.weight`]),
    scales: scales.map((k, s) => ({ k, inW: reordered([`${b}attn.to_qkv_multiscale.${s}.proj_in.weight`]), outW: reordered([`${b}attn.to_qkv_multiscale.${s}.proj_out.weight`]) })),
    outW: w.get(`${b}attn.to_out.weight`),
    anW: w.get(`${b}attn.norm_out.weight`), anB: w.get(`${b}attn.norm_out.bias`),
    invW: w.as(`${b}conv_out.conv_inverted.weight`, [8 * C, C]), invB: w.get(`${b}conv_out.conv_inverted.bias`),
    dwW: w.get(`${b}conv_out.conv_depth.weight`), dwB: w.get(`${b}conv_out.conv_depth.bias`),
    ptW: w.as(`${b}conv_out.conv_point.weight`, [C, 4 * I]),
    gnW: w.get(`${b}conv_out.norm.weight`), gnB: w.get(`${b}conv_out.norm.bias`),
  };
}

/** One channels-last block's forward pass, X (B, H, W, C); X is left to the caller. */
export function runBlockNhwc(bk: Backend, X: Tensor, w: BlockNhwcW, hd: number): Tensor {
  return w.kind === 'res' ? resBlockNhwc(bk, X, w) : evitBlockNhwc(bk, X, w, hd);
}

/** RMSNorm over the channels (last dim) of y, then + res (B, H, W, C): the blocks' norm →
 *  residual tail, one pass. y is freed. */
function normResidual(bk: Backend, y: Tensor, nW: Tensor, nB: Tensor, res: Tensor): Tensor {
  const out = view(bk, bk.rmsnormAct(y, nW, nB, 1e-5, 'none', res), [...res.shape]);
  free(y);
  return out;
}

function evitBlockNhwc(bk: Backend, X: Tensor, w: EvitBlockNhwcW, hd: number): Tensor {
  const [B, H, W, C] = X.shape as [number, number, number, number];
  const N = H * W;
  // LiteMLA. qkv channels are (3, heads, hd) (headMajor); each multi-scale branch keeps that order.
  const qkv = bk.linear(X, w.qkvW); // (B, H, W, 3I)
  const branches = [qkv];
  for (const s of w.scales) {
    const dw = bk.conv2dNhwc(qkv, s.inW, undefined, { padding: (s.k - 1) / 2, groups: 3 * C }); // (B, H, W, 3I)
    branches.push(bk.conv2dNhwc(dw, s.outW, undefined, { groups: (3 * C) / hd })); // (B, H, W, 3I)
    free(dw);
  }
  // (B·N, 3, I) per branch → (B·N, 3, I·(1+S)): heads of the plain branch first, as diffusers
  // concatenates the branches before splitting heads.
  let T: Tensor;
  if (branches.length === 1) T = view(bk, qkv, [B, N, 3 * C]);
  else {
    const parts = branches.map((t) => view(bk, t, [B * N, 3, C]));
    T = view(bk, bk.concat(parts, 2), [B, N, 3 * C * branches.length]);
    free(...parts);
  }
  const G = branches.length * (C / hd);
  const o = bk.linearAttentionTokens(T, G, 1e-15, true); // (B, N, G·hd)
  free(T);
  const proj = bk.linear(o, w.outW); // (B, N, C)
  free(o);
  const X1 = normResidual(bk, proj, w.anW, w.anB, X);
  // GLUMBConv (expand 4): 1×1 → SiLU → depthwise 3×3 → value·SiLU(gate) → 1×1 → RMSNorm → residual
  const u = view(bk, bk.linear(X1, w.invW, w.invB), [B, N, 8 * C]); // (B, N, 8C)
  const glu = bk.dwconv3x3GluTokens(u, w.dwW, w.dwB, [H, W], true); // (B, N, 4C)
  free(u);
  const pt = bk.linear(glu, w.ptW); // (B, N, C)
  free(glu);
  const out = normResidual(bk, pt, w.gnW, w.gnB, X1);
  free(X1);
  return out;
}

function resBlockNhwc(bk: Backend, X: Tensor, w: ResBlockNhwcW): Tensor {
  const a = bk.conv2dNhwc(X, w.c1W, w.c1B, { padding: 1, act: w.act }); // (B, H, W, C)
  const c2 = bk.conv2dNhwc(a, w.c2W, undefined, { padding: 1 });
  free(a);
  return normResidual(bk, c2, w.nW, w.nB, X);
}

// Intermediates are freed as soon as they are consumed (the enclosing scope would free them
// too, but only at the end of the block): at 1024² a stage-0 map is 256–512 MB.
export const free = (...ts: Tensor[]): void => ts.forEach((t) => t.dispose());

/** reshape that hands the storage over to the view (storage is refcounted: the base must go too). */
export function view(bk: Backend, t: Tensor, shape: number[]): Tensor {
  const v = bk.reshape(t, shape);
  t.dispose();
  return v;
}

/** One block's forward pass; X is left to the caller. */
export function runBlock(bk: Backend, X: Tensor, w: BlockW, hd: number): Tensor {
  return w.kind === 'res' ? resBlock(bk, X, w) : evitBlock(bk, X, w, hd);
}

function evitBlock(bk: Backend, X: Tensor, w: EvitBlockW, hd: number): Tensor {
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
  const T5 = view(bk, T, [B, G, 3, hd, N]);
  const t5 = bk.permute(T5, [2, 0, 1, 4, 3]); // (3, B, G, N, hd)
  free(T5);
  const [q, k, v] = [0, 1, 2].map((i) => view(bk, bk.slice(t5, 0, i, i + 1), [B, G, N, hd])) as [Tensor, Tensor, Tensor];
  free(t5);
  // The quadratic path diffusers takes when N ≤ hd is the same normalised ReLU-kernel
  // attention evaluated in another order, so one op serves both.
  const o = bk.linearAttention(q, k, v, 1e-15, true); // (B, G, N, hd)
  free(q, k, v);
  const oImg = view(bk, bk.permute(o, [0, 1, 3, 2]), [B, G * hd, H, W]); // (B, I·(1+S), H, W)
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
}

function resBlock(bk: Backend, X: Tensor, w: ResBlockW): Tensor {
  const h1 = bk.conv2d(X, w.c1W, w.c1B, { padding: 1 }); // (B, C, H, W)
  const a = w.act === 'silu' ? bk.silu(h1) : bk.relu(h1);
  free(h1);
  const c2 = bk.conv2d(a, w.c2W, undefined, { padding: 1 });
  free(a);
  const h2 = bk.rmsnorm2d(c2, w.nW, w.nB, 1e-5);
  free(c2);
  return bk.add(h2, X);
}

// ------------------------------------------------------------------------------------------------
// Tiling

/** Options of a tiled encode / decode; sizes are in latent pixels. */
export interface TileOptions {
  /** Largest latent tile side (default 32 = 1024 px); tiles shrink to the smallest common side that
   *  still covers the grid with `overlap`, so they may come out smaller. */
  tile?: number;
  /** Latent overlap between neighbouring tiles, blended linearly (default 2 = 64 px, ComfyUI's
   *  VAEDecodeTiled default and diffusers' AutoencoderDC blend width). */
  overlap?: number;
  /** Called after each tile with (done, total). */
  onTile?: (done: number, total: number) => void;
  /** Called between the blocks of every tile (an interrupt thrown there abandons the run). */
  onBlock?: () => void;
}

/** Defaults of `TileOptions` (latent pixels). */
export const TILE_DEFAULTS = { tile: 32, overlap: 2 } as const;

/** How one axis is cut: tiles of `len` unit pixels starting at `starts` (ascending, first 0, last
 *  `size − len`). */
export interface TileAxis {
  starts: number[];
  len: number;
}

/**
 * Plans the tiles along one axis of `size` unit pixels for tiles of at most `tile` overlapping by
 * `overlap`: the fewest tiles that can cover the axis, n = ⌈(size − overlap)/(tile − overlap)⌉, then
 * the smallest common length that still covers it, len = ⌈(size + (n − 1)·overlap)/n⌉ ≤ tile. The
 * tiles' total length is then size + (n − 1)·overlap + (< n): only the overlaps are decoded twice
 * (full-size tiles spread over the axis would overlap by up to half a tile). The < n left over by the
 * integer division is spread over the seams, so neighbours overlap by `overlap` or `overlap + 1`.
 * Every tile has the same length (no smaller edge tile): a backend's shape-keyed kernels and
 * primitives are built once per run.
 */
export function tileAxis(size: number, tile: number, overlap: number): TileAxis {
  if (size <= tile) return { starts: [0], len: size };
  const n = Math.ceil((size - overlap) / (tile - overlap));
  const len = Math.ceil((size + (n - 1) * overlap) / n);
  const starts: number[] = [];
  // steps of (size − len)/(n − 1) ∈ [len − overlap − 1, len − overlap], rounded
  for (let k = 0; k < n; k++) starts.push(Math.round((k * (size - len)) / (n - 1)));
  return { starts, len };
}

/** Tile starts along one axis (`tileAxis(...).starts`). */
export function tileStarts(size: number, tile: number, overlap: number): number[] {
  return tileAxis(size, tile, overlap).starts;
}

/** One tile's blend weights along one axis, in output pixels, and the range [solo[0], solo[1]) of
 *  its pixels that no other tile covers (weight exactly 1 there). */
export interface AxisBlend {
  w: Float64Array;
  solo: [number, number];
}

/**
 * Blend weights of every tile of `axis` at output scale `f`: a linear ramp across each band shared
 * with a neighbour ((j + ½)/band up, its mirror down, so two tiles' ramps already add to 1), then
 * divided by the sum over the tiles covering each pixel, so the weights sum to 1 at every pixel
 * even where more than two tiles meet (overlap > len/2). 2-D weights are products of the two
 * axes' weights, which therefore sum to 1 as well: no per-pixel weight image is needed.
 */
export function axisBlend(axis: TileAxis, f: number): AxisBlend[] {
  const { starts, len } = axis;
  const n = starts.length, L = len * f;
  const size = (starts[n - 1]! + len) * f;
  const ramps: Float64Array[] = [];
  const sum = new Float64Array(size); // Σ ramps at each output pixel of the axis
  for (let k = 0; k < n; k++) {
    const prev = k > 0 ? (starts[k - 1]! + len - starts[k]!) * f : 0; // band shared with tile k − 1
    const next = k < n - 1 ? (starts[k]! + len - starts[k + 1]!) * f : 0; // band shared with tile k + 1
    const r = new Float64Array(L).fill(1);
    for (let j = 0; j < Math.min(prev, L); j++) r[j] = Math.min(r[j]!, (j + 0.5) / prev);
    for (let j = 0; j < Math.min(next, L); j++) r[L - 1 - j] = Math.min(r[L - 1 - j]!, (j + 0.5) / next);
    const o = starts[k]! * f;
    for (let j = 0; j < L; j++) sum[o + j]! += r[j]!;
    ramps.push(r);
  }
  return ramps.map((r, k) => {
    const o = starts[k]! * f;
    for (let j = 0; j < L; j++) r[j] = r[j]! / sum[o + j]!;
    // tile k alone from the end of tile k − 1 (the furthest-reaching earlier tile: equal lengths) to
    // the start of tile k + 1
    const from = k > 0 ? Math.min(L, (starts[k - 1]! + len - starts[k]!) * f) : 0;
    const to = k < n - 1 ? Math.max(from, (starts[k + 1]! - starts[k]!) * f) : L;
    for (let j = from; j < to; j++) r[j] = 1;
    return { w: r, solo: [from, to] as [number, number] };
  });
}

/**
 * Runs `fn` on overlapping tiles of `x` (B, c, u·inScale, v·inScale) laid out on the unit grid
 * (u, v) (`tileAxis` per axis: every tile th × tw) and blends the outputs (B, C, th·outScale,
 * tw·outScale) into the result: each output pixel is the weighted mean of the tiles covering it,
 * with separable linear ramps across every overlap (`axisBlend`), so seams are continuous.
 * Decoding uses (1, f), encoding (f, 1). Only the overlap bands are multiplied and added; the rest
 * of a tile is copied. Host memory: the output, one input tile and the tile's output. When a
 * tile's output is the exact restriction of the global map (e.g. a per-pixel map), the result
 * equals the untiled one up to float rounding.
 */
export function tiledMap(
  x: HostArray, inScale: number, outScale: number, fn: (tile: HostArray) => Float32Array, opts: TileOptions = {}, who = 'DC-AE tiled decode',
): HostArray {
  const tile = opts.tile ?? TILE_DEFAULTS.tile, overlap = opts.overlap ?? TILE_DEFAULTS.overlap;
  if (!(Number.isInteger(tile) && Number.isInteger(overlap) && tile >= 1 && overlap >= 0 && overlap < tile)) {
    throw new Error(`${who}: tile ${tile} / overlap ${overlap} must be integers with 0 ≤ overlap < tile`);
  }
  const [B, c, hIn, wIn] = x.shape as [number, number, number, number];
  if (hIn % inScale !== 0 || wIn % inScale !== 0) throw new Error(`${who}: input ${hIn}x${wIn} is not a multiple of ${inScale}`);
  const h = hIn / inScale, w = wIn / inScale; // unit grid
  const ay = tileAxis(h, tile, overlap), ax = tileAxis(w, tile, overlap);
  const f = outScale, s = inScale;
  const by = axisBlend(ay, f), bx = axisBlend(ax, f);
  const th = ay.len, tw = ax.len;
  const H = h * f, W = w * f;
  const TIH = th * s, TIW = tw * s, TH = th * f, TW = tw * f;
  const t = new Float32Array(B * c * TIH * TIW); // (B, c, th·s, tw·s) input tile, reused: one shape
  let outC = 0;
  let acc: Float32Array | undefined;
  const total = ay.starts.length * ax.starts.length;
  let done = 0;
  for (let iy = 0; iy < ay.starts.length; iy++) {
    const y0 = ay.starts[iy]!;
    const { w: wy, solo: [sy0, sy1] } = by[iy]!;
    for (let ix = 0; ix < ax.starts.length; ix++) {
      const x0 = ax.starts[ix]!;
      const { w: wx, solo: [sx0, sx1] } = bx[ix]!;
      for (let bc = 0; bc < B * c; bc++) {
        for (let r = 0; r < TIH; r++) {
          const src = (bc * hIn + y0 * s + r) * wIn + x0 * s;
          t.set(x.data.subarray(src, src + TIW), (bc * TIH + r) * TIW);
        }
      }
      const out = fn({ data: t, shape: [B, c, TIH, TIW] }); // (B, C, TH, TW)
      if (out.length % (B * TH * TW) !== 0) throw new Error(`${who}: a tile returned ${out.length} values, not a multiple of B·${TH}·${TW}`);
      const C = out.length / (B * TH * TW);
      if (!acc) {
        outC = C;
        acc = new Float32Array(B * C * H * W);
      } else if (C !== outC) throw new Error(`${who}: a tile returned ${C} channels, the first ${outC}`);
      const Y0 = y0 * f, X0 = x0 * f;
      for (let bc = 0; bc < B * C; bc++) {
        for (let r = 0; r < TH; r++) {
          const src = (bc * TH + r) * TW, dst = (bc * H + Y0 + r) * W + X0;
          if (r >= sy0 && r < sy1) {
            // a row only this tile covers vertically: blend the side bands, copy the middle
            for (let q = 0; q < sx0; q++) acc[dst + q]! += out[src + q]! * wx[q]!;
            acc.set(out.subarray(src + sx0, src + sx1), dst + sx0);
            for (let q = sx1; q < TW; q++) acc[dst + q]! += out[src + q]! * wx[q]!;
          } else {
            const wr = wy[r]!;
            for (let q = 0; q < TW; q++) acc[dst + q]! += out[src + q]! * (wr * wx[q]!);
          }
        }
      }
      opts.onTile?.(++done, total);
    }
  }
  return { data: acc!, shape: [B, outC, H, W] };
}

// Entry points

/** Options of a whole-image run of either half. */
export interface HalfRunOptions {
  capture?: (name: string, t: Tensor) => void;
  /** Called between blocks: a throw from it (an interrupt) abandons the run, its tensors freed. */
  onBlock?: () => void;
}

/**
 * What both halves offer around their device function `run`: the whole-image call (host arrays
 * uploaded, tensors of another backend copied over), the tiled call (`tiledFn` plans the tiles;
 * one tile is on the device at a time) and disposal, after which every call is an error.
 */
export function halfEntryPoints(
  bk: Backend,
  what: string,
  run: (x: Tensor, capture?: HalfRunOptions['capture'], onBlock?: () => void) => Tensor,
  tiledFn: (x: HostArray, runTile: (tile: HostArray) => Float32Array, opts: TileOptions) => HostArray,
  disposeAll: () => void,
): { whole(x: TensorInput, opts?: HalfRunOptions): Tensor; tiled(x: TensorInput, opts?: TileOptions): Tensor; dispose(): void } {
  let disposed = false;
  const alive = (): void => {
    if (disposed) throw new Error(`${what}: used after dispose()`);
  };
  const toDev = (x: TensorInput): Tensor => (isHost(x) ? bk.fromArray(x.data, x.shape, 'f32') : x.device === bk.name ? x : bk.upload(x));
  return {
    whole: (x, opts = {}) => {
      alive();
      const dx = toDev(x);
      try { return run(dx, opts.capture, opts.onBlock); } finally { if (dx !== x) dx.dispose(); }
    },
    tiled: (x, opts = {}) => {
      alive();
      const host: HostArray = isHost(x) ? x : { data: x.toFloat32(), shape: x.shape };
      const out = tiledFn(host, (tile) => {
        const dt = bk.fromArray(tile.data, tile.shape, 'f32');
        try {
          const y = run(dt, undefined, opts.onBlock);
          try { return y.toFloat32(); } finally { y.dispose(); }
        } finally { dt.dispose(); }
      }, opts);
      return bk.fromArray(out.data, out.shape, 'f32');
    },
    dispose: () => {
      if (disposed) return;
      disposed = true;
      disposeAll();
    },
  };
}

/** Builds one half from a diffusers `vae/` folder (config.json + checkpoint); the other half's
 *  tensors are never read. */
export async function loadHalfFromFolder<C, M>(
  dir: string, backend: Backend, dtype: DType, opts: FolderLoadOptions,
  parse: (raw: Record<string, unknown>, file: string) => C,
  build: (cfg: C, src: WeightSource, backend: Backend, dtype: DType, where: string) => M,
): Promise<M> {
  const cfg = parse(readJsonConfig(dir), join(dir, 'config.json'));
  return withCheckpoint(dir, opts, ['diffusion_pytorch_model', 'model'], (ckpt) => build(cfg, ckpt, backend, dtype, ckpt.files.join(', ')));
}
