// Image-to-image and inpainting on the tiny models: DCAEEncode (and its VAEEncode alias),
// FlowDPMSampler / KSampler with denoise 0 (the input back, exactly) and with a noise mask (the
// unmasked latent exactly kept), VAEEncodeForInpaint (grey fill, mask growth) and
// SetLatentNoiseMask, and the mask helpers against plain float64 references.
import { beforeAll, describe, expect, it } from 'vitest';
import type { NodeContext } from '../../engine/index.ts';
import { growMask, resizeMaskBilinear, roundHalfEven } from '../../nodes/image/mask_ops.ts';
import type { Image, Mask } from '../../nodes/image/types.ts';
import { DCAEDecode } from '../../nodes/sana/dcae_decode.ts';
import { cropPlan, DCAEEncode } from '../../nodes/sana/dcae_encode.ts';
import { DCAELoader } from '../../nodes/sana/dcae_loader.ts';
import { FlowDPMSampler } from '../../nodes/sana/flow_dpm_sampler.ts';
import { SanaDiT } from '../../nodes/sana/sana_dit.ts';
import { SetLatentNoiseMask } from '../../nodes/sana/set_latent_noise_mask.ts';
import { TextEncoderGemma } from '../../nodes/sana/text_encoder_gemma.ts';
import { inpaintInputs, VAEEncodeForInpaint } from '../../nodes/sana/vae_encode_inpaint.ts';
import type { Conditioning, DcaeRef, Latent, SanaModelRef } from '../../nodes/sana/types.ts';
import { productRegistry, repoModelsDir, testServices, TINY } from './helpers.ts';

// The tile inputs are optional; run() takes them explicitly.
const noTiles = { tile_size: undefined, overlap: undefined };

const services = testServices();

function ctx(): NodeContext & { steps: number[] } {
  const steps: number[] = [];
  return {
    nodeId: '1',
    promptId: 'p',
    signal: new AbortController().signal,
    services,
    extraData: {},
    steps,
    progress(value) {
      steps.push(value);
    },
    sendBinaryPreview() {},
    throwIfInterrupted() {},
  };
}
const outputs = (r: unknown): unknown[] => (Array.isArray(r) ? r : (r as { result: unknown[] }).result);

/** A smooth test picture (B, H, W, 3) in [0, 1]. */
function picture(B: number, H: number, W: number): Image {
  const data = new Float32Array(B * H * W * 3);
  for (let b = 0; b < B; b++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        for (let c = 0; c < 3; c++) {
          data[((b * H + y) * W + x) * 3 + c] = 0.5 + 0.45 * Math.sin(x / 17 + c + b) * Math.cos(y / 13 - c);
        }
  return { data, batch: B, height: H, width: W, channels: 3 };
}

/** ComfyUI's growth, literally: conv2d(round(mask), ones(g, g), padding = ceil((g−1)/2)), clamp, crop, round. */
function growReference(m: Float64Array, H: number, W: number, g: number): Float64Array {
  const r = Float64Array.from(m, (v) => roundHalfEven(v));
  if (g === 0) return r;
  const p = Math.ceil((g - 1) / 2);
  const out = new Float64Array(H * W);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      let s = 0;
      for (let a = 0; a < g; a++)
        for (let b = 0; b < g; b++) {
          const yy = y - p + a,
            xx = x - p + b;
          if (yy >= 0 && yy < H && xx >= 0 && xx < W) s += r[yy * W + xx]!;
        }
      out[y * W + x] = roundHalfEven(Math.min(1, Math.max(0, s)));
    }
  return out;
}

