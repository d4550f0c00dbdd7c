// One whole Sana-600M image on the CPU backend, 1024² (latent 32²), as a text-to-image run does
// it: Gemma-2-2B encodes the prompt (complex human instruction, real tokenizer) and the empty
// negative, 20 DPM-Solver++ steps with CFG 4.5 run the Sana_600M transformer (all 28 blocks),
// the DC-AE f32c32 decoder decodes untiled, and the result becomes 8-bit RGB.
//   npm run bench -- pipeline
//   SANA_BENCH_PIPELINE_SMALL=1 npm run bench -- pipeline   (smoke run: 256², 2 steps, 2 layers)
// Real configs, random weights (no checkpoint can be downloaded here), bf16 everywhere. The models
// are built one at a time and each is disposed after its stage, as the model cache does under a
// budget that holds one model: the peaks are per stage, not the three models together. Building
// random weights is not a checkpoint load, so its time is reported apart (build_s) and left out of
// the image total. Rows per stage: seconds, FLOPs where bench/dit, dcae and gemma2.ts count them,
// peak backend memory (resetPeak at the stage start; weights and packed copies included) and the
// peak process RSS during the stage (VmHWM, reset through /proc/self/clear_refs).
import fs from 'node:fs';
import os from 'node:os';
import * as native from '../native/index.ts';
import type { Backend, DType, Tensor } from '../native/api.ts';
import { buildDcaeDecoder, expectedDecoderTensors, parseDcaeConfig } from '../nodes/models/dcae.ts';
import { buildGemma2, gemma2Flops, parseGemma2Config, type Gemma2Config, gemma2Layout } from '../nodes/models/gemma2.ts';
import { layoutShapes } from '../nodes/models/layout.ts';
import type { WeightSource } from '../nodes/models/weight_set.ts';
import { encodePrompts, preprocessPrompt, realLength, type EncodedText } from '../nodes/models/prompt.ts';
import { parseSanaTransformerConfig } from '../nodes/models/sana_dit/config.ts';
import { expectedTransformerTensors } from '../nodes/models/sana_dit/layout.ts';
import { buildSanaTransformer } from '../nodes/models/sana_dit/model.ts';
import { loadGemmaTokenizer } from '../nodes/models/tokenizer.ts';
import { imageToRgb8 } from '../nodes/image/types.ts';
import { toImage } from '../nodes/sana/dcae_decode.ts';
import { sampleWithTransformer } from '../nodes/models/sample.ts';
import type { Conditioning, Latent } from '../nodes/sana/types.ts';
import { SANA_VAE_CONFIG, dcaeFlops } from './dcae.bench.ts';
import { SANA_600M_CONFIG, ditFlops, median, noise, randomWeights } from './dit.bench.ts';
import { GEMMA2_2B_CONFIG } from './gemma.bench.ts';
import type { BenchRow } from './types.ts';
import { matmulCeiling } from './ceiling.ts';

const SMALL = process.env.SANA_BENCH_PIPELINE_SMALL === '1';
const SIDE = SMALL ? 256 : 1024;
const STEPS = SMALL ? 2 : 20;
/** Blocks built; the smoke run cuts both transformers to 2 (full runs: all of them). */
const LAYERS = SMALL ? 2 : undefined;
const CFG = 4.5;
const SEED = 42;
const MAX_SEQUENCE_LENGTH = 300;
const DTYPE: DType = 'bf16';
const PROMPT = 'A cozy wooden cabin in a snowy pine forest at dusk, warm light glowing from the windows and smoke rising from the chimney';
const MB = 1 / (1024 * 1024);

/**
 * Random Gemma-2 weights of the real shapes, including the full 256k-row embedding (the real
 * tokenizer's ids reach it, and its 1.2 GB of bf16 is part of the encoder's memory). Every tensor
 * is a prefix of one noise buffer as large as the biggest projection; the embedding is uploaded
 * in row blocks of that buffer and joined, so no 2.4 GB f32 host copy of it ever exists.
 */
