// File routes: GET /view (output / input / temp images), POST /upload/image and /upload/mask
// (shared/spec/comfyui-api.md §1.8-1.9).
// Files are read and written through the server's output store (state.files: the folders, or a
// cluster's Redis; cluster/output_store.ts). Every user-supplied name is checked by the store
// (nodes/image/paths.ts rules), so nothing outside the three folders can be read or written.
import path from 'node:path';
import type { FastifyReply } from 'fastify';
import { z } from 'zod';
import { sendComfyError } from '../errors.ts';
import type { RoutePlugin } from '../http.ts';
import { boundaryOf, parseMultipart } from '../multipart.ts';
import { anyValue, invalidAs, optString } from '../schema.ts';
import { isFolderType } from '../../../nodes/image/folders.ts';
import { relativeSegments, UnsafePathError } from '../../../nodes/image/paths.ts';
import {
  FileTooLargeError,
  StoreFullError,
  storeNoClobber,
  uploadNames,
  type FolderType,
  type OutputStore,
  type StoredFile,
} from '../../../cluster/output_store.ts';
import { decodeImage, encodeJpeg, sniffImageType } from '../../../nodes/image/decode.ts';
import { encodePng, readPngText, type RawImage } from '../../../nodes/image/png.ts';

const CONTENT_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
  '.svg': 'image/svg+xml',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
  '.mp3': 'audio/mpeg',
  '.flac': 'audio/flac',
  '.wav': 'audio/wav',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

export function contentTypeFor(name: string): string {
  // Active content (HTML, JS, CSS, SVG scripts) is never rendered from user folders.
  return CONTENT_TYPES[path.extname(name).toLowerCase()] ?? 'application/octet-stream';
}

function fail(reply: FastifyReply, status: number, message: string) {
  return sendComfyError(reply, status, status === 404 ? 'not_found' : 'bad_request', message);
}

/**
 * GET /view's query. Names are checked in the handler, against the folders; here only their
 * types: a repeated key (a list) is no name.
 */
const viewQuery = z.object({
  // Absent: 404 "no filename"; present but not a string: '' (an invalid filename, 400).
  filename: anyValue.transform((v) => (v === undefined ? undefined : typeof v === 'string' ? v : '')),
  type: anyValue.transform((v) => (typeof v === 'string' && v !== '' ? v : 'output')),
  subfolder: anyValue.transform((v) => (typeof v === 'string' ? v : '')),
  channel: anyValue.transform((v) => (typeof v === 'string' ? v : 'rgba')),
  preview: anyValue.transform((v) => (typeof v === 'string' ? v : '')),
});

/** An upload's body: the multipart bytes (other content types are parsed as JSON, not bytes). */
const multipartBody = z.custom<Buffer>((b) => Buffer.isBuffer(b), { error: 'expected multipart/form-data with an "image" file part' });

/** The text fields of an upload, from its parts. */
const uploadFields = z.object({
  type: anyValue.transform((v) => (typeof v === 'string' && v !== '' ? v : 'input')),
  subfolder: anyValue.transform((v) => (typeof v === 'string' ? v : '')),
  overwrite: anyValue.transform((v) => typeof v === 'string' && ['true', '1'].includes(v.toLowerCase())),
  original_ref: optString,
});

/**
 * ComfyUI's /view channels: 'rgb' drops the alpha; 'a' is an RGBA image, black, whose alpha is
 * the source's (opaque where the source has none) — the mask editor reads it as a mask layer.
 * `alphaAsGray` gives the alpha as a gray image instead, for JPEG previews, which have no alpha.
 */
function selectChannels(img: RawImage, channel: 'rgb' | 'a', alphaAsGray = false): RawImage {
  const px = img.width * img.height;
  const outChannels: 1 | 3 | 4 = channel === 'rgb' ? 3 : alphaAsGray ? 1 : 4;
  const out = new Uint8Array(px * outChannels);
  const hasAlpha = img.channels === 2 || img.channels === 4;
  for (let p = 0; p < px; p++) {
    const s = p * img.channels;
    if (channel === 'a') out[p * outChannels + outChannels - 1] = hasAlpha ? img.data[s + img.channels - 1] : 255;
    else for (let c = 0; c < 3; c++) out[p * 3 + c] = img.data[s + (img.channels <= 2 ? 0 : c)];
  }
  return { width: img.width, height: img.height, channels: outChannels, data: out };
}

