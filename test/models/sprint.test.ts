// Sana-Sprint end to end against shared/fixtures/golden/sprint/pipeline: the real
// SanaSprintPipeline call re-run with our models — Gemma-2 on the stored ids, the BOS + last
// (M − 1) selection, the guidance embedding value, every SCM step (scaled transformer input,
// transformer output, scheduler model output, latents, x0) and the DC-AE decode. The loop runs
// free (our own latents feed the next step). Every parameter comes from pipeline.json and the
// io file's metadata.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as native from '../../native/index.ts';
import type { DType, Tensor } from '../../native/api.ts';
import { loadDcaeDecoder } from '../../nodes/models/dcae.ts';
import { loadGemma2 } from '../../nodes/models/gemma2.ts';
import { readFixture } from '../../nodes/models/golden/fixture.ts';
import { compareArrays, F32_TOL, type GoldenCheck, type Tolerance } from '../../nodes/models/golden/transformer.ts';
import { selectIndices } from '../../nodes/models/prompt.ts';
import { loadSanaTransformer } from '../../nodes/models/sana_dit.ts';
import { readScmSchedulerConfig, sampleScm } from '../../nodes/models/scm_scheduler.ts';

const HEAVY_MS = 300_000;
const DIR = resolve(import.meta.dirname, '../../../shared/fixtures/golden/sprint/pipeline');
const backend = native.getBackend('cpu');
const f32 = Math.fround;

/** Fixture README: two steps and a decoder, so ~1e-3 end to end in f32. */
const E2E_TOL: Tolerance = { atol: 1e-3, rtol: 1e-3 };
/**
 * All three models in bf16 (latents, scaling and scheduler in f32): the Sana 1.0 pipeline's bf16
 * bound. Measured on the CPU backend (printed by the test): max |Δ| 0.127 (vae.decode_output,
 * values ≤ 3), worst ratio 0.30; f32 max |Δ| 4.8e-6, worst ratio 0.016 under 1e-3.
 */
const E2E_BF16_TOL: Tolerance = { atol: 0.4, rtol: 0.1 };

interface PipelineJson {
  models: { scheduler: string; text_encoder: string; transformer: string; vae: string };
  num_inference_steps: string; guidance_scale: string; guidance_embeds_scale: string; generator_seed: string;
  max_timesteps: string; intermediate_timesteps: string; max_sequence_length: string; height: string; width: string;
  vae_scaling_factor: string; prompt: string;
}

/**
 * The fixture's step-0 noise (unit variance), recovered from its own step 0: (latents_out −
 * cos t₁·denoised) / (σ_d · sin t₁). It is not the stream of `generator_seed` (see the
 * 'free run' test), so the full-chain checks replay it.
 */
function recordedNoise(fx: ReturnType<typeof readFixture>, sigmaData: number): Float32Array {
  const t1 = fx.get('timesteps').data[1]!;
  const x0 = fx.get('step0.denoised').data, lo = fx.get('step0.latents_out').data;
  return x0.map((v, i) => (lo[i]! - Math.cos(t1) * v) / (sigmaData * Math.sin(t1)));
}

