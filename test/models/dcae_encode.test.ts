// DC-AE encoder: config parsing and the real encoder's key list (shared/spec/sana.md §4.4: 179 tensors,
// 153,027,104 parameters), the golden fixtures dcae_encode/io_a, io_b (f32 within 1e-4, bf16 within
// the stated bound), the missing-encoder error, and tiled encoding (exact for a per-pixel map,
// close to untiled on the tiny model).
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as native from '../../native/index.ts';
import { expectedEncoderTensors, loadDcaeEncoder, parseDcaeEncoderConfig, readDcaeEncoderConfig, tiledEncode } from '../../nodes/models/dcae_encoder.ts';
import { readJsonConfig } from '../../nodes/models/weights.ts';
import { DCAE_ENCODE_BF16_TOL, runDcaeEncodeGolden } from '../../nodes/models/golden/dcae_encode.ts';
import { readFixture } from '../../nodes/models/golden/fixture.ts';
import type { HostArray } from '../../nodes/models/tensor_input.ts';
import { GOLDEN, golden, haveGolden } from '../fixtures.ts';
import { repoModelsDir } from '../nodes/helpers.ts';
import { TINY_PIPELINE } from '../../scripts/make-tiny-models.ts';

const HEAVY_MS = 300_000;
const backend = native.getBackend('cpu');

const REAL_VAE = {
  _class_name: 'AutoencoderDC', attention_head_dim: 32, downsample_block_type: 'Conv',
  encoder_block_out_channels: [128, 256, 512, 512, 1024, 1024],
  encoder_block_types: ['ResBlock', 'ResBlock', 'ResBlock', 'EfficientViTBlock', 'EfficientViTBlock', 'EfficientViTBlock'],
  encoder_layers_per_block: [2, 2, 2, 3, 3, 3], encoder_qkv_multiscales: [[], [], [], [5], [5], [5]],
  in_channels: 3, latent_channels: 32, scaling_factor: 0.41407,
};

describe('encoder config and key list', () => {
  it('the real Sana encoder: 179 tensors, 153,027,104 parameters (shared/spec/sana.md §4.4)', () => {
    const cfg = parseDcaeEncoderConfig({ ...REAL_VAE });
    expect(cfg.spatialCompression).toBe(32);
    expect(cfg.downsample).toBe('conv');
    expect(cfg.outShortcut).toBe(true);
    const m = expectedEncoderTensors(cfg);
    expect(m.size).toBe(179);
    expect([...m.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0)).toBe(153_027_104);
    expect(m.get('encoder.down_blocks.0.2.conv.weight')).toEqual([256, 128, 3, 3]);
    expect(m.get('encoder.conv_out.weight')).toEqual([32, 1024, 3, 3]);
    // pixel_unshuffle downsamplers convolve to a quarter of the channels
    expect(expectedEncoderTensors(parseDcaeEncoderConfig({ ...REAL_VAE, downsample_block_type: 'pixel_unshuffle' })).get('encoder.down_blocks.0.2.conv.weight')).toEqual([64, 128, 3, 3]);
  });

  it('refuses what is not implemented, naming the file and key', () => {
    expect(() => parseDcaeEncoderConfig({ ...REAL_VAE, encoder_layers_per_block: [0, 2, 2, 3, 3, 3] }, 'v/config.json')).toThrow(/v\/config\.json: encoder_layers_per_block\[0\] = 0/);
    expect(() => parseDcaeEncoderConfig({ ...REAL_VAE, encoder_block_types: 'Foo' }, 'c')).toThrow(/encoder block type Foo/);
    expect(() => parseDcaeEncoderConfig({ ...REAL_VAE, latent_channels: 48 }, 'c')).toThrow(/encoder_out_shortcut needs the last width 1024 to be a multiple of latent_channels 48/);
  });
});

