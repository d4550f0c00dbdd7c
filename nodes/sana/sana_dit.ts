// SanaDiT: picks a Sana transformer from the models folder and hands on a SANA_MODEL reference.
// The weights are loaded into the model cache here (so a bad checkpoint fails on this node), and
// the sampler fetches them through the reference, from the cache, when it runs.
import { dirname } from 'node:path';
import { defineNode } from '../../engine/index.ts';
import { listSanaCheckpoints, resolveSanaCheckpoint } from '../models_dir.ts';
import { nodeServices, type NodeServices } from '../services.ts';
import { folderFingerprint } from './fingerprint.ts';
import { DEVICE_INPUT, logDeviceNote, DTYPE_CHOICES, backendFor, resolveDevice, resolveDtype, withTransformer } from './runtime.ts';
import type { SanaModelRef } from './types.ts';

/** Builds the reference for a checkpoint entry (shared with the ExtraModels loader alias). */
export async function sanaModelRef(
  svc: NodeServices,
  ckptName: string,
  dtypeChoice: string,
  deviceChoice: string,
  who: string,
): Promise<{ ref: SanaModelRef; note?: string }> {
  const dirs = resolveSanaCheckpoint(ckptName, svc.folders.models);
  const { device, note } = await resolveDevice(deviceChoice, who);
  const backend = await backendFor(device);
  const dtype = resolveDtype(dtypeChoice, backend, who);
  const { readTransformerConfig } = await import('../models/sana_dit/config.ts');
  const { readSchedulerConfig, SANA_SCHEDULER_DEFAULTS } = await import('../models/scheduler.ts');
  const cfg = readTransformerConfig(dirs.transformer);
  // A Sprint folder's scheduler is SCMScheduler: checked here so a bad one fails on the loader,
  // and no flow shift applies to it.
  if (cfg.guidanceEmbeds && dirs.schedulerConfig) (await import('../models/scm_scheduler.ts')).readScmSchedulerConfig(dirname(dirs.schedulerConfig));
  const flowShift = dirs.schedulerConfig && !cfg.guidanceEmbeds ? readSchedulerConfig(dirs.schedulerConfig).flowShift : SANA_SCHEDULER_DEFAULTS.flowShift;
  const ref: SanaModelRef = {
    kind: 'sana_transformer',
    name: dirs.name,
    path: dirs.transformer,
    dtype,
    device,
    latentChannels: cfg.inChannels,
    sampleSize: cfg.sampleSize,
    numLayers: cfg.numLayers,
    captionChannels: cfg.captionChannels,
    schedulerConfig: dirs.schedulerConfig,
    flowShift,
    ...(cfg.guidanceEmbeds ? { guidanceEmbeds: true, guidanceEmbedsScale: cfg.guidanceEmbedsScale } : {}),
  };
  // Load now: errors (missing tensors, wrong shapes, out of memory) belong to the loader node.
  await withTransformer(svc, ref, () => undefined);
  return { ref, note };
}

export const SanaDiT = defineNode({
  name: 'SanaDiT',
  displayName: 'Sana DiT Loader',
  category: 'sana/loaders',
  description: 'Loads a Sana transformer (diffusers layout) from models/sana/. dtype auto = bf16 where the device has fast bf16, else f32.',
  inputs: {
    required: {
      ckpt_name: {
        type: 'COMBO',
        values: (s) => listSanaCheckpoints(nodeServices(s, 'SanaDiT ckpt_name list').folders.models).map((c) => c.name),
        tooltip: 'A Sana pipeline folder under models/sana/ (with transformer/ and scheduler/).',
      },
      dtype: { type: 'COMBO', values: DTYPE_CHOICES, default: 'auto' },
      device: DEVICE_INPUT,
    },
  },
  outputs: [{ name: 'model', type: 'SANA_MODEL' }],
  fingerprint: ({ ckpt_name }, services) => {
    try {
      const d = resolveSanaCheckpoint(String(ckpt_name), nodeServices(services, 'SanaDiT').folders.models);
      return folderFingerprint(d.transformer, d.root + '/scheduler');
    } catch {
      return 'missing';
    }
  },
  async run({ ckpt_name, dtype, device }, ctx) {
    const { ref, note } = await sanaModelRef(nodeServices(ctx.services, 'SanaDiT'), ckpt_name, dtype, device, 'SanaDiT');
    logDeviceNote(note);
    return [ref];
  },
});
