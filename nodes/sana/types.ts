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
   * the decoder resizes (bilinear, cover) and centre-crops back to it (spec §1.7).
   */
  targetSize?: { height: number; width: number };
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

/** Perturbed-attention guidance, applied as a model patch (spec §7). */
export interface PagPatch {
  scale: number;
  /** Transformer block indices whose self-attention is replaced by identity attention. */
  layers: number[];
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
