// The values that travel on the Sana sockets, and their socket type names.
//
// Everything here is small and plain: latents and conditioning are host float32 arrays, and the
// model sockets carry *references* (where the weights are, in which dtype and on which device,
// plus patches such as PAG) rather than loaded weights. The weights live in the model cache
// (nodes/model_cache.ts) and are fetched through a reference when a node needs them, so the
// engine may keep any node output for as long as it likes without pinning gigabytes, and a
// model evicted under the memory budget is simply loaded again.
import type { DeviceName, DType } from '../../native/api.ts';

/** A latent batch, ComfyUI's LATENT `{samples}` with Sana's extras. */
export interface Latent {
  /** (B, C, h, w) row-major, float32. */
  samples: Float32Array;
  shape: [batch: number, channels: number, height: number, width: number];
  /**
   * The pixel size the user asked for when resolution binning generated at another size:
   * the decoder resizes (bilinear, cover) and centre-crops back to it (shared/spec/sana.md §1.7).
   */
  targetSize?: { height: number; width: number };
  /**
   * ComfyUI's `noise_mask` (inpainting), kept at latent resolution: (Bm, h, w) with Bm = 1 (shared
   * by the batch) or B; 1 = re-noise and denoise, 0 = keep the input latent. The samplers keep the
   * unmasked part equal to `samples`; they pass the mask on, as ComfyUI's KSampler does.
   */
  noiseMask?: { data: Float32Array; shape: [batch: number, height: number, width: number] };
}

/** One prompt encoded by Gemma-2: what the DiT's cross-attention consumes. */
export interface Conditioning {
  /** (B, L, D) row-major float32 hidden states (L = max_sequence_length, D = Gemma width). */
  embeds: Float32Array;
  /** (B, L): 1 for BOS and prompt tokens, 0 for padding. */
  mask: Float32Array;
  shape: [batch: number, tokens: number, width: number];
  /** The text that was encoded (after preprocessing), for previews and error messages. */
  text: string[];
}

/** Perturbed-attention guidance, applied as a model patch (shared/spec/sana.md §7). */
export interface PagPatch {
  scale: number;
  /** Transformer block indices whose self-attention is replaced by identity attention. */
  layers: number[];
}

/** A LoRA applied as a model patch (SanaLoraLoader); merged into the weights in the sampler. */
export interface LoraPatch {
  /** Combo value: the path under models/loras/. */
  name: string;
  /** The .safetensors file (absolute). */
  path: string;
  strength: number;
  /** The file's size and mtime, so a replaced file is merged anew rather than served from cache. */
  stamp: string;
}

/** What the SanaDiT loader hands on: where the transformer is and how to load it. */
export interface SanaModelRef {
  kind: 'sana_transformer';
  /** Combo value / entry name in the models folder. */
  name: string;
  /** The transformer folder (config.json + safetensors). */
  path: string;
  dtype: DType;
  device: DeviceName;
  /** From the transformer config: latent channels, `sample_size` (binning table), depth, and the
   *  text width its caption projection takes (the Gemma width). */
  latentChannels: number;
  sampleSize: number;
  numLayers: number;
  captionChannels: number;
  /** The checkpoint's scheduler/scheduler_config.json, when it has one. */
  schedulerConfig?: string;
  /** Its flow_shift (3.0, Sana's published value, when the checkpoint has no scheduler config). */
  flowShift: number;
  /** Model patches, applied in the sampler; PAG clones the reference and sets this. */
  pag?: PagPatch;
  /** Sana-Sprint: the transformer embeds a guidance value instead of taking a CFG batch, and
   *  samples with SCM (SanaSprintSampler), never with the flow samplers. */
  guidanceEmbeds?: boolean;
  /** Its guidance_embeds_scale (the factor on guidance_scale before the call; 0.1). */
  guidanceEmbedsScale?: number;
  /** Set by ScmModelSampling: the guidance scale KSampler's `scm` sampler passes. */
  scm?: { guidanceScale: number };
  /** LoRAs in the order applied (each SanaLoraLoader clones the reference and appends one). */
  loras?: LoraPatch[];
}

/** What the DC-AE loader hands on. */
export interface DcaeRef {
  kind: 'dcae';
  name: string;
  path: string;
  dtype: DType;
  device: DeviceName;
  latentChannels: number;
  scalingFactor: number;
  /** Spatial compression (32 for f32c32). */
  downsample: number;
}

/** A Gemma-2 text encoder with its tokenizer (ExtraModels' GEMMA socket). */
export interface GemmaRef {
  kind: 'gemma2';
  name: string;
  textEncoderPath: string;
  tokenizerPath: string;
  dtype: DType;
  device: DeviceName;
}

declare module '../../engine/types.ts' {
  interface SocketTypes {
    LATENT: Latent;
    CONDITIONING: Conditioning;
    SANA_MODEL: SanaModelRef;
    DCAE: DcaeRef;
    GEMMA: GemmaRef;
  }
}
