// LoadImage: a PNG or JPEG of the input folder (uploaded through /upload/image) as IMAGE + MASK.
// The combo lists the folder's images at object_info / validation time; the fingerprint is the
// file's SHA-256, so replacing a file under the same name re-runs the node.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { defineNode } from '../../engine/index.ts';
import { isFolderType, type ImageFolders } from './folders.ts';
import { nodeServices } from '../services.ts';
import { resolveInside } from './paths.ts';
import { decodeImage } from './decode.ts';
import { rawToImageAndMask } from './types.ts';

const IMAGE_EXT = /\.(png|jpe?g)$/i;
const MAX_LIST_DEPTH = 3;
const MAX_LIST = 5000;

/** The images of a list of input files ("/"-separated, from a store): the same rules as the
 *  folder walk below — hidden names skipped, at most MAX_LIST_DEPTH folders deep, MAX_LIST. */
export function inputImagesOf(files: readonly string[]): string[] {
  const out = files.filter((rel) => {
    const segs = rel.split('/');
    return segs.length <= MAX_LIST_DEPTH + 1 && !segs.some((s) => s.startsWith('.')) && IMAGE_EXT.test(segs[segs.length - 1]);
  });
  return out.sort().slice(0, MAX_LIST);
}

/** Image files of the input folder, "/"-separated relative paths, sorted; hidden files skipped. */
export function listInputImages(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith('.') || out.length >= MAX_LIST) continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory() && depth < MAX_LIST_DEPTH) walk(path.join(dir, e.name), r, depth + 1);
      else if (e.isFile() && IMAGE_EXT.test(e.name)) out.push(r);
    }
  };
  walk(root, '', 0);
  return out.sort();
}

/** "name.png", "sub/name.png" or ComfyUI's annotated "name.png [output]" -> absolute path. */
export function resolveImageRef(ref: string, folders: ImageFolders): string {
  const m = /^(.*) \[(input|output|temp)\]$/.exec(ref);
  const type = m && isFolderType(m[2]) ? m[2] : 'input';
  const name = m ? m[1] : ref;
  return resolveInside(folders[type], [name]);
}

export const LoadImage = defineNode({
  name: 'LoadImage',
  displayName: 'Load Image',
  category: 'image',
  description: 'Loads a PNG or JPEG image from the input folder; transparent pixels become the mask.',
  module: 'nodes',
  inputs: {
    required: {
      image: {
        type: 'COMBO',
        values: (s) => {
          const services = nodeServices(s, 'LoadImage image list');
          return services.inputFiles ? inputImagesOf(services.inputFiles()) : listInputImages(services.folders.input);
        },
        imageUpload: true,
      },
    },
  },
  outputs: [
    { name: 'IMAGE', type: 'IMAGE' },
    { name: 'MASK', type: 'MASK' },
  ],
  fingerprint({ image }, services) {
    return createHash('sha256')
      .update(fs.readFileSync(resolveImageRef(String(image), nodeServices(services, 'LoadImage').folders)))
      .digest('hex');
  },
  run({ image }, ctx) {
    const file = resolveImageRef(image, nodeServices(ctx.services, 'LoadImage').folders);
    let raw;
    try {
      raw = decodeImage(fs.readFileSync(file), image);
    } catch (e) {
      throw new Error(`LoadImage: cannot read "${image}": ${(e as Error).message}`);
    }
    const { image: img, mask } = rawToImageAndMask(raw);
    return [img, mask];
  },
});
