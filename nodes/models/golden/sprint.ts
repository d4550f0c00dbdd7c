// Golden stage "sprint/pipeline" (FAMILY.md): the real SanaSprintPipeline call re-run with our
// models — Gemma-2 on the stored ids, the BOS + last (M − 1) selection, the guidance embedding
// value, every SCM step (scaled transformer input, transformer output, scheduler model output,
// latents, x0) and the DC-AE decode. Every parameter comes from pipeline.json and the io file's
// metadata (both must agree). The fixture's step-0 noise is not the stream of its generator_seed
// (test/models/sprint.test.ts shows it), so the stage replays it by default.
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Tensor } from '../../../native/api.ts';
import { loadDcaeDecoder } from '../dcae.ts';
import { loadGemma2 } from '../gemma2.ts';
import { selectIndices } from '../prompt.ts';
import { loadSanaTransformer } from '../sana_dit/load.ts';
import { MT19937 } from '../noise.ts';
import { readScmSchedulerConfig, sampleScm, SCMScheduler } from '../scm_scheduler.ts';
import { readFixture } from './fixture.ts';
import { compareArrays, F32_TOL, goldenDir, stageOk, type GoldenCheck, type GoldenStageResult, type StageDeps, type Tolerance } from './transformer.ts';

const f32 = Math.fround;

/** Fixture README: two steps and a decoder, so ~1e-3 end to end in f32. */
export const SPRINT_E2E_TOL: Tolerance = { atol: 1e-3, rtol: 1e-3 };
/**
 * All three models in bf16 (latents, scaling and scheduler in f32): the Sana 1.0 pipeline's bf16
 * bound. Measured on the CPU backend (printed by the test): max |Δ| 0.127 (vae.decode_output,
 * values ≤ 3), worst ratio 0.30; f32 max |Δ| 4.8e-6, worst ratio 0.016 under 1e-3.
 */
export const SPRINT_E2E_BF16_TOL: Tolerance = { atol: 0.4, rtol: 0.1 };

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

/**
 * The whole Sprint call on the fixture's models. `replayNoise`: feed step 0 the fixture's own
 * noise (recovered from its step 0) instead of the generator_seed stream, which it is not.
 */
export async function runSprintPipelineGolden(deps: StageDeps & { replayNoise?: boolean }): Promise<GoldenStageResult> {
  const dtype = deps.dtype ?? 'f32';
  const replayNoise = deps.replayNoise ?? true;
  const backend = deps.backend, native = deps.native;
  const DIR = resolve(deps.dir ?? goldenDir(), 'sprint', 'pipeline');
  const pj = JSON.parse(readFileSync(resolve(DIR, 'pipeline.json'), 'utf8')) as PipelineJson;
  const fx = readFixture(resolve(DIR, 'io.safetensors'));
  // The io file's metadata records the same call: both must agree on every parameter used here.
  for (const k of ['num_inference_steps', 'guidance_scale', 'guidance_embeds_scale', 'generator_seed', 'max_timesteps', 'intermediate_timesteps', 'max_sequence_length', 'height', 'width', 'vae_scaling_factor', 'prompt'] as const) {
    if (fx.metadata[k] !== pj[k]) throw new Error(`sprint/pipeline: pipeline.json ${k} = ${JSON.stringify(pj[k])} but io.safetensors metadata says ${JSON.stringify(fx.metadata[k])}`);
  }
  const num = (k: keyof PipelineJson): number => {
    const v = Number(pj[k]);
    if (pj[k] === undefined || !Number.isFinite(v)) throw new Error(`sprint/pipeline: pipeline.json ${k} = ${JSON.stringify(pj[k])} is not a number`);
    return v;
  };
  const tol = dtype === 'f32' ? SPRINT_E2E_TOL : SPRINT_E2E_BF16_TOL;
  const compTol = dtype === 'f32' ? F32_TOL : SPRINT_E2E_BF16_TOL;
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
    const want = [B, net.config.inChannels, num('height') / sc, num('width') / sc];
    if (init.shape.join() !== want.join()) throw new Error(`sprint/pipeline: initial_latents ${JSON.stringify(init.shape)} but height/width/channels give ${JSON.stringify(want)}`);
    if (net.config.guidanceEmbedsScale !== num('guidance_embeds_scale')) throw new Error(`sprint/pipeline: guidance_embeds_scale ${pj.guidance_embeds_scale} but the transformer config has ${net.config.guidanceEmbedsScale}`);
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
    if (f32(dec.config.scalingFactor) !== sf) throw new Error(`sprint/pipeline: vae_scaling_factor ${pj.vae_scaling_factor} but the VAE config has ${dec.config.scalingFactor}`);
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
  return { stage: 'sprint/pipeline', dtype, tolerance: tol, checks, ok: stageOk(checks) };
}


