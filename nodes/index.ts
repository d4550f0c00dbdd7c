// The product's node list: every node module is imported here and registered. Tests add their
// stub nodes through the server's extra-node-module hook instead, so they never appear here.
import type { NodeRegistry } from '../engine/index.ts';
import { LoadImage } from './image/load_image.ts';
import { PreviewImage, SaveImage, SaveImageWebsocket } from './image/save_image.ts';
import { registerSanaAliases } from './sana/comfy_aliases.ts';
import { DCAEDecode } from './sana/dcae_decode.ts';
import { DCAEEncode } from './sana/dcae_encode.ts';
import { DCAELoader } from './sana/dcae_loader.ts';
import { EmptySanaLatent } from './sana/empty_latent.ts';
import { FlowDPMSampler } from './sana/flow_dpm_sampler.ts';
import { Gemma2Encode } from './sana/gemma_encode.ts';
import { LoadGemma2 } from './sana/gemma_loader.ts';
import { SanaLoraLoader } from './sana/lora_loader.ts';
import { PAG } from './sana/pag.ts';
import { SanaResolutionSelect } from './sana/resolution_select.ts';
import { SetLatentNoiseMask } from './sana/set_latent_noise_mask.ts';
import { VAEEncodeForInpaint } from './sana/vae_encode_inpaint.ts';
import { SanaDiT } from './sana/sana_dit.ts';
import { ScmModelSampling } from './sana/scm_model_sampling.ts';
import { SanaSprintSampler } from './sana/scm_sampler.ts';
import { TextEncoderGemma } from './sana/text_encoder_gemma.ts';

/** Registers all product nodes into `registry` and returns it. */
export function registerProductNodes(registry: NodeRegistry): NodeRegistry {
  registry.register(SaveImage);
  registry.register(PreviewImage);
  registry.register(LoadImage);
  registry.register(SaveImageWebsocket);
  registry.register(TextEncoderGemma);
  registry.register(SanaDiT);
  registry.register(PAG);
  registry.register(SanaLoraLoader);
  registry.register(EmptySanaLatent);
  registry.register(FlowDPMSampler);
  registry.register(SanaSprintSampler);
  registry.register(ScmModelSampling);
  registry.register(DCAELoader);
  registry.register(DCAEDecode);
  registry.register(DCAEEncode);
  registry.register(VAEEncodeForInpaint);
  registry.register(SetLatentNoiseMask);
  registry.register(LoadGemma2);
  registry.register(Gemma2Encode);
  registry.register(SanaResolutionSelect);
  registerSanaAliases(registry); // ComfyUI_ExtraModels / core class names used by users' Sana workflows
  return registry;
}
