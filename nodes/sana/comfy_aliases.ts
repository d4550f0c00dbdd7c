// The node classes that ComfyUI users' Sana workflows use (ComfyUI_ExtraModels + core ComfyUI),
// registered as aliases of our nodes: each declares the other pack's inputs (names, order, widget
// options, so saved widgets_values line up) and maps them onto our node's inputs, including the
// model names (nodes/sana/model_names.ts). Socket types stay ours (SANA_MODEL, DCAE, GEMMA), so the
// aliases connect to each other and to our nodes.
//
// KSampler's `scm` sampler (Sana-Sprint, after ScmModelSampling) runs the Sprint sampler: the alias
// passes it on as sampler 'scm', which FlowDPMSampler hands to nodes/sana/scm_sampler.ts.
//
// What does not map is refused with a message naming the node and input: non-DC-AE VAE types,
// 4-bit Gemma, and classes we do not have (CogVideoX, ...) fail validation as unknown node classes.
import type { NodeAlias, NodeRegistry, Services } from '../../engine/index.ts';
import { listLoras } from '../models_dir.ts';
import { nodeServices } from '../services.ts';
import { comfyTileInputs, comfyTiles } from './tiling.ts';
import { EXTRAMODELS_GEMMA_IDS, EXTRAMODELS_SANA_IDS, EXTRAMODELS_VAE_IDS, foreignChoices, mapModelName } from './model_names.ts';

const SANA_ARCHS = [
  'SanaMS_1600M_P1_D20',
  'SanaMS_600M_P1_D28',
  'SanaMS_1600M_P1_D20_2K',
  'SanaMS_1600M_P1_D20_4K',
  'SanaMS1.5_1600M_P1_D20',
  'SanaMS1.5_4800M_P1_D60',
  'SanaSprint_1600M_P1_D20',
  'SanaSprint_600M_P1_D28',
];

/** ExtraModels' dtype names -> ours. 'auto (comfy)' and 'default' mean "let the engine pick". */
function mapDtype(v: unknown, who: string, allowF16 = true): string {
  const s = String(v);
  const table: Record<string, string> = { auto: 'auto', 'auto (comfy)': 'auto', default: 'auto', FP32: 'f32', BF16: 'bf16', FP16: allowF16 ? 'f16' : 'bf16' };
  const out = table[s];
  if (!out) throw new Error(`${who}: dtype "${s}" is not supported here (auto, FP32, FP16, BF16)`);
  return out;
}

/** ExtraModels' device names -> ours; 'cuda:N' asks for the GPU (CPU fallback, logged). */
function mapDevice(v: unknown): string {
  const s = String(v ?? 'cpu');
  return s === 'cpu' || s === 'auto' ? s : 'cuda';
}

/** The models folder from the registry's services (COMBO lists and input mapping run there). */
const modelsOf = (services: Services, who: string): string => nodeServices(services, who).folders.models;

const LATENT_SIZE = { type: 'INT', default: 512, min: 16, max: 16384, step: 8 } as const;
const KSAMPLER_SAMPLERS: Record<string, string> = { euler: 'flow_euler', dpmpp_2m: 'dpmpp_2m' };
/** Sana-Sprint's SCM sampler (the Sana repo registers it into ComfyUI's KSampler list). */
const KSAMPLER_SCM = 'scm';