export function randomGemmaWeights(cfg: Gemma2Config): WeightSource {
  const shapes = layoutShapes(gemma2Layout(cfg));
  const D = cfg.hiddenSize;
  const buf = noise(cfg.intermediateSize * D, Math.sqrt(3), 17);
  const scaled = (n: number, scale: number): Float32Array => buf.subarray(0, n).map((v) => v * scale);
  return {
    keys: () => [...shapes.keys()],
    has: (key) => shapes.has(key),
    entry: (key) => ({ name: key, dtype: 'F32', shape: shapes.get(key)!, file: '<random>' }),
    load(key: string, backend: Backend, dtype?: DType): Tensor {
      const shape = shapes.get(key);
      if (!shape) throw new Error(`pipeline bench: no Gemma weight ${key}`);
      const dt = dtype ?? 'f32';
      if (key === 'embed_tokens.weight') {
        const [V, width] = shape as [number, number];
        const rowsPerBlock = Math.floor(buf.length / width);
        const block = scaled(rowsPerBlock * width, 0.02); // (rowsPerBlock, D), rows ~ N(0, 0.02²)-sized like Gemma's
        return backend.scope(() => {
          const parts: Tensor[] = [];
          for (let r = 0; r < V; r += rowsPerBlock) {
            const rows = Math.min(rowsPerBlock, V - r);
            parts.push(backend.fromArray(block.subarray(0, rows * width), [rows, width], dt));
          }
          return backend.concat(parts, 0); // (V, D)
        });
      }
      const n = shape.reduce((a, b) => a * b, 1);
      // RMSNorm offsets near 0 (Gemma's 1 + w), projections ~ 1/√fan-in.
      return backend.fromArray(scaled(n, key.includes('norm') ? 0.05 : 1 / Math.sqrt(shape[shape.length - 1]!)), shape, dt);
    },
  };
}

