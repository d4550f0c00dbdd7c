// Writing an IMAGE batch as PNG files the way ComfyUI's SaveImage / PreviewImage do: one file per
// batch element named "<prefix>_<counter>_.png", with the API prompt and every extra_pnginfo key
// (the UI workflow) as tEXt chunks, written atomically (temp file + link, never overwriting).
import fs from 'node:fs';
import path from 'node:path';
import { expandPrefix, fileNameFor, planSave } from './filenames.ts';
import { createFileAtomic, resolveInside } from './paths.ts';
import { asciiJson, encodePng } from './png.ts';
import { assertImage, imageToRgb8, type Image } from './types.ts';

export interface SavedImage {
  filename: string;
  subfolder: string;
  type: 'output' | 'temp';
}

export interface SaveOptions {
  root: string;
  type: 'output' | 'temp';
  prefix: string;
  /** The API prompt (hidden PROMPT input); omitted from the file when undefined. */
  prompt?: unknown;
  /** extra_data.extra_pnginfo (hidden EXTRA_PNGINFO input): one chunk per key. */
  extraPnginfo?: Record<string, unknown> | null;
  /** zlib level: 4 for saves, 1 for previews (ComfyUI's choices). */
  level: number;
  date?: Date;
}

export function pngTextFor(prompt: unknown, extraPnginfo: Record<string, unknown> | null | undefined): Record<string, string> {
  const text: Record<string, string> = {};
  if (prompt !== undefined && prompt !== null) text.prompt = asciiJson(prompt);
  for (const [k, v] of Object.entries(extraPnginfo ?? {})) text[k] = asciiJson(v);
  return text;
}

export function saveImageBatch(images: Image, opts: SaveOptions): SavedImage[] {
  // A producer that hands over a malformed IMAGE is named here, not deep inside the encoder.
  assertImage(images, `saving images (${opts.type})`);
  const expanded = expandPrefix(opts.prefix, { width: images.width, height: images.height, date: opts.date });
  // Throws for "..", absolute prefixes and symlinked folders that lead out of the root.
  const dirCheck = resolveInside(opts.root, [expanded]);
  const plan = planSave(opts.root, expanded);
  const dir = path.dirname(dirCheck);
  fs.mkdirSync(dir, { recursive: true });
  const text = pngTextFor(opts.prompt, opts.extraPnginfo);
  const saved: SavedImage[] = [];
  let counter = plan.counter;
  for (let b = 0; b < images.batch; b++) {
    const png = encodePng(imageToRgb8(images, b), { text, level: opts.level });
    // Another writer may take a number between planning and writing: move on to the next.
    for (;;) {
      const filename = fileNameFor(plan, b, counter);
      counter++;
      if (createFileAtomic(path.join(dir, filename), png)) {
        saved.push({ filename, subfolder: plan.subfolder, type: opts.type });
        break;
      }
    }
  }
  return saved;
}