/** set_timesteps arguments and generator seed from a scheduler step file's metadata ("None" = not given). */
function scmScheduleOf(fx: ReturnType<typeof readFixture>): { steps: number; maxTimesteps: number; intermediateTimesteps: number | null; seed: bigint } {
  const md = fx.metadata;
  const num = (k: string): number => {
    const v = Number(md[k]);
    if (md[k] === undefined || !Number.isFinite(v)) throw new Error(`${fx.path}: metadata ${k} = ${JSON.stringify(md[k])} is not a number`);
    return v;
  };
  if (md.generator_seed === undefined || !/^\d+$/.test(md.generator_seed)) throw new Error(`${fx.path}: metadata generator_seed = ${JSON.stringify(md.generator_seed)}`);
  return {
    steps: num('num_inference_steps'),
    maxTimesteps: num('max_timesteps'),
    intermediateTimesteps: md.intermediate_timesteps === 'None' ? null : num('intermediate_timesteps'),
    seed: BigInt(md.generator_seed),
  };
}

/**
 * Golden stage "sprint/scheduler": each stepsN.safetensors — the schedule exactly, then every
 * step fed the fixture's model output (sample and x0 exact, fresh noise from the seeded CPU
 * generator in torch.randn order), then the closed loop with the file's synthetic model
 * v = 0.3·x − 0.7·sin(t) (within 1e-6: our v is recomputed in float32).
 */
export async function runScmSchedulerGolden(deps: Pick<StageDeps, 'dir'>): Promise<GoldenStageResult> {
  const dir = resolve(deps.dir ?? goldenDir(), 'sprint', 'scheduler');
  const files = readdirSync(dir).filter((f) => /^steps\d+\.safetensors$/.test(f)).sort();
  if (files.length === 0) throw new Error(`${dir}: no steps*.safetensors`);
  const cfg = readScmSchedulerConfig(dir);
  const exact: Tolerance = { atol: 0, rtol: 0 }, loop: Tolerance = { atol: 1e-6, rtol: 0 };
  const checks: GoldenCheck[] = [];
  for (const file of files) {
    const fx = readFixture(resolve(dir, file));
    const sc = scmScheduleOf(fx);
    const stem = file.replace(/\.safetensors$/, '');
    const fresh = (): SCMScheduler => {
      const s = new SCMScheduler(cfg);
      s.setTimesteps(sc.steps, { maxTimesteps: sc.maxTimesteps, intermediateTimesteps: sc.intermediateTimesteps });
      return s;
    };
    const fed = fresh();
    checks.push(compareArrays(`${stem}.timesteps`, Float32Array.from(fed.timesteps), fx.get('timesteps'), exact));
    let gen = new MT19937(sc.seed);
    let x = fx.get('latents_0').data;
    for (let i = 0; i < sc.steps; i++) {
      const r = fed.step(fx.get(`model_output_${i}`).data, x, gen);
      checks.push(compareArrays(`${stem}.denoised_${i}`, r.denoised, fx.get(`denoised_${i}`), exact));
      checks.push(compareArrays(`${stem}.latents_${i + 1}`, r.prevSample, fx.get(`latents_${i + 1}`), exact));
      x = r.prevSample;
    }
    const closed = fresh();
    gen = new MT19937(sc.seed);
    x = fx.get('latents_0').data;
    for (let i = 0; i < sc.steps; i++) {
      const b = f32(0.7 * f32(Math.sin(closed.timesteps[i]!)));
      const v = x.map((xi) => f32(f32(0.3 * xi) - b));
      checks.push(compareArrays(`${stem}.closed.model_output_${i}`, v, fx.get(`model_output_${i}`), loop));
      x = closed.step(v, x, gen).prevSample;
      checks.push(compareArrays(`${stem}.closed.latents_${i + 1}`, x, fx.get(`latents_${i + 1}`), loop));
    }
  }
  return { stage: 'sprint/scheduler', dtype: 'f32', tolerance: exact, checks, ok: stageOk(checks) };
}
