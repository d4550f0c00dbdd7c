// DC-AE decoder: config parsing, the real decoder's key list (spec Appendix B), the golden
// fixtures (f32 / bf16, linear and quadratic attention), tiled decoding (exact for a per-pixel
// decoder, close to untiled on the tiny model, continuous across seams), and the latent preview fit.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as native from '../../native/index.ts';
import { readFixture } from '../../nodes/models/golden/fixture.ts';
import { runDcaeGolden } from '../../nodes/models/golden/dcae.ts';
import { axisBlend, expectedDecoderTensors, loadDcaeDecoder, parseDcaeConfig, phaseWeights, tileAxis, tiledDecode, tileStarts, validateDecoderTensors } from '../../nodes/models/dcae.ts';
import { deriveLatentPreview, fitLatentPreview, latentPreviewRgb } from '../../nodes/models/latent_preview.ts';
import type { HostArray } from '../../nodes/models/tensor_input.ts';
import { GOLDEN } from '../fixtures.ts';

// Model runs on the shared 2-core machine can take minutes under load.
const HEAVY_MS = 300_000;
const backend = native.getBackend('cpu');

const REAL_VAE = {
  _class_name: 'AutoencoderDC', attention_head_dim: 32, decoder_act_fns: 'silu',
  decoder_block_out_channels: [128, 256, 512, 512, 1024, 1024],
  decoder_block_types: ['ResBlock', 'ResBlock', 'ResBlock', 'EfficientViTBlock', 'EfficientViTBlock', 'EfficientViTBlock'],
  decoder_layers_per_block: [3, 3, 3, 3, 3, 3], decoder_norm_types: 'rms_norm',
  decoder_qkv_multiscales: [[], [], [], [5], [5], [5]], in_channels: 3, latent_channels: 32, scaling_factor: 0.41407,
  upsample_block_type: 'interpolate',
};

describe('config and key list', () => {
  it('the real Sana decoder: 196 tensors, 159,223,171 parameters (spec Appendix B)', () => {
    const cfg = parseDcaeConfig({ ...REAL_VAE });
    expect(cfg.spatialCompression).toBe(32);
    const m = expectedDecoderTensors(cfg);
    expect(m.size).toBe(196);
    expect([...m.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0)).toBe(159_223_171);
    expect(m.get('decoder.up_blocks.3.0.conv.weight')).toEqual([512, 1024, 3, 3]);
    expect(m.get('decoder.up_blocks.5.2.attn.to_qkv_multiscale.0.proj_out.weight')).toEqual([3072, 32, 1, 1]);
  });

  it('refuses unsupported variants and reports shape mismatches by name', () => {
    expect(() => parseDcaeConfig({ ...REAL_VAE, decoder_norm_types: 'batch_norm' }, 'v/config.json')).toThrow(/v\/config\.json: decoder norm type batch_norm is not supported/);
    expect(() => parseDcaeConfig({ ...REAL_VAE, decoder_layers_per_block: [0, 3, 3, 3, 3, 3] }, 'c')).toThrow(/pixel-shuffle output head/);
    const cfg = parseDcaeConfig({ ...REAL_VAE });
    const m = expectedDecoderTensors(cfg);
    m.set('decoder.up_blocks.1.2.conv1.weight', [256, 256, 1, 1]);
    const src = { keys: () => [...m.keys(), 'encoder.conv_in.weight'], entry: (n: string) => ({ name: n, dtype: 'F32', shape: m.get(n) ?? [1], file: 'vae.safetensors' }) };
    expect(() => validateDecoderTensors(cfg, src, 'vae')).toThrow(/decoder\.up_blocks\.1\.2\.conv1\.weight has shape \[256,256,1,1\] \(file vae\.safetensors\), config implies \[256,256,3,3\]/);
  });
});