async function runSprint(dtype: DType, replayNoise: boolean): Promise<GoldenCheck[]> {
  const pj = JSON.parse(readFileSync(resolve(DIR, 'pipeline.json'), 'utf8')) as PipelineJson;
  const fx = readFixture(resolve(DIR, 'io.safetensors'));
  // The io file's metadata records the same call: both must agree on every parameter used here.
  for (const k of ['num_inference_steps', 'guidance_scale', 'guidance_embeds_scale', 'generator_seed', 'max_timesteps', 'intermediate_timesteps', 'max_sequence_length', 'height', 'width', 'vae_scaling_factor', 'prompt'] as const) {
    expect(fx.metadata[k], `metadata ${k}`).toBe(pj[k]);
  }
  const num = (k: keyof PipelineJson): number => { const v = Number(pj[k]); expect(Number.isFinite(v), k).toBe(true); return v; };
  const tol = dtype === 'f32' ? E2E_TOL : E2E_BF16_TOL;
  const compTol = dtype === 'f32' ? F32_TOL : E2E_BF16_TOL;
  const checks: GoldenCheck[] = [];
  const host = (t: Tensor): Float32Array => { try { return t.toFloat32(); } finally { t.dispose(); } };
  const model = (k: keyof PipelineJson['models']): string => resolve(DIR, pj.models[k]);

  // --- text: Gemma-2 on the stored ids, then BOS + the last M − 1 positions ------------------------
  const M = num('max_sequence_length');
  const ids = fx.get('text_encoder.prompt.input_ids'), amask = fx.get('text_encoder.prompt.attention_mask');
  const [B, Lall] = ids.shape as [number, number];
  const rows = (d: Float32Array): number[][] => Array.from({ length: B }, (_, b) => Array.from(d.subarray(b * Lall, (b + 1) * Lall)));
  const te = await loadGemma2(model('text_encoder'), backend, dtype, { native });
  let hid: Float32Array;
  const D = te.config.hiddenSize;
  try { hid = host(te.encode(rows(ids.data), rows(amask.data))); } finally { te.dispose(); }
  checks.push(compareArrays('text_encoder.prompt.last_hidden_state', hid, fx.get('text_encoder.prompt.last_hidden_state'), compTol));
  const sel = selectIndices(Lall, M);
  const embeds = new Float32Array(B * M * D), mask = new Float32Array(B * M);
  for (let b = 0; b < B; b++) {
    sel.forEach((j, s) => {
      embeds.set(hid.subarray((b * Lall + j) * D, (b * Lall + j + 1) * D), (b * M + s) * D);
      mask[b * M + s] = amask.data[b * Lall + j]!;
    });
  }
  checks.push(compareArrays('transformer.encoder_hidden_states', embeds, fx.get('transformer.encoder_hidden_states'), compTol));
  checks.push(compareArrays('transformer.encoder_attention_mask', mask, fx.get('transformer.encoder_attention_mask'), { atol: 0, rtol: 0 }));

  // --- SCM denoising --------------------------------------------------------------------------------
  const init = fx.get('initial_latents');
  const net = await loadSanaTransformer(model('transformer'), backend, dtype, { native });
  const dec = await loadDcaeDecoder(model('vae'), backend, dtype, { native });
  try {
    const sc = dec.config.spatialCompression;
    expect(init.shape).toEqual([B, net.config.inChannels, num('height') / sc, num('width') / sc]);
    expect(net.config.guidanceEmbedsScale).toBe(num('guidance_embeds_scale'));
    let guidanceSeen: number | undefined;
    const sched = readScmSchedulerConfig(model('scheduler'));
    const replay = replayNoise ? recordedNoise(fx, sched.sigmaData) : undefined;
    const res = await sampleScm(
      (input, s, g) => {
        guidanceSeen = g;
        return host(net.forward({ data: input, shape: init.shape }, [s], { data: embeds, shape: [B, M, D] }, mask, { guidance: [g] }));
      },
      sched,
      {
        shape: init.shape, steps: num('num_inference_steps'), seed: BigInt(pj.generator_seed), latents: init.data,
        guidanceScale: num('guidance_scale'), guidanceEmbedsScale: net.config.guidanceEmbedsScale,
        maxTimesteps: num('max_timesteps'),
        intermediateTimesteps: pj.intermediate_timesteps === 'None' ? null : num('intermediate_timesteps'),
        ...(replay ? { noiseAt: (i: number) => (i === 0 ? replay : undefined) } : {}),
      },
      (r) => {
        const p = `step${r.step}.`;
        checks.push(compareArrays(`${p}timestep`, Float32Array.of(r.s), fx.get(`${p}timestep`), { atol: 0, rtol: 0 }));
        checks.push(compareArrays(`${p}scheduler_timestep`, Float32Array.of(r.t), fx.get(`${p}scheduler_timestep`), { atol: 0, rtol: 0 }));
        checks.push(compareArrays(`${p}scheduler_sample`, r.sample, fx.get(`${p}scheduler_sample`), tol));
        checks.push(compareArrays(`${p}transformer_input`, r.transformerInput, fx.get(`${p}transformer_input`), tol));
        checks.push(compareArrays(`${p}transformer_output`, r.transformerOutput, fx.get(`${p}transformer_output`), tol));
        checks.push(compareArrays(`${p}scheduler_model_output`, r.modelOutput, fx.get(`${p}scheduler_model_output`), tol));
        checks.push(compareArrays(`${p}latents_out`, r.latentsOut, fx.get(`${p}latents_out`), tol));
        checks.push(compareArrays(`${p}denoised`, r.denoised, fx.get(`${p}denoised`), tol));
      },
    );
    checks.push(compareArrays('timesteps', res.timesteps, fx.get('timesteps'), { atol: 0, rtol: 0 }));
    checks.push(compareArrays('transformer.guidance', Float32Array.of(guidanceSeen!), fx.get('transformer.guidance'), { atol: 0, rtol: 0 }));

    // --- decode -------------------------------------------------------------------------------------
    const sf = f32(num('vae_scaling_factor'));
    expect(f32(dec.config.scalingFactor)).toBe(sf);
    const z = res.latents.map((v) => f32(v / sf));
    checks.push(compareArrays('vae.decode_input', z, fx.get('vae.decode_input'), tol));
    const img = host(dec.decode({ data: z, shape: init.shape }));
    checks.push(compareArrays('vae.decode_output', img, fx.get('vae.decode_output'), tol));
    const img01 = img.map((v) => Math.min(1, Math.max(0, f32(f32(v / 2) + 0.5))));
    checks.push(compareArrays('image', img01, fx.get('image'), tol));
  } finally {
    net.dispose();
    dec.dispose();
  }
  return checks;
}

