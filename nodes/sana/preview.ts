// Step previews for FlowDPMSampler: the denoised estimate x0 mapped to RGB by the linear
// latent->colour fit of nodes/models/latent_preview.ts, nearest-upscaled so a 1024-px image
// (32×32 latent) gives a visible thumbnail, PNG-encoded for ComfyUI's binary preview frame.
// The fit needs the DC-AE that belongs to the checkpoint (the vae/ of the same pipeline folder);
// without one there are no previews, only progress.
import type { PreviewImage } from '../../engine/index.ts';
import { encodePng } from '../image/png.ts';
import type { LatentPreviewMap } from '../models/latent_preview.ts';
import { resolveVae } from '../models_dir.ts';
import type { NodeServices } from '../services.ts';
import { backendFor, resolveDtype, withDcae } from './runtime.ts';
import type { DcaeRef, SanaModelRef } from './types.ts';

const maps = new Map<string, Promise<LatentPreviewMap>>();

/** The preview map for the DC-AE of `model`'s pipeline, fitted once per process. */
async function previewMap(svc: NodeServices, model: SanaModelRef): Promise<LatentPreviewMap | undefined> {
  let vaeDir: string;
  try {
    vaeDir = resolveVae(model.name, svc.folders.models).vae;
  } catch {
    return undefined;
  }
  let pending = maps.get(vaeDir);
  if (!pending) {
    pending = (async () => {
      const { readDcaeConfig } = await import('../models/dcae.ts');
      const { deriveLatentPreview } = await import('../models/latent_preview.ts');
      const cfg = readDcaeConfig(vaeDir);
      const backend = await backendFor(model.device);
      const ref: DcaeRef = {
        kind: 'dcae',
        name: model.name,
        path: vaeDir,
        dtype: resolveDtype('auto', backend, 'preview', false),
        device: model.device,
        latentChannels: cfg.latentChannels,
        scalingFactor: cfg.scalingFactor,
        downsample: cfg.spatialCompression,
      };
      return withDcae(svc, ref, (dec) =>
        deriveLatentPreview(
          (z) => {
            const img = dec.decode(z); // (B, 3, f·h, f·w)
            try {
              return { data: img.toFloat32(), shape: [...img.shape] };
            } finally {
              img.dispose();
            }
          },
          cfg.latentChannels,
          cfg.spatialCompression,
          cfg.scalingFactor,
        ),
      );
    })();
    maps.set(vaeDir, pending);
    pending.catch(() => maps.delete(vaeDir));
  }
  return pending;
}

/** Nearest-neighbour upscale of packed RGB bytes (h, w, 3) by an integer factor. */
function upscale(rgb: Uint8Array, w: number, h: number, f: number): Uint8Array {
  const W = w * f;
  const out = new Uint8Array(W * h * f * 3);
  for (let y = 0; y < h * f; y++) {
    const sy = Math.floor(y / f);
    for (let x = 0; x < W; x++) {
      const s = (sy * w + Math.floor(x / f)) * 3;
      const d = (y * W + x) * 3;
      out[d] = rgb[s];
      out[d + 1] = rgb[s + 1];
      out[d + 2] = rgb[s + 2];
    }
  }
  return out;
}

export type Previewer = (x0: Float32Array, shape: readonly number[]) => PreviewImage;

/** A function turning latents into a PNG preview, or undefined when no DC-AE is at hand. */
export async function previewerFor(svc: NodeServices, model: SanaModelRef): Promise<Previewer | undefined> {
  let map: LatentPreviewMap | undefined;
  try {
    map = await previewMap(svc, model);
  } catch (err) {
    // Previews are a convenience: a failing fit must not fail the sampler.
    console.warn(`FlowDPMSampler: no step previews (${(err as Error).message})`);
    return undefined;
  }
  if (!map) return undefined;
  const { latentPreviewRgb } = await import('../models/latent_preview.ts');
  const m = map;
  return (x0, shape) => {
    const { width, height, rgb } = latentPreviewRgb({ data: x0, shape }, m, 0);
    const f = Math.max(1, Math.min(16, Math.ceil(256 / Math.max(width, height))));
    const png = encodePng({ width: width * f, height: height * f, channels: 3, data: upscale(rgb, width, height, f) }, { level: 1 });
    return { format: 'PNG', data: new Uint8Array(png.buffer, png.byteOffset, png.byteLength) };
  };
}
