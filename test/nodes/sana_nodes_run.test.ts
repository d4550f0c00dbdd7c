// Each Sana node run on the shipped tiny models, through its declared run() with a stub context.
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { InterruptedError, type NodeContext, type PreviewImage } from '../../engine/index.ts';
import { DCAEDecode } from '../../nodes/sana/dcae_decode.ts';
import { DCAELoader } from '../../nodes/sana/dcae_loader.ts';
import { EmptySanaLatent, emptyLatent } from '../../nodes/sana/empty_latent.ts';
import { FlowDPMSampler } from '../../nodes/sana/flow_dpm_sampler.ts';
import { Gemma2Encode } from '../../nodes/sana/gemma_encode.ts';
import { LoadGemma2 } from '../../nodes/sana/gemma_loader.ts';
import { PAG } from '../../nodes/sana/pag.ts';
import { SanaDiT } from '../../nodes/sana/sana_dit.ts';
import { TextEncoderGemma } from '../../nodes/sana/text_encoder_gemma.ts';
import type { Conditioning, DcaeRef, Latent, SanaModelRef } from '../../nodes/sana/types.ts';
import { CHI_DIFFUSERS } from '../../nodes/models/prompt.ts';
import type { Image } from '../../nodes/image/types.ts';
import { TINY, repoModelsDir, testServices } from './helpers.ts';

const services = testServices();
// The tile inputs are optional; run() takes them explicitly.
const noTiles = { tile_size: undefined, overlap: undefined };

interface Recorder extends NodeContext {
  steps: Array<{ value: number; max: number; preview?: PreviewImage }>;
}

function ctx(interruptAfter = Infinity): Recorder {
  const steps: Recorder['steps'] = [];
  const ac = new AbortController();
  return {
    nodeId: '1',
    promptId: 'p',
    signal: ac.signal,
    services,
    extraData: {},
    steps,
    progress(value, max, preview) {
      steps.push({ value, max, preview });
      if (steps.length >= interruptAfter) throw new InterruptedError();
    },
    sendBinaryPreview() {},
    throwIfInterrupted() {},
  };
}

/** run() result -> its outputs tuple (nodes may return a tuple or { result, ui }). */
function outputs(r: unknown): unknown[] {
  return Array.isArray(r) ? r : (r as { result: unknown[] }).result;
}

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
    seed: 1,
    steps: 4,
    cfg: 4.5,
    flow_shift: 0,
    sampler: 'dpmpp_2m',
    denoise: 1,
    ...over,
  }) as Parameters<typeof FlowDPMSampler.run>[0];