const report = (label: string, checks: GoldenCheck[]): void => {
  const worst = checks.reduce((a, c) => (c.worst > a.worst ? c : a));
  const big = checks.reduce((a, c) => (c.maxAbs > a.maxAbs ? c : a));
  console.log(`${label}: ${checks.length} checks; worst ratio ${worst.worst.toFixed(3)} (${worst.name}); max |Δ| ${big.maxAbs.toExponential(2)} (${big.name})`);
};

describe('golden: sprint/pipeline', () => {
  it('free run from generator_seed: everything up to step 0\'s x0 within 1e-3; the recorded step-0 noise is not that seed\'s', async () => {
    const checks = await runSprint('f32', false);
    report('sprint pipeline f32, own noise', checks);
    // What does not depend on the step-0 noise: the text, the schedule, the guidance value and
    // all of step 0 but its output latent.
    const upToX0 = checks.filter((c) => !/^(step0\.latents_out|step1\.(?!timestep|scheduler_timestep)|vae\.|image)/.test(c.name));
    expect(upToX0.length).toBe(14);
    expect(upToX0.filter((c) => !c.ok)).toEqual([]);
    // The fixture's step-0 noise matches no offset of the 1330 (or 1329) CPU stream; when it does,
    // this fails and the replay below is no longer needed.
    expect(checks.find((c) => c.name === 'step0.latents_out')!.ok).toBe(false);
  }, HEAVY_MS);

  it('f32 (step-0 noise replayed): text encoder, selection, 2 SCM steps, decode and image within 1e-3', async () => {
    const checks = await runSprint('f32', true);
    report('sprint pipeline f32', checks);
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    // 3 text + 2 steps × 8 + timesteps + guidance + 3 decode
    expect(checks.length).toBe(24);
  }, HEAVY_MS);

  it('bf16 models (step-0 noise replayed): within the stated bf16 bound', async () => {
    const checks = await runSprint('bf16', true);
    report('sprint pipeline bf16', checks);
    expect(checks.filter((c) => !c.ok)).toEqual([]);
  }, HEAVY_MS);
});