describe('mask helpers', () => {
  it('growMask equals the plain float64 conv reference for odd and even kernels', () => {
    const H = 23,
      W = 31;
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const m = Float32Array.from({ length: H * W }, () => (rnd() < 0.05 ? 1 : rnd() < 0.1 ? 0.5 : rnd() * 0.4));
    for (const g of [0, 1, 2, 3, 6, 7, 12]) {
      const want = growReference(Float64Array.from(m), H, W, g);
      expect(Array.from(growMask(m, 1, H, W, g)), `g = ${g}`).toEqual(Array.from(want));
    }
  });

  it('resizeMaskBilinear has torch’s align_corners=False semantics', () => {
    expect(Array.from(resizeMaskBilinear(Float32Array.from([0, 1, 2, 3]), 1, 1, 4, 1, 2))).toEqual([0.5, 2.5]);
    expect(Array.from(resizeMaskBilinear(Float32Array.from([0, 1]), 1, 1, 2, 1, 4))).toEqual([0, 0.25, 0.75, 1]);
    // ×32 down: each latent pixel averages the 2×2 pixels at its block's centre
    const H = 64,
      m = new Float32Array(H * H);
    m[15 * H + 15] = 1;
    expect(resizeMaskBilinear(m, 1, H, H, 2, 2)[0]).toBeCloseTo(0.25, 6);
  });

  it('VAEEncodeForInpaint pixels: masked pixels grey (0 on the encoder scale), the rest 2p − 1, ComfyUI crop', () => {
    const img = picture(1, 70, 100);
    const mask: Mask = { data: new Float32Array(70 * 100), batch: 1, height: 70, width: 100 };
    for (let y = 10; y < 30; y++) for (let x = 40; x < 60; x++) mask.data[y * 100 + x] = 1;
    const { pixels, shape, grown } = inpaintInputs(img, mask, 6, 32);
    const crop = cropPlan(70, 100, 32, 't');
    expect(crop).toEqual({ y0: 3, x0: 2, h: 64, w: 96 });
    expect(shape).toEqual([1, 3, 64, 96]);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 64; y++)
        for (let x = 0; x < 96; x++) {
          const masked = mask.data[(y + 3) * 100 + x + 2] === 1;
          const want = masked ? 0 : img.data[((y + 3) * 100 + x + 2) * 3 + c]! * 2 - 1;
          expect(pixels[(c * 64 + y) * 96 + x]).toBeCloseTo(want, 6);
        }
    const cropped = new Float64Array(64 * 96);
    for (let y = 0; y < 64; y++) for (let x = 0; x < 96; x++) cropped[y * 96 + x] = mask.data[(y + 3) * 100 + x + 2]!;
    expect(Array.from(grown)).toEqual(Array.from(growReference(cropped, 64, 96, 6)));
  });
});