function procStatusKb(field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Resets the kernel's peak-RSS mark (VmHWM) to the current RSS; false where that is not allowed. */
function resetPeakRss(): boolean {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

export interface StageResult<T> {
  value: T;
  seconds: number;
  /** Backend bytes at the stage's peak (everything allocated, weights included). */
  peakBackendMb: number;
  /** Process RSS peak during the stage (since the reset), or the lifetime peak where no reset works. */
  peakRssMb: number;
}

// The reset that makes per-stage RSS peaks possible also resets getrusage's maxRSS (both read the
// kernel's high-water mark), so the process's lifetime peak is the largest peak seen by `stage`.
let lifetimePeakRssMb = 0;

/** Times `fn` with the backend peak and the process RSS peak reset at its start. */
export async function stage<T>(backend: Backend, name: string, fn: () => Promise<T> | T): Promise<StageResult<T>> {
  backend.resetPeak();
  const rssReset = resetPeakRss();
  const t0 = process.hrtime.bigint();
  const value = await fn();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const hwmKb = rssReset ? procStatusKb('VmHWM') : undefined;
  const peakRssMb = (hwmKb ?? process.resourceUsage().maxRSS) / 1024;
  lifetimePeakRssMb = Math.max(lifetimePeakRssMb, peakRssMb);
  const peakBackendMb = backend.memory().peak * MB;
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  console.error(`[pipeline] ${name}: ${seconds.toFixed(2)} s, peak backend ${peakBackendMb.toFixed(0)} MB, peak RSS ${peakRssMb.toFixed(0)} MB (load ${load})`);
  return { value, seconds, peakBackendMb, peakRssMb };
}

/** A cond/uncond tensor pair -> host CONDITIONING, as nodes/sana/text_encode.ts hands it on. */
export function toConditioning(t: EncodedText, text: string): Conditioning {
  try {
    const [B, L, D] = t.embeds.shape as [number, number, number];
    return { embeds: t.embeds.toFloat32(), mask: t.mask, shape: [B, L, D], text: [preprocessPrompt(text)] };
  } finally {
    t.embeds.dispose();
  }
}

export default async function pipelineBench(): Promise<BenchRow[]> {
  const backend = native.getBackend('cpu');
  const loadStart = os.loadavg();
  const mode = SMALL ? `SMALL smoke run: ${SIDE}², ${STEPS} steps, ${LAYERS} Gemma and DiT layers` : `${SIDE}², ${STEPS} steps`;
  console.error(`[pipeline] ${mode}; load ${loadStart.map((l) => l.toFixed(2)).join(' ')}`);
  const tag = `pipeline.${SIDE}${SMALL ? '.small' : ''}`;
  const common = `random weights, ${DTYPE}, CPU, one model at a time`;
  const rows: BenchRow[] = matmulCeiling(backend, 'start');

  // --- text: prompt with the complex human instruction + empty negative ----------------------
  const gemmaFull = parseGemma2Config(GEMMA2_2B_CONFIG, 'gemma-2-2b (bench)');
  const gemmaCfg: Gemma2Config = LAYERS ? { ...gemmaFull, numLayers: LAYERS, slidingLayers: gemmaFull.slidingLayers.slice(0, LAYERS) } : gemmaFull;
  const tokenizer = loadGemmaTokenizer();
  const gemmaBuilt = await stage(backend, 'build Gemma-2 (random weights)', () => buildGemma2(gemmaCfg, randomGemmaWeights(gemmaCfg), backend, DTYPE));
  const gemmaModel = gemmaBuilt.value;
  const gemmaBuild = gemmaBuilt.seconds;
  let text: StageResult<{ positive: Conditioning; negative: Conditioning; lengthAll: number; promptTokens: number; encoded: readonly [number, number] }>;
  try {
    text = await stage(backend, 'text encode', () => {
      const enc = encodePrompts(gemmaModel, tokenizer, { positive: PROMPT, negative: '', chi: 'diffusers', lowercase: true, maxLength: MAX_SEQUENCE_LENGTH });
      const positive = toConditioning(enc.cond, PROMPT);
      const negative = toConditioning(enc.uncond!, '');
      const promptTokens = enc.tokens.cond.mask[0]!.reduce((a, b) => a + b, 0);
      // What the encoder ran on: the padding past the last real token is not encoded.
      const encoded = [realLength(enc.tokens.cond.mask), realLength(enc.tokens.uncond!.mask)] as const;
      return { positive, negative, lengthAll: enc.tokens.cond.lengthAll, promptTokens, encoded };
    });
  } finally {
    gemmaModel.dispose();
  }
  const textFlops = gemma2Flops(gemmaCfg, 1, text.value.encoded[0]) + gemma2Flops(gemmaCfg, 1, text.value.encoded[1]);
  rows.push({
    name: `${tag}.text_encode`,
    metrics: {
      seconds: text.seconds,
      tflop: textFlops / 1e12,
      tflops: textFlops / text.seconds / 1e12,
      peak_backend_mb: text.peakBackendMb,
      weights_mb: gemmaModel.bytes * MB,
      peak_rss_mb: text.peakRssMb,
      cond_tokens: text.value.lengthAll,
      cond_real_tokens: text.value.promptTokens,
      uncond_tokens: MAX_SEQUENCE_LENGTH,
      cond_encoded_tokens: text.value.encoded[0],
      uncond_encoded_tokens: text.value.encoded[1],
      build_s: gemmaBuild,
    },
    notes: `Gemma-2-2B ${gemmaCfg.numLayers} layers, full vocabulary, real tokenizer, diffusers CHI; ${common}`,
  });

  // --- denoise: 20 DPM-Solver++ steps, CFG (batch 2 per forward) -------------------------------
  const ditFull = parseSanaTransformerConfig(SANA_600M_CONFIG, 'Sana_600M (bench)');
  const ditCfg = LAYERS ? parseSanaTransformerConfig({ ...SANA_600M_CONFIG, num_layers: LAYERS }, `Sana_600M, ${LAYERS} blocks (bench)`) : ditFull;
  const ditBuilt = await stage(backend, 'build Sana DiT (random weights)', () =>
    buildSanaTransformer(ditCfg, randomWeights(expectedTransformerTensors(ditCfg)), backend, DTYPE, 'random weights'),
  );
  const net = ditBuilt.value;
  const ditBuild = ditBuilt.seconds;
  const h = SIDE / 32;
  const empty: Latent = { samples: new Float32Array(32 * h * h), shape: [1, 32, h, h] };
  const stepTimes: number[] = [];
  let denoise: StageResult<Latent>;
  try {
    let last = process.hrtime.bigint();
    denoise = await stage(backend, `denoise (${STEPS} steps)`, () =>
      sampleWithTransformer(
        net,
        backend,
        { dtype: DTYPE, flowShift: 3 },
        text.value.positive,
        text.value.negative,
        empty,
        { seed: SEED, steps: STEPS, cfg: CFG, flowShift: 0, sampler: 'dpmpp_2m', denoise: 1 },
        (step, total) => {
          const now = process.hrtime.bigint();
          stepTimes.push(Number(now - last) / 1e9);
          last = now;
          if (step === 1 || step === total || step % 5 === 0)
            console.error(`[pipeline]   step ${step}/${total}: ${stepTimes[stepTimes.length - 1]!.toFixed(2)} s`);
        },
        'pipeline bench',
      ),
    );
  } finally {
    net.dispose();
  }
  const latent = denoise.value;
  if (!latent.samples.every(Number.isFinite)) throw new Error('pipeline bench: the sampled latent has non-finite values (random weights blew up)');
  // The sampler prepares the text side (caption projection, every block's k|v) once.
  const captionFlops = ditFlops(ditCfg, 2, h * h, MAX_SEQUENCE_LENGTH) - ditFlops(ditCfg, 2, h * h, MAX_SEQUENCE_LENGTH, true);
  const denoiseFlops = STEPS * ditFlops(ditCfg, 2, h * h, MAX_SEQUENCE_LENGTH, true) + captionFlops;
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
      build_s: ditBuild,
    },
    units: { steps: '', s_per_step: 's', first_step_s: 's' },
    notes: `Sana_600M ${ditCfg.numLayers} blocks, dpmpp_2m, CFG ${CFG}, seed ${SEED}, latent ${h}²; s_per_step = median; the first step packs the weights; ${common}`,
  });

  // --- decode: DC-AE f32c32, untiled ------------------------------------------------------------
  const vaeCfg = parseDcaeConfig(SANA_VAE_CONFIG, 'dc-ae-f32c32-sana-1.0 (bench)');
  const vaeBuilt = await stage(backend, 'build DC-AE decoder (random weights)', () =>
    buildDcaeDecoder(vaeCfg, randomWeights(expectedDecoderTensors(vaeCfg)), backend, DTYPE, 'random weights'),
  );
  const decoder = vaeBuilt.value;
  const vaeBuild = vaeBuilt.seconds;
  let decoded: StageResult<Float32Array>;
  try {
    decoded = await stage(backend, 'decode', () => {
      const inv = 1 / vaeCfg.scalingFactor;
      const z = latent.samples.map((v) => v * inv); // (1, 32, h, w)
      const img = decoder.decode({ data: z, shape: latent.shape }); // (1, 3, 32h, 32w) f32
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
      weights_mb: decoder.bytes * MB,
      peak_rss_mb: decoded.peakRssMb,
      build_s: vaeBuild,
    },
    notes: `DC-AE f32c32 decoder, untiled, first call (weights packed inside); ${common}`,
  });

  // --- image: [-1, 1] CHW -> IMAGE [0, 1] HWC -> 8-bit RGB ---------------------------------------
  const convert = await stage(backend, 'to uint8', () => imageToRgb8(toImage(decoded.value, 1, SIDE, SIDE), 0));
  const rgb = convert.value;
  if (rgb.data.length !== SIDE * SIDE * 3) throw new Error(`pipeline bench: the image has ${rgb.data.length} bytes, expected ${SIDE * SIDE * 3}`);
  rows.push({
    name: `${tag}.to_uint8`,
    metrics: { seconds: convert.seconds, peak_rss_mb: convert.peakRssMb },
    notes: 'toImage (DCAEDecode) + imageToRgb8 (SaveImage), host JS',
  });

  const stages = [text, denoise, decoded, convert];
  const load = os.loadavg();
  rows.push({
    name: `${tag}.total`,
    metrics: {
      seconds: stages.reduce((s, st) => s + st.seconds, 0),
      tflop: (textFlops + denoiseFlops + decodeFlops) / 1e12,
      tflops: (textFlops + denoiseFlops + decodeFlops) / stages.reduce((s, st) => s + st.seconds, 0) / 1e12,
      peak_backend_mb: Math.max(...stages.map((st) => st.peakBackendMb)),
      peak_rss_mb: Math.max(...stages.map((st) => st.peakRssMb)),
      build_peak_rss_mb: Math.max(gemmaBuilt.peakRssMb, ditBuilt.peakRssMb, vaeBuilt.peakRssMb),
      lifetime_max_rss_mb: lifetimePeakRssMb,
      build_s: gemmaBuild + ditBuild + vaeBuild,
      load1_start: loadStart[0]!,
      load1_end: load[0]!,
      load5_end: load[1]!,
      load15_end: load[2]!,
    },
    units: { load1_start: '', load1_end: '', load5_end: '', load15_end: '' },
    notes: `${mode}; stage seconds summed (model builds excluded, build_s); peaks = the largest stage's; lifetime_max_rss_mb includes the random-weight builds`,
  });
  console.error(`[pipeline] total ${stages.reduce((s, st) => s + st.seconds, 0).toFixed(1)} s; load ${load.map((l) => l.toFixed(2)).join(' ')}`);
  rows.push(...matmulCeiling(backend, 'end'));
  return rows;
}