/**
 * Writes an upload as ComfyUI does: with `overwrite`, replace; else keep an identical existing
 * file, or pick "<stem> (n)<ext>" — against the store, so the rule holds across front ends.
 * Returns the final name (undefined when no name is free).
 */
async function storeUpload(
  store: OutputStore,
  type: FolderType,
  subfolder: string,
  filename: string,
  data: Uint8Array,
  overwrite: boolean,
): Promise<string | undefined> {
  if (overwrite) {
    await store.write(type, subfolder, filename, data);
    return filename;
  }
  return storeNoClobber(store, type, subfolder, data, uploadNames(filename));
}

/**
 * /upload/mask: the image named by `original_ref` ({filename, subfolder, type}) with its alpha
 * replaced by the uploaded image's alpha, as a PNG keeping the original's text chunks. Returns
 * the PNG, or a reason for a 400.
 */
async function composeMask(refText: string | undefined, maskBytes: Buffer, store: OutputStore): Promise<Uint8Array | string> {
  if (!refText) return 'missing "original_ref"';
  let ref: { filename?: unknown; subfolder?: unknown; type?: unknown };
  try {
    ref = JSON.parse(refText) as typeof ref;
  } catch {
    return '"original_ref" is not JSON';
  }
  if (typeof ref.filename !== 'string' || ref.filename === '') return '"original_ref" has no filename';
  const type = typeof ref.type === 'string' ? ref.type : 'input';
  if (!isFolderType(type)) return `unknown original_ref type ${JSON.stringify(type)}`;
  const subfolder = typeof ref.subfolder === 'string' ? ref.subfolder : '';
  let originalBytes: Buffer;
  try {
    const file = await store.resolve(type, subfolder, ref.filename);
    if (!file) return `cannot read the original image: ${type}/${subfolder ? `${subfolder}/` : ''}${ref.filename} does not exist`;
    originalBytes = await file.read();
  } catch (e) {
    // Redis unreachable and the like: not the client's fault (503).
    if (!(e instanceof UnsafePathError) && (e as { statusCode?: number }).statusCode !== undefined) throw e;
    return `cannot read the original image: ${(e as Error).message}`;
  }
  let original: RawImage;
  let maskImg: RawImage;
  try {
    original = decodeImage(originalBytes, 'original image');
    maskImg = decodeImage(maskBytes, 'mask image');
  } catch (e) {
    return (e as Error).message;
  }
  if (original.width !== maskImg.width || original.height !== maskImg.height) {
    return `mask is ${maskImg.width}x${maskImg.height} but the original is ${original.width}x${original.height}`;
  }
  const px = original.width * original.height;
  const rgba = new Uint8Array(px * 4);
  const maskHasAlpha = maskImg.channels === 2 || maskImg.channels === 4;
  for (let p = 0; p < px; p++) {
    const s = p * original.channels;
    const gray = original.channels <= 2;
    for (let c = 0; c < 3; c++) rgba[p * 4 + c] = original.data[s + (gray ? 0 : c)];
    rgba[p * 4 + 3] = maskHasAlpha ? maskImg.data[p * maskImg.channels + maskImg.channels - 1] : 255;
  }
  const text = sniffImageType(originalBytes) === 'png' ? readPngText(originalBytes) : {};
  return encodePng({ width: original.width, height: original.height, channels: 4, data: rgba }, { text, level: 4 });
}

