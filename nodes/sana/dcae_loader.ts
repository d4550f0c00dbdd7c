// DCAELoader: picks a DC-AE (AutoencoderDC, diffusers layout) from models/vae/ or from the vae/ of a
// Sana pipeline, loads its decoder into the model cache and hands on a DCAE reference.
import { defineNode } from '../../engine/index.ts';
import { listVaes, resolveVae } from '../models_dir.ts';
import { nodeServices, type NodeServices } from '../services.ts';
import { folderFingerprint } from './fingerprint.ts';
import { DEVICE_INPUT, logDeviceNote, backendFor, resolveDevice, resolveDtype, withDcae } from './runtime.ts';
import type { DcaeRef } from './types.ts';

export const DCAE_DTYPES = ['auto', 'bf16', 'f32'] as const;

export async function dcaeRef(
  svc: NodeServices,
  vaeName: string,
  dtypeChoice: string,
  deviceChoice: string,
  who: string,
): Promise<{ ref: DcaeRef; note?: string }> {
  const dirs = resolveVae(vaeName, svc.folders.models);
  const { device, note } = await resolveDevice(deviceChoice, who);
  const backend = await backendFor(device);
  // fp16 overflows in the DC-AE decoder (shared/spec/sana.md §8): only bf16 and f32.
  const dtype = resolveDtype(dtypeChoice, backend, who, false);
  const { readDcaeConfig } = await import('../models/dcae.ts');
  const cfg = readDcaeConfig(dirs.vae);
  const ref: DcaeRef = {
    kind: 'dcae',
    name: dirs.name,
    path: dirs.vae,
    dtype,
    device,
    latentChannels: cfg.latentChannels,
    scalingFactor: cfg.scalingFactor,
    downsample: cfg.spatialCompression,
  };
  await withDcae(svc, ref, () => undefined);
  return { ref, note };
}

export const DCAELoader = defineNode({
  name: 'DCAELoader',
  displayName: 'DC-AE Loader',
  category: 'sana/loaders',
  description: 'Loads the DC-AE f32c32 decoder (AutoencoderDC) that turns Sana latents into images.',
  inputs: {
    required: {
      vae_name: {
        type: 'COMBO',
        values: (s) => listVaes(nodeServices(s, 'DCAELoader vae_name list').folders.models).map((v) => v.name),
        tooltip: 'A DC-AE under models/vae/, or a Sana pipeline under models/sana/ (its vae/ folder).',
      },
      dtype: { type: 'COMBO', values: DCAE_DTYPES, default: 'auto' },
      device: DEVICE_INPUT,
    },
  },
  outputs: [{ name: 'vae', type: 'DCAE' }],
  fingerprint: ({ vae_name }, services) => {
    try {
      return folderFingerprint(resolveVae(String(vae_name), nodeServices(services, 'DCAELoader').folders.models).vae);
    } catch {
      return 'missing';
    }
  },
  async run({ vae_name, dtype, device }, ctx) {
    const { ref, note } = await dcaeRef(nodeServices(ctx.services, 'DCAELoader'), vae_name, dtype, device, 'DCAELoader');
    logDeviceNote(note);
    return [ref];
  },
});
