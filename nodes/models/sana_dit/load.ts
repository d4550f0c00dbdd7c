// Loading SanaTransformer2DModel from a diffusers `transformer/` folder.
import type { Backend, DType } from '../../../native/api.ts';
import { withCheckpoint, type FolderLoadOptions } from '../weights.ts';
import { readTransformerConfig } from './config.ts';
import { buildSanaTransformer, type SanaTransformer } from './model.ts';

export type LoadOptions = FolderLoadOptions;

/**
 * Loads SanaTransformer2DModel from a diffusers `transformer/` folder (config.json + one or sharded
 * safetensors, f32/f16/bf16 stored), converting weights to the compute `dtype`.
 */
export async function loadSanaTransformer(dir: string, backend: Backend, dtype: DType, opts: LoadOptions = {}): Promise<SanaTransformer> {
  const cfg = readTransformerConfig(dir);
  return withCheckpoint(dir, opts, ['diffusion_pytorch_model', 'model'], (ckpt) => buildSanaTransformer(cfg, ckpt, backend, dtype, ckpt.files.join(', ')));
}
