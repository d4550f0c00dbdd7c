// SaveImage and PreviewImage: ComfyUI's output nodes for IMAGE batches. Both embed the prompt
// and the UI workflow in the PNGs and return `{ images: [{ filename, subfolder, type }] }`.
import { randomInt } from 'node:crypto';
import { defineNode } from '../../engine/index.ts';
import { nodeServices } from '../services.ts';
import { filenamePrefixProblem } from './filenames.ts';
import { encodePng } from './png.ts';
import { saveImageBatch } from './save.ts';
import { imageToRgb8 } from './types.ts';

export const SaveImage = defineNode({
  name: 'SaveImage',
  displayName: 'Save Image',
  category: 'image',
  description: 'Saves the input images to your output directory.',
  module: 'nodes',
  inputs: {
    required: {
      images: { type: 'IMAGE', tooltip: 'The images to save.' },
      filename_prefix: {
        type: 'STRING',
        default: 'ComfyUI',
        tooltip:
          'The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %width%, and "/" to save into subfolders.',
      },
    },
    hidden: { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO' },
  },
  outputs: [],
  outputNode: true,
  validateInputs: ({ filename_prefix }) => {
    const problem = typeof filename_prefix === 'string' ? filenamePrefixProblem(filename_prefix) : undefined;
    return problem === undefined ? undefined : { filename_prefix: `filename_prefix ${problem}` };
  },
  run({ images, filename_prefix, prompt, extra_pnginfo }, ctx) {
    ctx.throwIfInterrupted();
    const saved = saveImageBatch(images, {
      root: nodeServices(ctx.services, 'SaveImage').folders.output,
      type: 'output',
      prefix: filename_prefix,
      prompt,
      extraPnginfo: extra_pnginfo,
      level: 4,
    });
    return { ui: { images: saved } };
  },
});

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

export const PreviewImage = defineNode({
  name: 'PreviewImage',
  displayName: 'Preview Image',
  category: 'image',
  description: 'Saves the input images to the temp directory for preview.',
  module: 'nodes',
  inputs: {
    required: { images: { type: 'IMAGE' } },
    hidden: { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO' },
  },
  outputs: [],
  outputNode: true,
  run({ images, prompt, extra_pnginfo }, ctx) {
    ctx.throwIfInterrupted();
    // A random suffix per run, as ComfyUI does, so the browser never shows a stale cached preview.
    const suffix = Array.from({ length: 5 }, () => LETTERS[randomInt(26)]).join('');
    const saved = saveImageBatch(images, {
      root: nodeServices(ctx.services, 'PreviewImage').folders.temp,
      type: 'temp',
      prefix: `ComfyUI_temp_${suffix}`,
      prompt,
      extraPnginfo: extra_pnginfo,
      level: 1,
    });
    return { ui: { images: saved } };
  },
});

/**
 * SaveImageWebsocket: streams each image as a full-size PNG binary frame to the client that
 * queued the job (websockets_api_example_ws_images.py) and writes nothing to disk. Its
 * fingerprint is NaN, so it runs on every queue even when everything upstream is cached.
 */
export const SaveImageWebsocket = defineNode({
  name: 'SaveImageWebsocket',
  displayName: 'SaveImageWebsocket',
  category: 'api/image',
  module: 'nodes',
  inputs: { required: { images: { type: 'IMAGE' } } },
  outputs: [],
  outputNode: true,
  fingerprint: () => Number.NaN,
  run({ images }, ctx) {
    for (let b = 0; b < images.batch; b++) {
      ctx.throwIfInterrupted();
      ctx.sendBinaryPreview({ format: 'PNG', data: encodePng(imageToRgb8(images, b), { level: 1 }) });
    }
    // No UI output: nothing in history, no `executed` message (as ComfyUI).
    return [];
  },
});