export const SANA_ALIASES: Array<{ target: string; alias: NodeAlias }> = [
  {
    target: 'SanaDiT',
    alias: {
      name: 'SanaCheckpointLoader',
      displayName: 'Sana Checkpoint Loader',
      category: 'ExtraModels/Sana',
      inputs: {
        required: {
          ckpt_name: { type: 'COMBO', values: (s) => foreignChoices('sana', EXTRAMODELS_SANA_IDS, modelsOf(s, 'SanaCheckpointLoader')) },
          model: {
            type: 'COMBO',
            values: SANA_ARCHS,
            default: 'SanaMS_1600M_P1_D20',
            tooltip: 'Ignored: the architecture is read from the checkpoint config.',
          },
          dtype: { type: 'COMBO', values: ['auto', 'FP32', 'FP16', 'BF16'], default: 'auto' },
          enable_cfg_passthrough: {
            type: 'BOOLEAN',
            default: true,
            tooltip: 'Ignored: Sana-Sprint guidance is embedded in the model (ScmModelSampling sets its scale).',
          },
        },
      },
      mapInputs: (i, s) => ({
        ckpt_name: mapModelName('sana', String(i.ckpt_name), 'SanaCheckpointLoader input ckpt_name', modelsOf(s, 'SanaCheckpointLoader')),
        dtype: mapDtype(i.dtype ?? 'auto', 'SanaCheckpointLoader input dtype'),
        // The pack loads on ComfyUI's main device without asking: the GPU when there is one.
        device: 'auto',
      }),
    },
  },
  {
    target: 'LoadGemma2',
    alias: {
      name: 'GemmaLoader',
      displayName: 'Gemma Loader',
      category: 'ExtraModels/Gemma',
      inputs: {
        required: {
          model_name: { type: 'COMBO', values: (s) => foreignChoices('text_encoders', EXTRAMODELS_GEMMA_IDS, modelsOf(s, 'GemmaLoader')) },
          device: { type: 'COMBO', values: ['auto', 'cpu', 'cuda'], default: 'cpu' },
          dtype: { type: 'COMBO', values: ['default', 'auto (comfy)', 'BF16', 'FP32', 'FP16'], default: 'default' },
        },
      },
      mapInputs: (i, s) => ({
        text_encoder: mapModelName('text_encoders', String(i.model_name), 'GemmaLoader input model_name', modelsOf(s, 'GemmaLoader')),
        // Gemma-2 overflows in fp16 (shared/spec/sana.md §8): FP16 runs in bf16.
        dtype: mapDtype(i.dtype ?? 'default', 'GemmaLoader input dtype', false),
        device: mapDevice(i.device),
      }),
    },
  },
  {
    target: 'Gemma2Encode',
    alias: {
      name: 'SanaTextEncode',
      displayName: 'Sana Text Encode',
      category: 'ExtraModels/Sana',
      inputs: { required: { text: { type: 'STRING', multiline: true, default: '' }, GEMMA: { type: 'GEMMA' } } },
      // The pack prepends NVlabs' instruction and does not lower-case.
      mapInputs: (i) => ({ gemma: i.GEMMA, text: i.text, complex_human_instruction: 'nvlabs', lowercase: false, max_sequence_length: 300 }),
    },
  },
  {
    target: 'Gemma2Encode',
    alias: {
      name: 'GemmaTextEncode',
      displayName: 'Gemma Text Encode',
      category: 'ExtraModels/Gemma',
      inputs: { required: { text: { type: 'STRING', multiline: true, default: '' }, GEMMA: { type: 'GEMMA' } } },
      mapInputs: (i) => ({ gemma: i.GEMMA, text: i.text, complex_human_instruction: 'none', lowercase: false, max_sequence_length: 300 }),
    },
  },
  ...(['EmptySanaLatentImage', 'EmptyDCAELatentImage'] as const).map((name) => ({
    target: 'EmptySanaLatent',
    alias: {
      name,
      displayName: name === 'EmptySanaLatentImage' ? 'Empty Sana Latent Image' : 'Empty DCAE Latent Image',
      category: name === 'EmptySanaLatentImage' ? 'ExtraModels/Sana' : 'latent',
      inputs: { required: { width: LATENT_SIZE, height: LATENT_SIZE, batch_size: { type: 'INT', default: 1, min: 1, max: 4096 } } },
      mapInputs: (i: Record<string, unknown>) => ({ width: i.width, height: i.height, batch_size: i.batch_size, resolution_binning: 'disabled' }),
    } satisfies NodeAlias,
  })),
  {
    target: 'FlowDPMSampler',
    alias: {
      name: 'KSampler',
      displayName: 'KSampler',
      category: 'sampling',
      inputs: {
        required: {
          model: { type: 'SANA_MODEL' },
          seed: { type: 'INT', default: 0, min: 0, max: 0xffffffffffffffffn, controlAfterGenerate: true },
          steps: { type: 'INT', default: 20, min: 1, max: 10000 },
          cfg: { type: 'FLOAT', default: 8.0, min: 0, max: 100, step: 0.1, round: 0.01 },
          sampler_name: {
            type: 'COMBO',
            values: [...Object.keys(KSAMPLER_SAMPLERS), KSAMPLER_SCM],
            tooltip: 'euler = flow Euler, dpmpp_2m = DPM-Solver++ 2M on the flow schedule, scm = Sana-Sprint (SCM).',
          },
          scheduler: {
            type: 'COMBO',
            values: ['normal', 'simple', 'sgm_uniform'],
            tooltip: "normal / simple: the checkpoint's shifted flow schedule; scm makes its own schedule whatever is chosen here.",
          },
          positive: { type: 'CONDITIONING' },
          negative: { type: 'CONDITIONING' },
          latent_image: { type: 'LATENT' },
          denoise: { type: 'FLOAT', default: 1.0, min: 0, max: 1, step: 0.01 },
        },
      },
      mapInputs: (i) => {
        if (String(i.sampler_name) === KSAMPLER_SCM) {
          // The Sana repo's sample_scm ignores the sigmas (so the scheduler) and the CFG batch only
          // stays out of the way at cfg 1; its guidance is ScmModelSampling's cfg_scale.
          if (Number(i.cfg) !== 1)
            throw new Error(
              `KSampler input cfg: the scm sampler takes its guidance from ScmModelSampling's cfg_scale (embedded in the model); set cfg to 1 (got ${String(i.cfg)})`,
            );
          if (!(Number(i.denoise) > 0)) throw new Error('KSampler input denoise: 0 leaves nothing to sample; use a value in (0, 1]');
          return {
            model: i.model,
            positive: i.positive,
            negative: i.negative,
            latent: i.latent_image,
            seed: i.seed,
            steps: i.steps,
            cfg: 1,
            flow_shift: 0,
            sampler: KSAMPLER_SCM,
            denoise: i.denoise,
          };
        }
        if (String(i.scheduler) === 'sgm_uniform')
          throw new Error(
            `KSampler input scheduler: sgm_uniform is only supported with sampler_name scm here; use normal or simple with ${String(i.sampler_name)}`,
          );
        const sampler = KSAMPLER_SAMPLERS[String(i.sampler_name)];
        if (!sampler)
          throw new Error(
            `KSampler input sampler_name: "${String(i.sampler_name)}" is not available for Sana (${[...Object.keys(KSAMPLER_SAMPLERS), KSAMPLER_SCM].join(', ')})`,
          );
        // denoise 0 returns latent_image unchanged (ComfyUI's empty schedule); a noise_mask on it
        // makes this an inpainting run, handled by FlowDPMSampler as ComfyUI's KSampler does.
        return {
          model: i.model,
          positive: i.positive,
          negative: i.negative,
          latent: i.latent_image,
          seed: i.seed,
          steps: i.steps,
          cfg: i.cfg,
          flow_shift: 0,
          sampler,
          denoise: i.denoise,
        };
      },
    },
  },
  {
    target: 'DCAELoader',
    alias: {
      name: 'ExtraVAELoader',
      displayName: 'ExtraVAELoader',
      category: 'ExtraModels',
      inputs: {
        required: {
          vae_name: { type: 'COMBO', values: (s) => foreignChoices('vae', EXTRAMODELS_VAE_IDS, modelsOf(s, 'ExtraVAELoader')) },
          vae_type: {
            type: 'COMBO',
            values: [
              'kl-f4',
              'kl-f8',
              'kl-f8-d16',
              'kl-f16',
              'kl-f32',
              'vq-f4',
              'vq-f8',
              'vq-f16',
              'Consistency-Decoder',
              'SDV-VideoDecoder',
              'MoVQ3',
              'dcae-f32c32-sana-1.0-diffusers',
              'dcae-f32c32-sana-1.1-diffusers',
            ],
            default: 'dcae-f32c32-sana-1.1-diffusers',
          },
          dtype: { type: 'COMBO', values: ['auto', 'FP32', 'FP16', 'BF16'], default: 'BF16' },
        },
      },
      mapInputs: (i, s) => {
        if (!String(i.vae_type).startsWith('dcae-')) {
          throw new Error(
            `ExtraVAELoader input vae_type: "${String(i.vae_type)}" is not a DC-AE; only dcae-f32c32-sana-1.0/1.1-diffusers decode Sana latents here`,
          );
        }
        return {
          vae_name: mapModelName('vae', String(i.vae_name), 'ExtraVAELoader input vae_name', modelsOf(s, 'ExtraVAELoader')),
          // The DC-AE overflows in fp16 (shared/spec/sana.md §8): FP16 runs in bf16.
          dtype: mapDtype(i.dtype ?? 'BF16', 'ExtraVAELoader input dtype', false),
          // The pack loads on ComfyUI's main device without asking: the GPU when there is one.
          device: 'auto',
        };
      },
    },
  },
  {
    target: 'DCAEDecode',
    alias: {
      name: 'VAEDecode',
      displayName: 'VAE Decode',
      category: 'latent',
      inputs: { required: { samples: { type: 'LATENT' }, vae: { type: 'DCAE' } } },
      mapInputs: (i) => ({ vae: i.vae, latent: i.samples, tiled: false }),
    },
  },
  {
    // Core ComfyUI's tiled decode: pixel tile sizes (its own defaults and clamp), video inputs unused.
    target: 'DCAEDecode',
    alias: {
      name: 'VAEDecodeTiled',
      displayName: 'VAE Decode (Tiled)',
      category: 'latent',
      inputs: { required: { samples: { type: 'LATENT' }, vae: { type: 'DCAE' }, ...comfyTileInputs } },
      mapInputs: (i) => ({ vae: i.vae, latent: i.samples, tiled: true, ...comfyTiles(i) }),
    },
  },
  {
    target: 'DCAEEncode',
    alias: {
      name: 'VAEEncodeTiled',
      displayName: 'VAE Encode (Tiled)',
      category: '_for_testing',
      inputs: { required: { pixels: { type: 'IMAGE' }, vae: { type: 'DCAE' }, ...comfyTileInputs } },
      mapInputs: (i) => ({ vae: i.vae, pixels: i.pixels, tiled: true, ...comfyTiles(i) }),
    },
  },
  {
    target: 'DCAEEncode',
    alias: {
      name: 'VAEEncode',
      displayName: 'VAE Encode',
      category: 'latent',
      inputs: { required: { pixels: { type: 'IMAGE' }, vae: { type: 'DCAE' } } },
      mapInputs: (i) => ({ vae: i.vae, pixels: i.pixels, tiled: false }),
    },
  },
  {
    // Core ComfyUI's model-only LoRA loader; its MODEL socket is our SANA_MODEL here.
    target: 'SanaLoraLoader',
    alias: {
      name: 'LoraLoaderModelOnly',
      displayName: 'LoraLoaderModelOnly',
      category: 'loaders',
      inputs: {
        required: {
          model: { type: 'SANA_MODEL' },
          lora_name: { type: 'COMBO', values: (s) => listLoras(modelsOf(s, 'LoraLoaderModelOnly')) },
          strength_model: { type: 'FLOAT', default: 1.0, min: -10, max: 10, step: 0.01 },
        },
      },
      mapInputs: (i) => ({ model: i.model, lora_name: i.lora_name, strength: i.strength_model }),
    },
  },
];

/** Registers the aliases; their targets must be registered first (nodes/index.ts does both). */
export function registerSanaAliases(registry: NodeRegistry): NodeRegistry {
  for (const { target, alias } of SANA_ALIASES) registry.alias(target, alias);
  return registry;
}
