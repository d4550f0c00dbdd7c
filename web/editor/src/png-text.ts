// Reads the text chunks of a PNG (tEXt and uncompressed iTXt) into keyword -> text, the way the
// ComfyUI frontend does before restoring a workflow from an image (shared/spec/comfyui-api.md §6).

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function readPngText(bytes: Uint8Array): Record<string, string> {
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) {
    throw new Error('readPngText: not a PNG file (bad signature)');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8');
  const out: Record<string, string> = {};
  let pos = 8;
  // Each chunk: u32 length, 4-byte type, data, u32 CRC.
  while (pos + 12 <= bytes.length) {
    const len = view.getUint32(pos);
    const type = latin1.decode(bytes.subarray(pos + 4, pos + 8));
    const start = pos + 8;
    const end = start + len;
    if (end + 4 > bytes.length) throw new Error(`readPngText: chunk ${type} at byte ${pos} runs past the end of the file`);
    const data = bytes.subarray(start, end);
    if (type === 'tEXt' || type === 'iTXt') {
      const nul = data.indexOf(0);
      if (nul > 0) {
        const key = latin1.decode(data.subarray(0, nul));
        if (type === 'tEXt') {
          out[key] = latin1.decode(data.subarray(nul + 1));
        } else {
          // iTXt: keyword\0 compressionFlag compressionMethod language\0 translated\0 text
          const compressed = data[nul + 1] === 1;
          let p = nul + 3;
          const langEnd = data.indexOf(0, p);
          p = langEnd + 1;
          const transEnd = data.indexOf(0, p);
          if (langEnd >= 0 && transEnd >= 0 && !compressed) out[key] = utf8.decode(data.subarray(transEnd + 1));
        }
      }
    }
    if (type === 'IEND') break;
    pos = end + 4;
  }
  return out;
}