// Generous: the 2-core machine is shared by parallel jobs, and a loaded CPU is several times slower.
describe('Sana nodes on the tiny models', { timeout: 300_000 }, () => {
  beforeAll(() => void repoModelsDir());

  it('SanaDiT loads the checkpoint and describes it; cuda without a GPU falls back to the CPU, logged, no UI output', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const r = await SanaDiT.run({ ckpt_name: TINY, dtype: 'f32', device: 'cuda' }, ctx());
      // A `ui` here would become an `executed` message, which clients take for the job's result.
      expect(Array.isArray(r)).toBe(true);
      model = outputs(r)[0] as SanaModelRef;
      expect(model).toMatchObject({
        kind: 'sana_transformer',
        name: TINY,
        dtype: 'f32',
        latentChannels: 32,
        sampleSize: 16,
        numLayers: 4,
        captionChannels: 64,
        flowShift: 3,
      });
      const { devices } = await import('../../native/index.ts');
      if (!devices().find((d) => d.name === 'cuda')?.available) {
        expect(model.device).toBe('cpu');
        expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([expect.stringMatching(/SanaDiT: CUDA is not available .*running on the CPU/)]);
      }
      expect(services.modelCache.stats().entries.some((e) => e.kind === 'sana_transformer' && e.path === model.path)).toBe(true);
    } finally {
      warn.mockRestore();
    }
  });

  it('device auto (the default) takes the GPU when usable, else the CPU without a word', async () => {
    expect(SanaDiT.inputs.required.device.default).toBe('auto');
    for (const n of [TextEncoderGemma, LoadGemma2, DCAELoader])
      expect(n.inputs.required.device).toMatchObject({ default: 'auto', values: ['auto', 'cpu', 'cuda'] });
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const r = await DCAELoader.run({ vae_name: TINY, dtype: 'f32', device: 'auto' }, ctx());
      expect(Array.isArray(r)).toBe(true);
      const { devices } = await import('../../native/index.ts');
      const gpu = devices().find((d) => d.name === 'cuda')?.available === true;
      expect((outputs(r)[0] as DcaeRef).device).toBe(gpu ? 'cuda' : 'cpu');
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });

  it('SanaDiT names a missing checkpoint', async () => {
    await expect(SanaDiT.run({ ckpt_name: 'sana/Nope', dtype: 'f32', device: 'cpu' }, ctx())).rejects.toThrow(/"sana\/Nope" was not found/);
  });

  it('TextEncoderGemma encodes the prompt (CHI + selection) and the negative (plain)', async () => {
    const r = await TextEncoderGemma.run(
      {
        text_encoder: TINY,
        positive: 'A Red Fox in the snow',
        negative: '',
        complex_human_instruction: true,
        instruction: CHI_DIFFUSERS.join('\n'),
        max_sequence_length: 300,
        dtype: 'f32',
        device: 'cpu',
      },
      ctx(),
    );
    [pos, neg] = outputs(r) as [Conditioning, Conditioning];
    expect(pos.shape).toEqual([1, 300, 64]);
    expect(neg.shape).toEqual([1, 300, 64]);
    expect(pos.text).toEqual(['a red fox in the snow']);
    // The kept window starts at BOS; the prompt is a handful of tokens, the rest is padding.
    const posTokens = pos.mask.reduce((a, b) => a + b, 0);
    expect(posTokens).toBeGreaterThan(3);
    expect(posTokens).toBeLessThan(12);
    expect(pos.mask[0]).toBe(1);
    // "" encodes to BOS only.
    expect(neg.mask.reduce((a, b) => a + b, 0)).toBe(1);
    expect(pos.embeds.every(Number.isFinite)).toBe(true);
  });

  it('LoadGemma2 + Gemma2Encode give the same embedding as TextEncoderGemma', async () => {
    const g = outputs(await LoadGemma2.run({ text_encoder: TINY, dtype: 'f32', device: 'cpu' }, ctx()))[0];
    const c = outputs(
      await Gemma2Encode.run(
        { gemma: g as never, text: 'A Red Fox in the snow', complex_human_instruction: 'diffusers', lowercase: true, max_sequence_length: 300 },
        ctx(),
      ),
    )[0] as Conditioning;
    expect(c.shape).toEqual(pos.shape);
    let maxDiff = 0;
    for (let i = 0; i < c.embeds.length; i++) maxDiff = Math.max(maxDiff, Math.abs(c.embeds[i] - pos.embeds[i]));
    expect(maxDiff).toBe(0);
  });

  it('FlowDPMSampler: deterministic per seed, reports every step with a preview', async () => {
    const latent = emptyLatent(256, 256, 1);
    const c1 = ctx();
    const a = outputs(await FlowDPMSampler.run(sampleArgs(latent), c1))[0] as Latent;
    expect(a.shape).toEqual([1, 32, 8, 8]);
    expect(a.samples.every(Number.isFinite)).toBe(true);
    expect(c1.steps.map((s) => [s.value, s.max])).toEqual([
      [1, 4],
      [2, 4],
      [3, 4],
      [4, 4],
    ]);
    const png = c1.steps[0].preview!;
    expect(png.format).toBe('PNG');
    expect([...png.data.subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47]);
    const b = outputs(await FlowDPMSampler.run(sampleArgs(latent), ctx()))[0] as Latent;
    expect(b.samples).toEqual(a.samples);
    const c = outputs(await FlowDPMSampler.run(sampleArgs(latent, { seed: 2 }), ctx()))[0] as Latent;
    expect(c.samples).not.toEqual(a.samples);
    const e = outputs(await FlowDPMSampler.run(sampleArgs(latent, { sampler: 'flow_euler' }), ctx()))[0] as Latent;
    expect(e.samples).not.toEqual(a.samples);
  });

  it('PAG changes the result without touching the unpatched model', async () => {
    const latent = emptyLatent(256, 256, 1);
    const patched = outputs(await PAG.run({ model, scale: 3, layers: '1,2' }, ctx()))[0] as SanaModelRef;
    expect(model.pag).toBeUndefined();
    const plain = outputs(await FlowDPMSampler.run(sampleArgs(latent), ctx()))[0] as Latent;
    const withPag = outputs(await FlowDPMSampler.run(sampleArgs(latent, { model: patched }), ctx()))[0] as Latent;
    expect(withPag.samples).not.toEqual(plain.samples);
    expect(withPag.samples.every(Number.isFinite)).toBe(true);
  });

  it('FlowDPMSampler stops between steps when interrupted', async () => {
    const c = ctx(2);
    await expect(FlowDPMSampler.run(sampleArgs(emptyLatent(256, 256, 1), { steps: 6 }), c)).rejects.toBeInstanceOf(InterruptedError);
    expect(c.steps).toHaveLength(2);
  });

  it('FlowDPMSampler partial denoise starts from the input latent', async () => {
    const base = outputs(await FlowDPMSampler.run(sampleArgs(emptyLatent(256, 256, 1)), ctx()))[0] as Latent;
    const c = ctx();
    const half = outputs(await FlowDPMSampler.run(sampleArgs(base, { denoise: 0.5, seed: 9 }), c))[0] as Latent;
    expect(c.steps).toHaveLength(4);
    // Close to where it started (half the noise), far from a fresh sample with that seed.
    const fresh = outputs(await FlowDPMSampler.run(sampleArgs(emptyLatent(256, 256, 1), { seed: 9 }), ctx()))[0] as Latent;
    const dist = (x: Float32Array, y: Float32Array) => Math.sqrt(x.reduce((s, v, i) => s + (v - y[i]) ** 2, 0));
    expect(dist(half.samples, base.samples)).toBeLessThan(dist(fresh.samples, base.samples));
  });

  it('FlowDPMSampler names a text encoder that does not fit the model', async () => {
    const wide: Conditioning = { ...pos, embeds: new Float32Array(300 * 2304), shape: [1, 300, 2304] };
    await expect(FlowDPMSampler.run(sampleArgs(emptyLatent(256, 256, 1), { positive: wide }), ctx())).rejects.toThrow(
      /positive conditioning is 2304 wide but .* takes text embeddings of width 64/,
    );
  });

  it('DCAELoader + DCAEDecode decode to an IMAGE in [0, 1], cropping back a binned size', async () => {
    vae = outputs(await DCAELoader.run({ vae_name: TINY, dtype: 'f32', device: 'cpu' }, ctx()))[0] as DcaeRef;
    expect(vae).toMatchObject({ latentChannels: 32, scalingFactor: 0.41407, downsample: 32 });
    const binned = outputs(await EmptySanaLatent.run({ width: 320, height: 256, batch_size: 2, resolution_binning: '512px' }, ctx()))[0] as Latent;
    expect(binned.targetSize).toEqual({ height: 256, width: 320 });
    const lat = outputs(await FlowDPMSampler.run(sampleArgs(binned, { steps: 2 }), ctx()))[0] as Latent;
    expect(lat.targetSize).toEqual(binned.targetSize);
    const img = outputs(await DCAEDecode.run({ vae, latent: lat, tiled: false, ...noTiles }, ctx()))[0] as Image;
    expect([img.batch, img.height, img.width, img.channels]).toEqual([2, 256, 320, 3]);
    let min = Infinity;
    let max = -Infinity;
    for (const v of img.data) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThanOrEqual(1);
    expect(max - min).toBeGreaterThan(0.1);
  });

  it('DCAEDecode stops at the next decoder block when interrupted, and decodes fine afterwards', async () => {
    const lat = outputs(await FlowDPMSampler.run(sampleArgs(emptyLatent(256, 256, 1), { steps: 1 }), ctx()))[0] as Latent;
    const polling = (stopAt = Infinity) => {
      const c = ctx();
      let polls = 0;
      c.throwIfInterrupted = () => {
        if (++polls >= stopAt) throw new InterruptedError();
      };
      return { c, polls: () => polls };
    };
    const full = polling();
    await DCAEDecode.run({ vae, latent: lat, tiled: false, ...noTiles }, full.c);
    // The tiny DC-AE has a dozen blocks; one poll per block plus the node's own at the start.
    expect(full.polls()).toBeGreaterThan(8);
    for (const tiled of [false, true]) {
      const cut = polling(3);
      await expect(DCAEDecode.run({ vae, latent: lat, tiled, ...noTiles }, cut.c)).rejects.toBeInstanceOf(InterruptedError);
      expect(cut.polls()).toBe(3);
    }
    const again = outputs(await DCAEDecode.run({ vae, latent: lat, tiled: false, ...noTiles }, ctx()))[0] as Image;
    expect([again.height, again.width]).toEqual([256, 256]);
  });

  it('DCAEDecode tiled matches untiled closely', async () => {
    const lat = outputs(await FlowDPMSampler.run(sampleArgs(emptyLatent(512, 512, 1), { steps: 2 }), ctx()))[0] as Latent;
    const a = outputs(await DCAEDecode.run({ vae, latent: lat, tiled: false, ...noTiles }, ctx()))[0] as Image;
    const b = outputs(await DCAEDecode.run({ vae, latent: lat, tiled: true, ...noTiles }, ctx()))[0] as Image;
    expect([b.height, b.width]).toEqual([a.height, a.width]);
    let mad = 0;
    for (let i = 0; i < a.data.length; i++) mad += Math.abs(a.data[i] - b.data[i]);
    expect(mad / a.data.length).toBeLessThan(0.05);
  });

  it('DCAEDecode takes tile_size / overlap in pixels: more tiles, same image within the blend error, bad settings named', async () => {
    const lat = outputs(await FlowDPMSampler.run(sampleArgs(emptyLatent(512, 512, 1), { steps: 1 }), ctx()))[0] as Latent;
    const a = outputs(await DCAEDecode.run({ vae, latent: lat, tiled: false, ...noTiles }, ctx()))[0] as Image;
    const tilesSeen = (c: NodeContext) => {
      const calls: number[] = [];
      c.progress = (_done, total) => void calls.push(total);
      return calls;
    };
    // 16×16 latent: 256-px tiles = 8 latent px with 2 latent px (64 px) overlap → 3 × 3 tiles.
    const c = ctx();
    const seen = tilesSeen(c);
    const b = outputs(await DCAEDecode.run({ vae, latent: lat, tiled: true, tile_size: 256, overlap: 64 }, c))[0] as Image;
    expect(seen.at(-1)).toBe(9);
    let mad = 0;
    for (let i = 0; i < a.data.length; i++) mad += Math.abs(a.data[i] - b.data[i]);
    expect(mad / a.data.length).toBeLessThan(0.05);
    // tile_size is ignored when not tiled, and the default tile covers 512² in one piece.
    const c2 = ctx();
    const seen2 = tilesSeen(c2);
    await DCAEDecode.run({ vae, latent: lat, tiled: true, ...noTiles }, c2);
    expect(seen2.at(-1)).toBe(1);
    await expect(DCAEDecode.run({ vae, latent: lat, tiled: true, tile_size: 128, overlap: 128 }, ctx())).rejects.toThrow(
      /DCAEDecode input overlap: 128 px \(4 latent px\) must be smaller than tile_size 128 px/,
    );
    await expect(DCAEDecode.run({ vae, latent: lat, tiled: true, tile_size: 16, overlap: 0 }, ctx())).rejects.toThrow(/DCAEDecode input tile_size: 16 px/);
  });
});
