// PNG encoding and decoding with text chunks, on node:zlib only.
// Writing: 8-bit gray / gray+alpha / RGB / RGBA, tEXt chunks placed BEFORE IDAT (libvips and
// sharp ignore text after the image data; PIL, and so ComfyUI, writes them first).
// Reading: every colour type and bit depth of non-interlaced PNGs plus Adam7, and tEXt / zTXt /
// iTXt text chunks, which is what the ComfyUI frontend reads to restore a workflow.
import { deflateSync, inflateSync } from 'node:zlib';
import { stringifyJson } from '../../engine/json.ts';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(...parts: Uint8Array[]): number {
  let c = 0xffffffff;
  for (const p of parts) for (let i = 0; i < p.length; i++) c = CRC_TABLE[(c ^ p[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(head.subarray(4), data), 0);
  return Buffer.concat([head, data, crc]);
}

/**
 * JSON with every non-ASCII character escaped as \uXXXX (what Python's json.dumps does), so the
 * text fits a Latin-1 tEXt chunk and JSON.parse restores it exactly. A bigint (a seed beyond
 * 2^53) is written as its exact digits, as Python would.
 */
export function asciiJson(value: unknown): string {
  return stringifyJson(value).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

export interface RawImage {
  width: number;
  height: number;
  /** 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. */
  channels: 1 | 2 | 3 | 4;
  /** Row-major (H, W, channels), 8 bits per sample. */
  data: Uint8Array;
}

export interface EncodeOptions {
  /** keyword -> Latin-1 text; written as tEXt chunks before IDAT, in insertion order. */
  text?: Record<string, string>;
  /** zlib level 0-9 (ComfyUI uses 4 for saves and 1 for previews). */
  level?: number;
}

const COLOR_TYPE_OF_CHANNELS = { 1: 0, 2: 4, 3: 2, 4: 6 } as const;

export function encodePng(img: RawImage, opts: EncodeOptions = {}): Buffer {
  const { width, height, channels, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`encodePng: invalid size ${width}x${height}`);
  }
  if (data.length !== width * height * channels) {
    throw new Error(`encodePng: data has ${data.length} bytes, expected ${width}*${height}*${channels}`);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = COLOR_TYPE_OF_CHANNELS[channels];
  // bytes 10..12: compression 0, filter method 0, no interlace

  // Each scanline gets the "Sub" filter: cheap and good for smooth images.
  const stride = width * channels;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    const src = y * stride;
    const dst = y * (stride + 1);
    raw[dst] = 1;
    for (let i = 0; i < stride; i++) {
      const left = i >= channels ? data[src + i - channels] : 0;
      raw[dst + 1 + i] = (data[src + i] - left) & 0xff;
    }
  }

  const parts: Buffer[] = [SIGNATURE, chunk('IHDR', ihdr)];
  for (const [keyword, text] of Object.entries(opts.text ?? {})) {
    parts.push(chunk('tEXt', textChunkData(keyword, text)));
  }
  parts.push(chunk('IDAT', deflateSync(raw, { level: opts.level ?? 4 })));
  parts.push(chunk('IEND', new Uint8Array(0)));
  return Buffer.concat(parts);
}

function textChunkData(keyword: string, text: string): Buffer {
  if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(keyword) || keyword.startsWith(' ') || keyword.endsWith(' ')) {
    throw new Error(`encodePng: invalid tEXt keyword ${JSON.stringify(keyword)} (1-79 Latin-1 characters)`);
  }
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0xff) {
      throw new Error(`encodePng: text of "${keyword}" is not Latin-1 at index ${i}; escape it (asciiJson)`);
    }
  }
  return Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]);
}

interface Chunk {
  type: string;
  data: Buffer;
}

function* chunks(buf: Buffer): Generator<Chunk> {
  if (buf.length < 8 || !buf.subarray(0, 8).equals(SIGNATURE)) throw new Error('PNG: bad signature (not a PNG file)');
  let off = 8;
  while (off + 12 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    if (off + 12 + len > buf.length) throw new Error(`PNG: chunk ${type} at byte ${off} runs past the end of the file`);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (buf.readUInt32BE(off + 8 + len) !== crc32(buf.subarray(off + 4, off + 8), data)) {
      throw new Error(`PNG: CRC mismatch in chunk ${type} at byte ${off}`);
    }
    yield { type, data };
    off += 12 + len;
    if (type === 'IEND') return;
  }
  throw new Error('PNG: truncated (no IEND chunk)');
}

/** Text chunks (tEXt, zTXt, iTXt) as keyword -> text; the first occurrence of a keyword wins. */
export function readPngText(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { type, data } of chunks(buf)) {
    if (type !== 'tEXt' && type !== 'zTXt' && type !== 'iTXt') continue;
    const nul = data.indexOf(0);
    if (nul < 1) continue;
    const keyword = data.toString('latin1', 0, nul);
    let text: string;
    if (type === 'tEXt') {
      text = data.toString('latin1', nul + 1);
    } else if (type === 'zTXt') {
      text = inflateSync(data.subarray(nul + 2)).toString('latin1');
    } else {
      // iTXt: keyword\0 flag method language\0 translated\0 text(UTF-8)
      const compressed = data[nul + 1] === 1;
      const langEnd = data.indexOf(0, nul + 3);
      const transEnd = langEnd < 0 ? -1 : data.indexOf(0, langEnd + 1);
      if (transEnd < 0) continue;
      const body = data.subarray(transEnd + 1);
      text = (compressed ? inflateSync(body) : body).toString('utf8');
    }
    if (!(keyword in out)) out[keyword] = text;
  }
  return out;
}

const CHANNELS_OF_COLOR_TYPE: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