export const fileRoutes: RoutePlugin = async (app, { state }) => {
  const store = state.files;

  app.get('/view', { schema: { querystring: viewQuery } }, async (req, reply) => {
    const q = req.query;
    if (q.filename === undefined) return fail(reply, 404, 'no filename');
    let filename = q.filename;
    let type = q.type;
    const annotated = /^(.*) \[(input|output|temp)\]$/.exec(filename);
    if (annotated) {
      filename = annotated[1];
      type = annotated[2];
    }
    if (filename === '' || filename.startsWith('/') || filename.includes('..') || filename.includes('\0') || filename.includes('\\')) {
      return fail(reply, 400, 'invalid filename');
    }
    if (!isFolderType(type)) return fail(reply, 400, `unknown type ${JSON.stringify(type)}`);
    const name = path.posix.basename(filename);
    const subfolder = q.subfolder;
    let file: StoredFile | undefined;
    try {
      file = await store.resolve(type, subfolder, name);
    } catch (e) {
      if (e instanceof UnsafePathError) return fail(reply, 403, 'path outside the folder');
      throw e;
    }
    if (!file) return fail(reply, 404, 'file not found');
    reply.header('Content-Disposition', `filename="${name.replace(/["\r\n]/g, '_')}"`);
    reply.header('Cache-Control', 'no-cache');
    const { channel, preview } = q;
    if (channel === 'rgb' || channel === 'a' || preview !== '') {
      const bytes = await file.read();
      if (sniffImageType(bytes) !== undefined) {
        let img: RawImage;
        try {
          img = decodeImage(bytes, name);
        } catch (e) {
          return fail(reply, 400, `cannot decode ${name}: ${(e as Error).message}`);
        }
        if (channel === 'rgb' || channel === 'a') img = selectChannels(img, channel, preview !== '');
        if (preview !== '') {
          // "jpeg;80" or "webp;90": WebP has no encoder here, so every preview is a JPEG.
          const quality = Number(preview.split(';')[1] ?? 90);
          return reply.type('image/jpeg').send(encodeJpeg(img, Number.isFinite(quality) ? quality : 90));
        }
        return reply.type('image/png').send(encodePng(img, { level: 1 }));
      }
    }
    // A local file streams from disk; a stored one is in memory already (Redis hands it over whole).
    if (file.localPath !== undefined) return reply.type(contentTypeFor(name)).header('content-length', file.size).send(file.open());
    const bytes = await file.read();
    return reply.type(contentTypeFor(name)).header('content-length', bytes.length).send(bytes);
  });

  const upload = async (body: Buffer, contentType: string | undefined, reply: FastifyReply, mask: boolean) => {
    const parts = parseMultipart(body, boundaryOf(contentType ?? ''));
    const image = parts.find((p) => p.name === 'image' && p.filename !== undefined);
    if (!image || !image.filename) return fail(reply, 400, 'missing "image" file part or its filename');
    // The first text part of each name, as ComfyUI's post.get() reads it.
    const fields: Record<string, string> = {};
    for (const p of parts) if (p.filename === undefined && !(p.name in fields)) fields[p.name] = p.data.toString('utf8');
    const { type, subfolder, overwrite, original_ref } = uploadFields.parse(fields);
    if (!isFolderType(type)) return fail(reply, 400, `unknown type ${JSON.stringify(type)}`);
    try {
      const segs = relativeSegments(image.filename);
      if (segs.length !== 1 || segs[0] !== image.filename) throw new Error('filename must be a plain name');
      store.check(type, subfolder);
      store.check(type, subfolder, image.filename);
    } catch (e) {
      return fail(reply, 400, `invalid upload path: ${(e as Error).message}`);
    }
    let data: Uint8Array = image.data;
    if (mask) {
      const composed = await composeMask(original_ref, image.data, store);
      if (typeof composed === 'string') return fail(reply, 400, composed);
      data = composed;
    }
    let name: string | undefined;
    try {
      // The store checks the path again once the folder exists (it may have been swapped for a
      // symlink meanwhile).
      name = await storeUpload(store, type, subfolder, image.filename, data, overwrite);
    } catch (e) {
      if (e instanceof UnsafePathError) return fail(reply, 400, `invalid upload path: ${e.message}`);
      if (e instanceof FileTooLargeError || e instanceof StoreFullError) return sendComfyError(reply, e.statusCode, e.code, e.message);
      throw e;
    }
    if (name === undefined) return fail(reply, 409, 'too many files with this name');
    return { name, subfolder, type };
  };
  const uploadRoute = {
    bodyLimit: state.options.maxUploadBytes,
    schema: { body: multipartBody },
    errorHandler: invalidAs((reply, issue) => fail(reply, 400, issue.message)),
  };
  app.post('/upload/image', uploadRoute, (req, reply) => upload(req.body, req.headers['content-type'], reply, false));
  app.post('/upload/mask', uploadRoute, (req, reply) => upload(req.body, req.headers['content-type'], reply, true));
};
