// One whole Sana-Sprint 0.6B image on the CPU backend, 1024² (latent 32²), as SanaSprintPipeline
// does it: Gemma-2-2B encodes the prompt only (complex human instruction, real tokenizer; Sprint
// has no negative prompt), 2 SCM steps (max 1.5708, intermediate 1.3) run the Sprint 600M
// transformer (28 blocks, q/k norms, guidance embedding 4.5 × 0.1, batch 1: no CFG batch), the DC-AE
// f32c32 decoder decodes untiled, and the result becomes 8-bit RGB.
//   npm run bench -- sprint
//   SANA_BENCH_SPRINT_SMALL=1 npm run bench -- sprint   (smoke run: 256², 2 steps, 2 layers)
// Same method as pipeline.bench.ts (random weights in the real shapes, bf16, one model at a time,
// builds reported apart as build_s); only the denoising stage differs.
import os from 'node:os';
import * as native from '../native/index.ts';
import type { DType } from '../native/api.ts';
import { imageToRgb8 } from '../nodes/image/types.ts';
import { buildDcaeDecoder, expectedDecoderTensors, parseDcaeConfig } from '../nodes/models/dcae.ts';
import { buildGemma2, gemma2Flops, parseGemma2Config, type Gemma2Config } from '../nodes/models/gemma2.ts';
import { encodePrompts } from '../nodes/models/prompt.ts';
import { parseSanaTransformerConfig } from '../nodes/models/sana_dit/config.ts';
import { expectedTransformerTensors } from '../nodes/models/sana_dit/layout.ts';
import { buildSanaTransformer } from '../nodes/models/sana_dit/model.ts';
import { loadGemmaTokenizer } from '../nodes/models/tokenizer.ts';
import { toImage } from '../nodes/sana/dcae_decode.ts';
import { sprintSampleWithTransformer, SPRINT_DEFAULTS } from '../nodes/models/sample.ts';
import type { Conditioning, Latent } from '../nodes/sana/types.ts';
import { SANA_VAE_CONFIG, dcaeFlops } from './dcae.bench.ts';
import { SANA_600M_CONFIG, ditFlops, median, randomWeights } from './dit.bench.ts';
import { GEMMA2_2B_CONFIG } from './gemma.bench.ts';
import { randomGemmaWeights, stage, toConditioning, type StageResult } from './pipeline.bench.ts';
import type { BenchRow } from './types.ts';

const SMALL = process.env.SANA_BENCH_SPRINT_SMALL === '1';
const SIDE = SMALL ? 256 : 1024;
const STEPS = 2;
const LAYERS = SMALL ? 2 : undefined;
const SEED = 42;
const MAX_SEQUENCE_LENGTH = 300;
const DTYPE: DType = 'bf16';
const PROMPT = 'A tiny astronaut hatching from an egg on the moon';
const MB = 1 / (1024 * 1024);

/** diffusers' convert script for SanaSprint_600M_P1_D28: Sana 600M + q/k norms + guidance embedding. */
export const SANA_SPRINT_600M_CONFIG = { ...SANA_600M_CONFIG, qk_norm: 'rms_norm_across_heads', guidance_embeds: true, guidance_embeds_scale: 0.1 };