export interface DecodedPng extends RawImage {
  /** Whether the file carries transparency (alpha channel, or tRNS). */
  hasAlpha: boolean;
  text: Record<string, string>;
}

/** Decodes any standard PNG to 8-bit samples: gray(1), gray+alpha(2), RGB(3) or RGBA(4). */
export function decodePng(buf: Buffer): DecodedPng {
  let width = 0;
  let height = 0;
  let depth = 0;
  let colorType = -1;
  let interlace = 0;
  let palette: Buffer | undefined;
  let trns: Buffer | undefined;
  const idat: Buffer[] = [];
  for (const { type, data } of chunks(buf)) {
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      depth = data[8];
      colorType = data[9];
      interlace = data[12];
    } else if (type === 'PLTE') palette = data;
    else if (type === 'tRNS') trns = data;
    else if (type === 'IDAT') idat.push(data);
  }
  const srcChannels = CHANNELS_OF_COLOR_TYPE[colorType];
  if (!srcChannels || ![1, 2, 4, 8, 16].includes(depth)) {
    throw new Error(`PNG: unsupported colour type ${colorType} / bit depth ${depth}`);
  }
  if (width < 1 || height < 1 || width * height > 1 << 28) throw new Error(`PNG: unsupported size ${width}x${height}`);
  if (colorType === 3 && !palette) throw new Error('PNG: palette image without PLTE chunk');
  const raw = inflateSync(Buffer.concat(idat));
  const bitsPerPixel = srcChannels * depth;

  // Samples of the whole image, (H, W, srcChannels), at the file's depth (16-bit kept for now).
  const samples = new Uint16Array(width * height * srcChannels);
  const passes = interlace
    ? [
        [0, 0, 8, 8],
        [4, 0, 8, 8],
        [0, 4, 4, 8],
        [2, 0, 4, 4],
        [0, 2, 2, 4],
        [1, 0, 2, 2],
        [0, 1, 1, 2],
      ]
    : [[0, 0, 1, 1]];
  let pos = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const pw = Math.ceil((width - x0) / dx);
    const ph = Math.ceil((height - y0) / dy);
    if (pw <= 0 || ph <= 0) continue;
    const stride = Math.ceil((pw * bitsPerPixel) / 8);
    const bpp = Math.max(1, bitsPerPixel >> 3);
    let prev = Buffer.alloc(stride);
    for (let y = 0; y < ph; y++) {
      if (pos + 1 + stride > raw.length) throw new Error('PNG: image data is shorter than the header says');
      const filter = raw[pos];
      const line = Buffer.from(raw.subarray(pos + 1, pos + 1 + stride));
      pos += 1 + stride;
      unfilter(filter, line, prev, bpp);
      for (let x = 0; x < pw; x++) {
        const o = ((y0 + y * dy) * width + (x0 + x * dx)) * srcChannels;
        for (let c = 0; c < srcChannels; c++) samples[o + c] = readSample(line, x * srcChannels + c, depth);
      }
      prev = line;
    }
  }

  const hasAlpha = colorType === 4 || colorType === 6 || trns !== undefined;
  const isGray = colorType === 0 || colorType === 4;
  const outChannels = (isGray ? 1 : 3) + (hasAlpha ? 1 : 0);
  const out = new Uint8Array(width * height * outChannels);
  const maxIn = (1 << depth) - 1;
  const to8 = (v: number) => (depth === 8 ? v : depth === 16 ? v >> 8 : Math.round((v * 255) / maxIn));
  const trnsKey = trns && (colorType === 0 || colorType === 2) ? [0, 2, 4].slice(0, srcChannels).map((o) => trns!.readUInt16BE(o)) : undefined;
  for (let p = 0; p < width * height; p++) {
    const s = p * srcChannels;
    const o = p * outChannels;
    if (colorType === 3) {
      const idx = samples[s];
      if (idx * 3 + 2 >= palette!.length) throw new Error(`PNG: palette index ${idx} out of range`);
      out[o] = palette![idx * 3];
      out[o + 1] = palette![idx * 3 + 1];
      out[o + 2] = palette![idx * 3 + 2];
      if (hasAlpha) out[o + 3] = idx < trns!.length ? trns![idx] : 255;
      continue;
    }
    for (let c = 0; c < srcChannels; c++) out[o + c] = to8(samples[s + c]);
    if (trnsKey) {
      const transparent = trnsKey.every((k, c) => samples[s + c] === k);
      out[o + srcChannels] = transparent ? 0 : 255;
    }
  }
  return { width, height, channels: outChannels as 1 | 2 | 3 | 4, data: out, hasAlpha, text: readPngText(buf) };
}

function readSample(line: Buffer, index: number, depth: number): number {
  if (depth === 8) return line[index];
  if (depth === 16) return line.readUInt16BE(index * 2);
  const bit = index * depth;
  return (line[bit >> 3] >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
}

function unfilter(filter: number, line: Buffer, prev: Buffer, bpp: number): void {
  const n = line.length;
  switch (filter) {
    case 0:
      return;
    case 1:
      for (let i = bpp; i < n; i++) line[i] = (line[i] + line[i - bpp]) & 0xff;
      return;
    case 2:
      for (let i = 0; i < n; i++) line[i] = (line[i] + prev[i]) & 0xff;
      return;
    case 3:
      for (let i = 0; i < n; i++) line[i] = (line[i] + (((i >= bpp ? line[i - bpp] : 0) + prev[i]) >> 1)) & 0xff;
      return;
    case 4:
      for (let i = 0; i < n; i++) {
        const a = i >= bpp ? line[i - bpp] : 0;
        const b = prev[i];
        const c = i >= bpp ? prev[i - bpp] : 0;
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        line[i] = (line[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)) & 0xff;
      }
      return;
    default:
      throw new Error(`PNG: unknown scanline filter ${filter}`);
  }
}