describe.skipIf(!haveGolden('dcae_encode'))('golden fixtures dcae_encode', () => {
  it('every parameter comes from the fixture: its `model` metadata names the VAE folder', () => {
    for (const f of ['io_a', 'io_b']) {
      const fx = readFixture(golden('dcae_encode', `${f}.safetensors`));
      expect(fx.metadata.model).toBe('../dcae');
      // the latent size follows from the referenced config, not from a constant
      const cfg = readDcaeEncoderConfig(join(GOLDEN, 'dcae_encode', fx.metadata.model!));
      const [B, , H, W] = fx.get('image').shape as [number, number, number, number];
      expect(fx.get('latent').shape).toEqual([B, cfg.latentChannels, H / cfg.spatialCompression, W / cfg.spatialCompression]);
    }
  });

  it('f32: io_a (batch 1) and io_b (batch 2), every stage and the latent within 1e-4', async () => {
    const r = await runDcaeEncodeGolden({ backend, native, dtype: 'f32', dir: GOLDEN });
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.checks.length).toBe(2 * 7);
    expect(Math.max(...r.checks.map((c) => c.maxAbs))).toBeLessThan(2e-5);
  }, HEAVY_MS);

  it(`bf16: within relative RMS ${DCAE_ENCODE_BF16_TOL.relRms}`, async () => {
    const r = await runDcaeEncodeGolden({ backend, native, dtype: 'bf16', dir: GOLDEN });
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
  }, HEAVY_MS);

  it('a checkpoint without encoder weights fails on encode only, naming the missing key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcae-dec-only-'));
    try {
      const src = join(GOLDEN, 'dcae');
      copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
      const ck = native.openSafetensors(join(src, 'model.safetensors'));
      const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
      for (const k of ck.keys().filter((k) => k.startsWith('decoder.'))) {
        const t = ck.load(k, backend, 'f32');
        tensors[k] = { dtype: 'F32', shape: [...t.shape], data: t.toFloat32() };
        t.dispose();
      }
      ck.close();
      writeDecoderOnly(join(dir, 'diffusion_pytorch_model.safetensors'), tensors);
      const { loadDcaeDecoder } = await import('../../nodes/models/dcae.ts');
      (await loadDcaeDecoder(dir, backend, 'f32')).dispose();
      await expect(loadDcaeEncoder(dir, backend, 'f32')).rejects.toThrow(/no encoder weights \(missing encoder\.conv_in\.weight/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A plain safetensors writer for the test (F32 only). */
function writeDecoderOnly(file: string, tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>): void {
  const header: Record<string, unknown> = {};
  let off = 0;
  const parts: Buffer[] = [];
  for (const [k, t] of Object.entries(tensors)) {
    const b = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[k] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + b.length] };
    parts.push(b);
    off += b.length;
  }
  let h = Buffer.from(JSON.stringify(header));
  const pad = (8 - (h.length % 8)) % 8;
  h = Buffer.concat([h, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(file, Buffer.concat([len, h, ...parts]));
}

describe('tiled encoding', () => {
  it('is exact when each tile encode is the restriction of a global per-latent-pixel map', () => {
    // "encoder": mean of each f×f block of channel 0 and of channel 1 (2 latent channels)
    const f = 4;
    const pool = (x: HostArray): Float32Array => {
      const [B, , H, W] = x.shape as [number, number, number, number];
      const h = H / f, w = W / f;
      const out = new Float32Array(B * 2 * h * w);
      for (let b = 0; b < B; b++) for (let c = 0; c < 2; c++) for (let y = 0; y < h; y++) for (let q = 0; q < w; q++) {
        let s = 0;
        for (let i = 0; i < f; i++) for (let j = 0; j < f; j++) s += x.data[((b * 3 + c) * H + y * f + i) * W + q * f + j]!;
        out[((b * 2 + c) * h + y) * w + q] = s / (f * f);
      }
      return out;
    };
    const B = 2, H = 40, W = 56;
    const data = Float32Array.from({ length: B * 3 * H * W }, (_, i) => Math.sin(i * 0.37));
    const x = { data, shape: [B, 3, H, W] };
    const whole = pool(x);
    const tiles: number[] = [];
    const tiled = tiledEncode(x, f, pool, { tile: 4, overlap: 2, onTile: (d, t) => tiles.push(d, t) });
    expect(tiled.shape).toEqual([B, 2, H / f, W / f]);
    let worst = 0;
    for (let i = 0; i < whole.length; i++) worst = Math.max(worst, Math.abs(tiled.data[i]! - whole[i]!));
    expect(worst).toBeLessThan(1e-6);
    expect(tiles.length / 2).toBe(tiles[tiles.length - 1]);
  });

  it('on the tiny model: tiled vs untiled on a 256×320 image (8×10 latent, 4-latent tiles) within the stated bound', async () => {
    const dir = join(repoModelsDir(), 'sana', TINY_PIPELINE, 'vae');
    expect(Object.keys(readJsonConfig(dir))).toContain('encoder_block_out_channels');
    const enc = await loadDcaeEncoder(dir, backend, 'f32');
    try {
      const H = 256, W = 320;
      // a smooth picture in (−1, 1)
      const data = new Float32Array(3 * H * W);
      for (let c = 0; c < 3; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[(c * H + y) * W + x] = 0.8 * Math.sin(x / 23 + c) * Math.cos(y / 31 - c);
      const img = { data, shape: [1, 3, H, W] };
      const whole = enc.encode(img);
      const blocks: number[] = [];
      const tiled = enc.encodeTiled(img, { tile: 4, overlap: 2, onBlock: () => blocks.push(1) });
      try {
        expect(tiled.shape).toEqual(whole.shape);
        const a = whole.toFloat32(), b = tiled.toFloat32();
        let num = 0, den = 0;
        for (let i = 0; i < a.length; i++) { num += (a[i]! - b[i]!) ** 2; den += a[i]! ** 2; }
        const rel = Math.sqrt(num / den);
        console.log(`tiny DC-AE encoder, tiled (4/2) vs untiled: relative RMS ${rel.toFixed(4)}`);
        // The encoder's attention is global within a tile, so a 128-px tile sees far less context
        // than the whole image and the random-weight deep stages (4×4 … 1×1 per tile) differ:
        // measured 0.26 relative RMS on the CPU (the log line); the bound leaves margin.
        expect(rel).toBeLessThan(TILED_BOUND);
        expect(blocks.length).toBeGreaterThan(0);
      } finally {
        whole.dispose();
        tiled.dispose();
      }
    } finally {
      enc.dispose();
    }
  }, HEAVY_MS);
});

const TILED_BOUND = 0.35;