describe('channels-last upsampler', () => {
  it('2×2 phase conv + upsamplePhasesNhwc equals nearest 2× → 3×3 conv, plus the repeat/pixel-shuffle shortcut (f32, 1e-5)', () => {
    const [B, H, W, Cin, Cout] = [2, 5, 4, 6, 3]; // shortcut repeats 4·3/6 = 2
    let s = 7;
    const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1);
    const w = rnd(Cout * Cin * 9), bias = rnd(Cout);
    const x = backend.fromArray(rnd(B * H * W * Cin), [B, H, W, Cin], 'f32');
    const b4 = new Float32Array(4 * Cout);
    for (let p = 0; p < 4; p++) b4.set(bias, p * Cout);
    const y = backend.conv2dNhwc(x, backend.fromArray(phaseWeights(w, Cout, Cin), [4 * Cout, Cin, 2, 2], 'f32'), backend.fromArray(b4, [4 * Cout], 'f32'), { padding: 1 });
    const got = backend.upsamplePhasesNhwc(y, x).toFloat32();
    // the NCHW path the decoder took before: upsampleNearest → conv2d, repeatInterleave → pixelShuffle, add
    const xn = backend.permute(x, [0, 3, 1, 2]);
    const main = backend.conv2d(backend.upsampleNearest(xn, 2), backend.fromArray(w, [Cout, Cin, 3, 3], 'f32'), backend.fromArray(bias, [Cout], 'f32'), { padding: 1 });
    const want = backend.permute(backend.add(main, backend.pixelShuffle(backend.repeatInterleave(xn, 2, 1), 2)), [0, 2, 3, 1]).toFloat32();
    expect(got.length).toBe(want.length);
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
    expect(worst).toBeLessThan(1e-5);
  });
});

describe('golden fixtures', () => {
  it('f32: io_linear and io_quadratic, every stage within 1e-4', async () => {
    const r = await runDcaeGolden({ backend, native, dtype: 'f32', dir: GOLDEN });
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.checks.length).toBe(2 * 8);
  }, HEAVY_MS);

  it('bf16: within the stated bf16 bound', async () => {
    const r = await runDcaeGolden({ backend, native, dtype: 'bf16', dir: GOLDEN });
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
  }, HEAVY_MS);
});

