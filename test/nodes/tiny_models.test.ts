// The tiny-model generator writes the real diffusers/transformers layouts: its key/shape tables,
// fed the golden fixtures' configs, must reproduce the state_dicts the reference libraries saved.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  TINY_GEMMA_CONFIG,
  TINY_PIPELINE,
  TINY_TRANSFORMER_CONFIG,
  TINY_VAE_CONFIG,
  dcaeTensors,
  fillTensor,
  gemmaTensors,
  makeTinyModels,
  toBf16,
  transformerTensors,
  type TensorSpec,
} from '../../scripts/make-tiny-models.ts';

import { GOLDEN } from '../fixtures.ts';

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

function readHeader(file: string): Record<string, HeaderEntry> {
  const fd = fs.openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    fs.readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE());
    const buf = Buffer.alloc(n);
    fs.readSync(fd, buf, 0, n, 8);
    const h = JSON.parse(buf.toString('utf8')) as Record<string, HeaderEntry>;
    delete h.__metadata__;
    return h;
  } finally {
    fs.closeSync(fd);
  }
}

const asMap = (specs: TensorSpec[]): Record<string, number[]> => Object.fromEntries(specs.map((s) => [s.name, s.shape]));
const headerShapes = (h: Record<string, HeaderEntry>): Record<string, number[]> => Object.fromEntries(Object.entries(h).map(([k, v]) => [k, v.shape]));
const readJson = (f: string): any => JSON.parse(fs.readFileSync(f, 'utf8'));

describe('tensor layouts match the reference libraries (golden state_dicts)', () => {
  it('SanaTransformer2DModel', () => {
    const cfg = readJson(path.join(GOLDEN, 'transformer/config.json'));
    expect(asMap(transformerTensors(cfg))).toEqual(headerShapes(readHeader(path.join(GOLDEN, 'transformer/model.safetensors'))));
  });
  it('AutoencoderDC (encoder + decoder)', () => {
    const cfg = readJson(path.join(GOLDEN, 'dcae/config.json'));
    expect(asMap(dcaeTensors(cfg))).toEqual(headerShapes(readHeader(path.join(GOLDEN, 'dcae/model.safetensors'))));
  });
  it('Gemma2Model', () => {
    const cfg = readJson(path.join(GOLDEN, 'gemma2/config.json'));
    expect(asMap(gemmaTensors(cfg))).toEqual(headerShapes(readHeader(path.join(GOLDEN, 'gemma2/model.safetensors'))));
  });
  it('the full-size configs give the published parameter counts (spec Appendix B)', () => {
    const count = (specs: TensorSpec[]) => specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
    const sana600 = {
      ...TINY_TRANSFORMER_CONFIG,
      num_layers: 28,
      num_attention_heads: 36,
      num_cross_attention_heads: 16,
      cross_attention_head_dim: 72,
      cross_attention_dim: 1152,
      caption_channels: 2304,
    };
    expect(transformerTensors(sana600).length).toBe(548);
    expect(count(transformerTensors(sana600))).toBe(591_747_872);
    const realVae = {
      ...TINY_VAE_CONFIG,
      attention_head_dim: 32,
      encoder_block_out_channels: [128, 256, 512, 512, 1024, 1024],
      decoder_block_out_channels: [128, 256, 512, 512, 1024, 1024],
    };
    const dec = dcaeTensors(realVae).filter((s) => s.name.startsWith('decoder.'));
    const enc = dcaeTensors(realVae).filter((s) => s.name.startsWith('encoder.'));
    expect([dec.length, count(dec)]).toEqual([196, 159_223_171]);
    expect([enc.length, count(enc)]).toEqual([179, 153_027_104]);
    const gemma2b = {
      ...TINY_GEMMA_CONFIG,
      hidden_size: 2304,
      intermediate_size: 9216,
      num_hidden_layers: 26,
      num_attention_heads: 8,
      num_key_value_heads: 4,
      head_dim: 256,
    };
    expect([gemmaTensors(gemma2b).length, count(gemmaTensors(gemma2b))]).toEqual([288, 2_614_341_888]);
  });
});