describe('image-to-image and inpainting on the tiny models', { timeout: 300_000 }, () => {
  let model: SanaModelRef;
  let vae: DcaeRef;
  let pos: Conditioning;
  let neg: Conditioning;
  const sampleArgs = (latent: Latent, over: Record<string, unknown> = {}) =>
    ({
      model,
      positive: pos,
      negative: neg,
      latent,
      seed: 3,
      steps: 3,
      cfg: 4.5,
      flow_shift: 0,
      sampler: 'dpmpp_2m',
      denoise: 1,
      ...over,
    }) as Parameters<typeof FlowDPMSampler.run>[0];

  beforeAll(async () => {
    repoModelsDir();
    model = outputs(await SanaDiT.run({ ckpt_name: TINY, dtype: 'f32', device: 'cpu' }, ctx()))[0] as SanaModelRef;
    vae = outputs(await DCAELoader.run({ vae_name: TINY, dtype: 'f32', device: 'cpu' }, ctx()))[0] as DcaeRef;
    [pos, neg] = outputs(
      await TextEncoderGemma.run(
        {
          text_encoder: TINY,
          positive: 'a red fox',
          negative: '',
          complex_human_instruction: false,
          instruction: '',
          max_sequence_length: 300,
          dtype: 'f32',
          device: 'cpu',
        },
        ctx(),
      ),
    ) as [Conditioning, Conditioning];
  });

  it('DCAEEncode: crop to ×32, scaled latent; denoise 0 gives it back exactly, so its decode is the decode of the encoding', async () => {
    const c = ctx();
    const lat = outputs(await DCAEEncode.run({ vae, pixels: picture(1, 100, 170), tiled: false, ...noTiles }, c))[0] as Latent;
    expect(lat.shape).toEqual([1, 32, 3, 5]);
    expect(lat.noiseMask).toBeUndefined();
    expect(lat.samples.every(Number.isFinite)).toBe(true);
    const same = outputs(await FlowDPMSampler.run(sampleArgs(lat, { denoise: 0 }), ctx()))[0] as Latent;
    expect(same.samples).toEqual(lat.samples);
    expect(same.shape).toEqual(lat.shape);
    const a = outputs(await DCAEDecode.run({ vae, latent: same, tiled: false, ...noTiles }, ctx()))[0] as Image;
    const b = outputs(await DCAEDecode.run({ vae, latent: lat, tiled: false, ...noTiles }, ctx()))[0] as Image;
    expect([a.height, a.width]).toEqual([96, 160]);
    expect(a.data).toEqual(b.data);
    // the KSampler alias: denoise 0 is allowed and does the same
    const ks = productRegistry().get('KSampler')!;
    const mapped = ks.mapInputs!(
      { model, seed: 3, steps: 3, cfg: 4.5, sampler_name: 'dpmpp_2m', scheduler: 'normal', positive: pos, negative: neg, latent_image: lat, denoise: 0 },
      services,
    );
    const viaK = outputs(await FlowDPMSampler.run(mapped as never, ctx()))[0] as Latent;
    expect(viaK.samples).toEqual(lat.samples);
    // and the VAEEncode alias maps onto DCAEEncode untiled
    expect(productRegistry().get('VAEEncode')!.mapInputs!({ pixels: 'p', vae: 'v' }, services)).toEqual({ vae: 'v', pixels: 'p', tiled: false });
  });

  it('img2img: denoise 0.6 stays nearer the input than a fresh sample', async () => {
    const lat = outputs(await DCAEEncode.run({ vae, pixels: picture(1, 128, 128), tiled: false, ...noTiles }, ctx()))[0] as Latent;
    const c = ctx();
    const out = outputs(await FlowDPMSampler.run(sampleArgs(lat, { denoise: 0.6, steps: 4 }), c))[0] as Latent;
    expect(c.steps).toEqual([1, 2, 3, 4]);
    const fresh = outputs(
      await FlowDPMSampler.run(sampleArgs({ samples: new Float32Array(lat.samples.length), shape: lat.shape }, { steps: 4 }), ctx()),
    )[0] as Latent;
    const dist = (x: Float32Array, y: Float32Array) => Math.sqrt(x.reduce((s, v, i) => s + (v - y[i]!) ** 2, 0));
    expect(dist(out.samples, lat.samples)).toBeLessThan(dist(fresh.samples, lat.samples));
  });

  it('VAEEncodeForInpaint + FlowDPMSampler / KSampler: unmasked latent values exactly kept, masked ones changed', async () => {
    const H = 128,
      W = 192;
    const mask: Mask = { data: new Float32Array(H * W), batch: 1, height: H, width: W };
    for (let y = 0; y < H; y++) for (let x = 0; x < 80; x++) mask.data[y * W + x] = 1; // left part regenerated
    const lat = outputs(await VAEEncodeForInpaint.run({ pixels: picture(2, H, W), vae, mask, grow_mask_by: 6 }, ctx()))[0] as Latent;
    expect(lat.shape).toEqual([2, 32, 4, 6]);
    expect(lat.noiseMask!.shape).toEqual([1, 4, 6]);
    // grown to x < 83 at pixel level; latent column q samples pixels 32q+15, 32q+16
    expect(Array.from(lat.noiseMask!.data.subarray(0, 6))).toEqual([1, 1, 1, 0, 0, 0]);
    const check = (out: Latent): void => {
      let changed = 0;
      for (let b = 0; b < 2; b++)
        for (let c = 0; c < 32; c++)
          for (let y = 0; y < 4; y++)
            for (let x = 0; x < 6; x++) {
              const i = ((b * 32 + c) * 4 + y) * 6 + x;
              if (x >= 3) expect(out.samples[i]).toBe(lat.samples[i]);
              else if (out.samples[i] !== lat.samples[i]) changed++;
            }
      expect(changed).toBe(2 * 32 * 4 * 3);
      expect(out.noiseMask).toEqual(lat.noiseMask);
    };
    for (const denoise of [1, 0.5]) check(outputs(await FlowDPMSampler.run(sampleArgs(lat, { denoise }), ctx()))[0] as Latent);
    check(outputs(await FlowDPMSampler.run(sampleArgs(lat, { sampler: 'flow_euler' }), ctx()))[0] as Latent);
    const ks = productRegistry().get('KSampler')!;
    const mapped = ks.mapInputs!(
      { model, seed: 3, steps: 3, cfg: 4.5, sampler_name: 'euler', scheduler: 'normal', positive: pos, negative: neg, latent_image: lat, denoise: 0.7 },
      services,
    );
    check(outputs(await FlowDPMSampler.run(mapped as never, ctx()))[0] as Latent);
  });

  it('SetLatentNoiseMask: a mask at any size becomes the latent-resolution noise mask the sampler honours', async () => {
    const lat = outputs(await DCAEEncode.run({ vae, pixels: picture(1, 96, 128), tiled: false, ...noTiles }, ctx()))[0] as Latent;
    const mask: Mask = { data: new Float32Array(6 * 8), batch: 1, height: 6, width: 8 };
    for (let y = 3; y < 6; y++) for (let x = 0; x < 8; x++) mask.data[y * 8 + x] = 1; // bottom half
    const masked = outputs(await SetLatentNoiseMask.run({ samples: lat, mask }, ctx()))[0] as Latent;
    expect(masked.noiseMask!.shape).toEqual([1, 3, 4]);
    expect(Array.from(masked.noiseMask!.data)).toEqual([0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1]);
    const out = outputs(await FlowDPMSampler.run(sampleArgs(masked, { denoise: 0.8 }), ctx()))[0] as Latent;
    for (let c = 0; c < 32; c++) for (let x = 0; x < 4; x++) expect(out.samples[c * 12 + x]).toBe(lat.samples[c * 12 + x]);
    expect(out.samples.some((v, i) => i % 12 >= 8 && v !== lat.samples[i])).toBe(true);
  });
});