export default async function sprintBench(): Promise<BenchRow[]> {
  const backend = native.getBackend('cpu');
  const loadStart = os.loadavg();
  const mode = SMALL ? `SMALL smoke run: ${SIDE}², ${STEPS} steps, ${LAYERS} Gemma and DiT layers` : `${SIDE}², ${STEPS} steps`;
  console.error(`[sprint] ${mode}; load ${loadStart.map((l) => l.toFixed(2)).join(' ')}`);
  const tag = `sprint.${SIDE}${SMALL ? '.small' : ''}`;
  const common = `random weights, ${DTYPE}, CPU, one model at a time`;
  const rows: BenchRow[] = [];

  // --- text: the prompt only ------------------------------------------------------------------
  const gemmaFull = parseGemma2Config(GEMMA2_2B_CONFIG, 'gemma-2-2b (bench)');
  const gemmaCfg: Gemma2Config = LAYERS ? { ...gemmaFull, numLayers: LAYERS, slidingLayers: gemmaFull.slidingLayers.slice(0, LAYERS) } : gemmaFull;
  const tokenizer = loadGemmaTokenizer();
  const gemmaBuilt = await stage(backend, 'build Gemma-2 (random weights)', () => buildGemma2(gemmaCfg, randomGemmaWeights(gemmaCfg), backend, DTYPE));
  const gemmaModel = gemmaBuilt.value;
  let text: StageResult<{ positive: Conditioning; lengthAll: number }>;
  try {
    text = await stage(backend, 'text encode', () => {
      const enc = encodePrompts(gemmaModel, tokenizer, { positive: PROMPT, chi: 'diffusers', lowercase: true, maxLength: MAX_SEQUENCE_LENGTH });
      return { positive: toConditioning(enc.cond, PROMPT), lengthAll: enc.tokens.cond.lengthAll };
    });
  } finally {
    gemmaModel.dispose();
  }
  const textFlops = gemma2Flops(gemmaCfg, 1, text.value.lengthAll);
  rows.push({
    name: `${tag}.text_encode`,
    metrics: {
      seconds: text.seconds,
      tflop: textFlops / 1e12,
      tflops: textFlops / text.seconds / 1e12,
      peak_backend_mb: text.peakBackendMb,
      peak_rss_mb: text.peakRssMb,
      cond_tokens: text.value.lengthAll,
      build_s: gemmaBuilt.seconds,
    },
    notes: `Gemma-2-2B ${gemmaCfg.numLayers} layers, full vocabulary, real tokenizer, diffusers CHI, no negative; ${common}`,
  });

  // --- denoise: 2 SCM steps, batch 1 -------------------------------------------------------------
  const ditCfg = parseSanaTransformerConfig(LAYERS ? { ...SANA_SPRINT_600M_CONFIG, num_layers: LAYERS } : SANA_SPRINT_600M_CONFIG, 'Sana_Sprint_0.6B (bench)');
  const ditBuilt = await stage(backend, 'build Sprint DiT (random weights)', () =>
    buildSanaTransformer(ditCfg, randomWeights(expectedTransformerTensors(ditCfg)), backend, DTYPE, 'random weights'),
  );
  const net = ditBuilt.value;
  const h = SIDE / 32;
  const empty: Latent = { samples: new Float32Array(32 * h * h), shape: [1, 32, h, h] };
  const stepTimes: number[] = [];
  let denoise: StageResult<Latent>;
  try {
    let last = process.hrtime.bigint();
    denoise = await stage(backend, `denoise (${STEPS} SCM steps)`, () =>
      sprintSampleWithTransformer(
        net,
        backend,
        { dtype: DTYPE },
        text.value.positive,
        empty,
        {
          seed: SEED,
          steps: STEPS,
          guidance: SPRINT_DEFAULTS.guidance,
          maxTimesteps: SPRINT_DEFAULTS.maxTimesteps,
          intermediateTimesteps: SPRINT_DEFAULTS.intermediateTimesteps,
          denoise: 1,
        },
        (step, total) => {
          const now = process.hrtime.bigint();
          stepTimes.push(Number(now - last) / 1e9);
          last = now;
          console.error(`[sprint]   step ${step}/${total}: ${stepTimes[stepTimes.length - 1]!.toFixed(2)} s`);
        },
        'sprint bench',
      ),
    );
  } finally {
    net.dispose();
  }
  const latent = denoise.value;
  if (!latent.samples.every(Number.isFinite)) throw new Error('sprint bench: the sampled latent has non-finite values (random weights blew up)');
  const denoiseFlops = STEPS * ditFlops(ditCfg, 1, h * h, MAX_SEQUENCE_LENGTH);
  rows.push({
    name: `${tag}.denoise`,
    metrics: {
      seconds: denoise.seconds,
      steps: STEPS,
      s_per_step: median(stepTimes),
      first_step_s: stepTimes[0]!,
      tflop: denoiseFlops / 1e12,
      tflops: denoiseFlops / denoise.seconds / 1e12,
      peak_backend_mb: denoise.peakBackendMb,
      weights_mb: net.bytes * MB,
      peak_rss_mb: denoise.peakRssMb,
      build_s: ditBuilt.seconds,
    },
    units: { steps: '', s_per_step: 's', first_step_s: 's' },
    notes: `Sana-Sprint 600M ${ditCfg.numLayers} blocks, SCM [1.5708, 1.3, 0], guidance ${SPRINT_DEFAULTS.guidance} × 0.1, batch 1, latent ${h}²; the first step packs the weights; tflop leaves out q/k norms and the guidance MLP; ${common}`,
  });

  // --- decode ------------------------------------------------------------------------------------
  const vaeCfg = parseDcaeConfig(SANA_VAE_CONFIG, 'dc-ae-f32c32-sana-1.0 (bench)');
  const vaeBuilt = await stage(backend, 'build DC-AE decoder (random weights)', () =>
    buildDcaeDecoder(vaeCfg, randomWeights(expectedDecoderTensors(vaeCfg)), backend, DTYPE, 'random weights'),
  );
  const decoder = vaeBuilt.value;
  let decoded: StageResult<Float32Array>;
  try {
    decoded = await stage(backend, 'decode', () => {
      const inv = 1 / vaeCfg.scalingFactor;
      const img = decoder.decode({ data: latent.samples.map((v) => v * inv), shape: latent.shape }); // (1, 3, 32h, 32w)
      try {
        return img.toFloat32();
      } finally {
        img.dispose();
      }
    });
  } finally {
    decoder.dispose();
  }
  const decodeFlops = dcaeFlops(vaeCfg, h, h);
  rows.push({
    name: `${tag}.decode`,
    metrics: {
      seconds: decoded.seconds,
      tflop: decodeFlops / 1e12,
      tflops: decodeFlops / decoded.seconds / 1e12,
      peak_backend_mb: decoded.peakBackendMb,
      peak_rss_mb: decoded.peakRssMb,
      build_s: vaeBuilt.seconds,
    },
    notes: `DC-AE f32c32 decoder, untiled, first call; ${common}`,
  });

  const convert = await stage(backend, 'to uint8', () => imageToRgb8(toImage(decoded.value, 1, SIDE, SIDE), 0));
  if (convert.value.data.length !== SIDE * SIDE * 3)
    throw new Error(`sprint bench: the image has ${convert.value.data.length} bytes, expected ${SIDE * SIDE * 3}`);
  rows.push({ name: `${tag}.to_uint8`, metrics: { seconds: convert.seconds, peak_rss_mb: convert.peakRssMb }, notes: 'toImage + imageToRgb8, host JS' });

  const stages = [text, denoise, decoded, convert];
  const total = stages.reduce((s, st) => s + st.seconds, 0);
  const load = os.loadavg();
  rows.push({
    name: `${tag}.total`,
    metrics: {
      seconds: total,
      tflop: (textFlops + denoiseFlops + decodeFlops) / 1e12,
      peak_backend_mb: Math.max(...stages.map((st) => st.peakBackendMb)),
      peak_rss_mb: Math.max(...stages.map((st) => st.peakRssMb)),
      build_s: gemmaBuilt.seconds + ditBuilt.seconds + vaeBuilt.seconds,
      load1_start: loadStart[0]!,
      load1_end: load[0]!,
    },
    units: { load1_start: '', load1_end: '' },
    notes: `${mode}; stage seconds summed (model builds excluded, build_s)`,
  });
  console.error(`[sprint] total ${total.toFixed(1)} s; load ${load.map((l) => l.toFixed(2)).join(' ')}`);
  return rows;
}