describe('weights', () => {
  it('are deterministic per tensor name and scaled by fan-in', () => {
    const spec: TensorSpec = { name: 'x.weight', shape: [256, 64], init: { kind: 'fanin', fanIn: 64 } };
    const a = fillTensor(spec, 1);
    expect(fillTensor(spec, 1)).toEqual(a);
    expect(fillTensor({ ...spec, name: 'y.weight' }, 1)).not.toEqual(a);
    const std = Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
    expect(std).toBeGreaterThan(0.9 / 8);
    expect(std).toBeLessThan(1.1 / 8);
  });
  it('bf16 rounding is round-to-nearest-even', () => {
    // 1 + 2^-8 is halfway between two bf16 values: ties go to the even mantissa (1.0).
    const b = toBf16(new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2]));
    expect([...b]).toEqual([0x3f80, 0x3f80, 0x3f82, 0xc000]);
  });
});

describe('makeTinyModels', { timeout: 300_000 }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tiny-models-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('writes the diffusers pipeline layout with configs consistent with the weights', () => {
    const r = makeTinyModels(tmp);
    expect(r.generated).toBe(true);
    const dir = path.join(tmp, 'sana', TINY_PIPELINE);
    const index = readJson(path.join(dir, 'model_index.json'));
    expect(index._class_name).toBe('SanaPipeline');
    for (const c of ['transformer', 'vae', 'text_encoder', 'tokenizer', 'scheduler']) expect(index[c]).toHaveLength(2);

    const tcfg = readJson(path.join(dir, 'transformer/config.json'));
    const th = readHeader(path.join(dir, 'transformer/diffusion_pytorch_model.safetensors'));
    expect(headerShapes(th)).toEqual(asMap(transformerTensors(tcfg)));
    const vcfg = readJson(path.join(dir, 'vae/config.json'));
    expect(headerShapes(readHeader(path.join(dir, 'vae/diffusion_pytorch_model.safetensors')))).toEqual(asMap(dcaeTensors(vcfg)));
    const gcfg = readJson(path.join(dir, 'text_encoder/config.json'));
    const gh = readHeader(path.join(dir, 'text_encoder/model.safetensors'));
    expect(headerShapes(gh)).toEqual(asMap(gemmaTensors(gcfg)));
    expect(gh['embed_tokens.weight'].dtype).toBe('BF16');
    expect(gh['embed_tokens.weight'].shape).toEqual([256000, gcfg.hidden_size]);

    // The pieces have to fit together: Gemma's width is the DiT's caption width, the DiT's
    // latent channels are the DC-AE's.
    expect(tcfg.caption_channels).toBe(gcfg.hidden_size);
    expect(tcfg.in_channels).toBe(vcfg.latent_channels);
    expect(tcfg.out_channels).toBe(vcfg.latent_channels);

    const tok = readJson(path.join(dir, 'tokenizer/tokenizer.json'));
    expect(Object.keys(tok.model.vocab).length).toBe(256000);
    expect(readJson(path.join(dir, 'tokenizer/tokenizer_config.json')).add_bos_token).toBe(true);
    expect(readJson(path.join(dir, 'scheduler/scheduler_config.json'))).toMatchObject({
      flow_shift: 3,
      prediction_type: 'flow_prediction',
      use_flow_sigmas: true,
    });

    // Every data range is in bounds and contiguous.
    const size = fs.statSync(path.join(dir, 'transformer/diffusion_pytorch_model.safetensors')).size;
    const ends = Object.values(th).map((e) => e.data_offsets[1]);
    expect(8 + Math.max(...ends)).toBeLessThanOrEqual(size);
  });

  it('is a no-op when the models are current, and regenerates when forced', () => {
    expect(makeTinyModels(tmp).generated).toBe(false);
    expect(makeTinyModels(tmp, { force: true }).generated).toBe(true);
  });
});