describe('tiled decoding', () => {
  it('tiles cover the axis with equal tiles, the requested overlap (+1 at most) and the fewest tiles', () => {
    expect(tileAxis(10, 16, 4)).toEqual({ starts: [0], len: 10 });
    // 1024² in 512-px tiles with 64-px blends: 3 tiles of 12, not 3 of 16 overlapping by 8
    expect(tileAxis(32, 16, 2)).toEqual({ starts: [0, 10, 20], len: 12 });
    expect(tileAxis(64, 32, 2)).toEqual({ starts: [0, 21, 41], len: 23 });
    for (const [size, tile, ov] of [[128, 32, 4], [128, 32, 2], [40, 16, 2], [33, 8, 3], [9, 4, 1], [24, 16, 8], [20, 5, 4], [17, 4, 0], [100, 7, 3]] as const) {
      const { starts: s, len } = tileAxis(size, tile, ov);
      expect(tileStarts(size, tile, ov)).toEqual(s);
      expect(len).toBeLessThanOrEqual(tile);
      expect(s[0]).toBe(0);
      expect(s[s.length - 1]! + len).toBe(size);
      for (let k = 1; k < s.length; k++) {
        const o = s[k - 1]! + len - s[k]!;
        expect(o).toBeGreaterThanOrEqual(ov);
        expect(o).toBeLessThanOrEqual(ov + 1);
      }
      // fewest tiles: one tile fewer of the full requested size could not cover the axis
      expect((s.length - 1) * tile - (s.length - 2) * ov).toBeLessThan(size);
      // smallest common length: one pixel shorter could not cover it with the overlap
      expect(s.length * (len - 1) - (s.length - 1) * ov).toBeLessThan(size);
    }
  });

  it('tiledMap hands every tile the same shape and covers each output pixel with the planned overlap', () => {
    const z: HostArray = { data: new Float32Array(1 * 2 * 23 * 37), shape: [1, 2, 23, 37] };
    const seen: string[] = [];
    const count = new Float32Array(23 * 4 * 37 * 4); // tiles covering each output pixel
    const ay = tileAxis(23, 9, 2), ax = tileAxis(37, 9, 2);
    let k = 0;
    tiledDecode(z, 4, (t) => {
      seen.push(t.shape.join('x'));
      const y0 = ay.starts[Math.floor(k / ax.starts.length)]! * 4, x0 = ax.starts[k % ax.starts.length]! * 4;
      k++;
      for (let r = 0; r < t.shape[2]! * 4; r++) for (let q = 0; q < t.shape[3]! * 4; q++) count[(y0 + r) * 37 * 4 + x0 + q]!++;
      return new Float32Array(3 * t.shape[2]! * 4 * t.shape[3]! * 4);
    }, { tile: 9, overlap: 2 });
    expect(new Set(seen)).toEqual(new Set([`1x2x${ay.len}x${ax.len}`]));
    expect(seen.length).toBe(ay.starts.length * ax.starts.length);
    expect(count.every((c) => c >= 1)).toBe(true);
    // the decoded area exceeds the image only by the overlaps: Σ tile lengths = size + Σ overlaps
    for (const [a, size] of [[ay, 23], [ax, 37]] as const) {
      let ovs = 0;
      for (let i = 1; i < a.starts.length; i++) ovs += a.starts[i - 1]! + a.len - a.starts[i]!;
      expect(a.starts.length * a.len).toBe(size + ovs);
    }
  });

  it('blend weights sum to 1 at every pixel, are exactly 1 where one tile covers, and never 0', () => {
    for (const [size, tile, ov, f] of [[32, 16, 2, 32], [37, 9, 2, 4], [20, 5, 4, 2], [128, 32, 4, 1], [11, 4, 0, 3], [24, 16, 8, 4]] as const) {
      const axis = tileAxis(size, tile, ov);
      const blends = axisBlend(axis, f);
      const sum = new Float64Array(size * f), cover = new Int32Array(size * f);
      blends.forEach(({ w, solo }, k) => {
        expect(w.length).toBe(axis.len * f);
        for (let j = 0; j < w.length; j++) {
          expect(w[j]!).toBeGreaterThan(0);
          sum[axis.starts[k]! * f + j]! += w[j]!;
          cover[axis.starts[k]! * f + j]!++;
        }
        for (let j = solo[0]; j < solo[1]; j++) expect(w[j]).toBe(1);
      });
      for (let i = 0; i < sum.length; i++) expect(Math.abs(sum[i]! - 1)).toBeLessThan(1e-12);
      // the solo ranges are exactly the pixels covered once
      const solo = new Int32Array(size * f);
      blends.forEach(({ solo: [a, b] }, k) => { for (let j = a; j < b; j++) solo[axis.starts[k]! * f + j]!++; });
      for (let i = 0; i < sum.length; i++) expect(solo[i]).toBe(cover[i] === 1 ? 1 : 0);
    }
    // 2-D: the products of the two axes' weights sum to 1 at every pixel
    const ay = tileAxis(23, 9, 2), ax = tileAxis(37, 9, 3), f = 2;
    const by = axisBlend(ay, f), bx = axisBlend(ax, f);
    const W = 37 * f, sum2 = new Float64Array(23 * f * W);
    by.forEach((y, i) => bx.forEach((x, j) => {
      for (let r = 0; r < y.w.length; r++) for (let q = 0; q < x.w.length; q++) sum2[(ay.starts[i]! * f + r) * W + ax.starts[j]! * f + q]! += y.w[r]! * x.w[q]!;
    }));
    for (const v of sum2) expect(Math.abs(v - 1)).toBeLessThan(1e-12);
  });

  it('is exact when each tile decode is the restriction of a global per-pixel map (no seams from the blend)', () => {
    // "decoder": ×4 upsampling of a fixed mix of the 2 channels (3 outputs) plus a pattern inside
    // each 4×4 block, so a tile pasted one output pixel off would show
    const f = 4;
    const pointwise = (z: HostArray): Float32Array => {
      const [B, c, h, w] = z.shape as [number, number, number, number];
      const out = new Float32Array(B * 3 * h * f * w * f);
      for (let b = 0; b < B; b++) for (let k = 0; k < 3; k++) for (let y = 0; y < h * f; y++) for (let x = 0; x < w * f; x++) {
        const p = (yy: number): number => z.data[((b * c + yy) * h + Math.floor(y / f)) * w + Math.floor(x / f)]!;
        out[((b * 3 + k) * h * f + y) * w * f + x] = (k + 1) * p(0) - k * p(1) + 0.1 * (y % f) - 0.05 * (x % f) * p(1);
      }
      return out;
    };
    const z: HostArray = { data: Float32Array.from({ length: 2 * 2 * 11 * 13 }, (_, i) => Math.sin(i * 0.37)), shape: [2, 2, 11, 13] };
    const whole = pointwise(z);
    // plain seams, three tiles meeting (overlap > tile/2), no overlap, the defaults (one tile)
    for (const [tile, overlap, minTiles] of [[5, 2, 9], [5, 4, 40], [4, 0, 12], [7, 3, 4], [undefined, undefined, 1]] as const) {
      let tiles = 0;
      const tiled = tiledDecode(z, f, pointwise, { tile, overlap, onTile: () => tiles++ });
      expect(tiles).toBeGreaterThanOrEqual(minTiles);
      expect(tiled.shape).toEqual([2, 3, 44, 52]);
      let d = 0;
      for (let i = 0; i < whole.length; i++) d = Math.max(d, Math.abs(whole[i]! - tiled.data[i]!) / Math.max(1, Math.abs(whole[i]!)));
      expect(d).toBeLessThan(1e-6);
    }
  });

  it('stops between tiles when onTile throws (an interrupt), decoding no further tile', () => {
    const z: HostArray = { data: new Float32Array(1 * 2 * 12 * 12), shape: [1, 2, 12, 12] };
    let decoded = 0;
    const stop = new Error('interrupted');
    expect(() =>
      tiledDecode(z, 2, (t) => (decoded++, new Float32Array(t.shape[0]! * 3 * t.shape[2]! * 2 * t.shape[3]! * 2)), {
        tile: 4,
        overlap: 1,
        onTile: (done) => {
          if (done === 2) throw stop;
        },
      }),
    ).toThrow(stop);
    expect(decoded).toBe(2);
  });

  /** Max |Δ| between horizontal neighbours over the given columns (x → x+1), all rows and channels. */
  const maxStep = (img: Float32Array, C: number, IH: number, IW: number, cols: number[]): number => {
    let m = 0;
    for (let ch = 0; ch < C; ch++) for (let y = 0; y < IH; y++) for (const x of cols) {
      const o = (ch * IH + y) * IW + x;
      m = Math.max(m, Math.abs(img[o + 1]! - img[o]!));
    }
    return m;
  };
  const relErr = (a: Float32Array, b: Float32Array): number => {
    let num = 0, den = 0;
    for (let i = 0; i < a.length; i++) { num += (a[i]! - b[i]!) ** 2; den += a[i]! ** 2; }
    return Math.sqrt(num / den);
  };

  it('on a small convolutional DC-AE: close to untiled, closer with more overlap, continuous at seams', async () => {
    // A 3-stage ResBlock-only decoder (f = 4) with random weights, written in the diffusers layout:
    // its receptive field is local, so tiles only differ from the whole near tile borders (zero
    // padding there), and the blend should hide that.
    const raw = { _class_name: 'AutoencoderDC', decoder_block_out_channels: [8, 8, 16], decoder_block_types: 'ResBlock', decoder_layers_per_block: [1, 1, 1], decoder_qkv_multiscales: [[], [], []], latent_channels: 4, attention_head_dim: 8, upsample_block_type: 'interpolate', in_channels: 3, scaling_factor: 1 };
    const cfg = parseDcaeConfig(raw);
    const dir = mkdtempSync(join(tmpdir(), 'dcae-'));
    try {
      writeFileSync(join(dir, 'config.json'), JSON.stringify(raw));
      let s = 99;
      const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
      for (const [name, shape] of expectedDecoderTensors(cfg)) {
        const n = shape.reduce((a, b) => a * b, 1);
        const amp = name.endsWith('bias') ? 0.1 : name.includes('norm') ? 1 : Math.sqrt(3 / (n / shape[0]!));
        tensors[name] = { dtype: 'F32', shape, data: Float32Array.from({ length: n }, () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return (s / 2 ** 32 * 2 - 1) * amp; }) };
      }
      native.writeSafetensors(join(dir, 'diffusion_pytorch_model.safetensors'), tensors);
      const dec = await loadDcaeDecoder(dir, backend, 'f32', { native });
      try {
        const H = 24, W = 20, f = cfg.spatialCompression;
        const z: HostArray = { data: Float32Array.from({ length: 4 * H * W }, (_, i) => Math.sin(i * 0.11) * 1.5 + Math.cos(i * 0.029)), shape: [1, 4, H, W] };
        const full = dec.decode(z);
        const a = full.toFloat32();
        full.dispose();
        const tiled = (tile: number, overlap: number): Float32Array => {
          const t = dec.decodeTiled(z, { tile, overlap });
          expect(t.shape).toEqual([1, 3, H * f, W * f]);
          try { return t.toFloat32(); } finally { t.dispose(); }
        };
        const e82 = relErr(a, tiled(8, 2)), e84 = relErr(a, tiled(8, 4)), e168 = relErr(a, tiled(16, 8));
        expect(e82).toBeGreaterThan(e84);
        expect(e84).toBeGreaterThan(e168);
        // measured 0.092 / 0.066 / 0.017 (0.014 before tiles shrank to fit: 2×2 tiles of 16×14 now,
        // 16×16 overlapping by 12 columns before): 8-pixel tiles are barely wider than this model's
        // receptive field, so zero padding at their borders reaches most pixels; 16-pixel tiles are close
        expect(e84).toBeLessThan(0.15);
        expect(e168).toBeLessThan(0.04);
        // a single tile covering the latent is the untiled decode
        expect(relErr(a, tiled(24, 4))).toBe(0);
        // continuity: around every seam the steps between neighbouring pixels stay within the
        // untiled image's own largest step
        const b = tiled(8, 4);
        const IW = W * f, IH = H * f;
        const seamCols: number[] = [];
        const xs = tileStarts(W, 8, 4);
        for (const x0 of xs.slice(1)) for (let x = x0 * f - 2; x <= x0 * f + 1; x++) seamCols.push(x);
        for (const x0 of xs.slice(0, -1)) for (let x = (x0 + 8) * f - 2; x < (x0 + 8) * f; x++) seamCols.push(x);
        const allCols = Array.from({ length: IW - 1 }, (_, i) => i);
        expect(maxStep(b, 3, IH, IW, seamCols)).toBeLessThanOrEqual(maxStep(a, 3, IH, IW, allCols));
      } finally {
        dec.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, HEAVY_MS);

  it('on the tiny fixture DC-AE (global attention in 3 stages): runs, and equals untiled with one tile', async () => {
    // Tiles cannot match the whole here: every EfficientViT stage attends over the full grid and
    // this random model is dominated by that (relative error ≈ 0.8 at 8×8 tiles of a 12×16 latent);
    // the trained model is smoother, which is why diffusers tiles it the same way.
    const dec = await loadDcaeDecoder(resolve(GOLDEN, 'dcae'), backend, 'f32', { native });
    try {
      const fx = readFixture(resolve(GOLDEN, 'dcae/io_quadratic.safetensors'));
      const z = fx.get('latent');
      const zin: HostArray = { data: z.data, shape: z.shape };
      const a = dec.decode(zin), b = dec.decodeTiled(zin, { tile: 4, overlap: 1 });
      expect(relErr(a.toFloat32(), b.toFloat32())).toBe(0);
      a.dispose(); b.dispose();
      const c = dec.decodeTiled(zin, { tile: 2, overlap: 1 });
      expect(c.shape).toEqual([1, 3, 64, 96]);
      expect(c.toFloat32().every(Number.isFinite)).toBe(true);
      c.dispose();
    } finally {
      dec.dispose();
    }
  }, HEAVY_MS);
});

describe('latent preview', () => {
  it('recovers a planted linear map exactly, and fits a finite map from the tiny decoder', async () => {
    const C = 4, h = 6, w = 5, f = 2;
    const W = [0.5, -0.2, 0.1, 0.3, -0.4, 0.2, 0, 0.1, 0.25, 0.25, -0.5, 0];
    const bias = [0.1, -0.2, 0.05];
    const lat = Float32Array.from({ length: 2 * C * h * w }, (_, i) => Math.sin(i * 1.7) + Math.cos(i * 0.3));
    const img = new Float32Array(2 * 3 * h * f * w * f);
    for (let b = 0; b < 2; b++) for (let k = 0; k < 3; k++) for (let y = 0; y < h * f; y++) for (let x = 0; x < w * f; x++) {
      let v = bias[k]!;
      for (let c = 0; c < C; c++) v += W[k * C + c]! * lat[((b * C + c) * h + (y >> 1)) * w + (x >> 1)]!;
      img[((b * 3 + k) * h * f + y) * w * f + x] = v;
    }
    const map = fitLatentPreview({ data: lat, shape: [2, C, h, w] }, { data: img, shape: [2, 3, h * f, w * f] }, f, 0);
    map.weight.forEach((v, i) => expect(v).toBeCloseTo(W[i]!, 4));
    map.bias.forEach((v, i) => expect(v).toBeCloseTo(bias[i]!, 4));
    const px = latentPreviewRgb({ data: lat, shape: [2, C, h, w] }, map, 1);
    expect(px.rgb.length).toBe(h * w * 3);

    const dec = await loadDcaeDecoder(resolve(GOLDEN, 'dcae'), backend, 'f32', { native });
    try {
      const decodeHost = (z: HostArray): HostArray => {
        const t = dec.decode(z);
        try { return { data: t.toFloat32(), shape: t.shape }; } finally { t.dispose(); }
      };
      const fitted = deriveLatentPreview(decodeHost, dec.config.latentChannels, dec.config.spatialCompression, dec.config.scalingFactor, { grid: 4, samples: 2 });
      expect(fitted.weight.length).toBe(3 * dec.config.latentChannels);
      expect(fitted.weight.every(Number.isFinite)).toBe(true);
    } finally {
      dec.dispose();
    }
  }, HEAVY_MS);
});
