// A small multipart/form-data parser over a fully buffered body (uploads are size-limited
// before they reach it). Enough for what ComfyUI clients send: text fields and file parts.

export interface Part {
  name: string;
  filename: string | undefined;
  contentType: string | undefined;
  data: Buffer;
}

export class MultipartError extends Error {
  readonly statusCode = 400;
  readonly code = 'invalid_multipart';
}

export function boundaryOf(contentType: string): string {
  const m = /boundary=(?:"([^"]{1,200})"|([^\s;]{1,200}))/i.exec(contentType);
  if (!m) throw new MultipartError('multipart/form-data without a boundary');
  return m[1] ?? m[2];
}

function headerParam(header: string, key: string): string | undefined {
  // name="x" or name=x; a quoted value may contain escaped quotes.
  const re = new RegExp(`(?:^|;)\\s*${key}=(?:"((?:[^"\\\\]|\\\\.)*)"|([^;]*))`, 'i');
  const m = re.exec(header);
  if (!m) return undefined;
  // Only \" and \\ are escapes (curl); browsers percent-encode quotes, and any other backslash
  // stays in the name, where path checks reject it.
  return m[1] !== undefined ? m[1].replace(/\\(["\\])/g, '$1') : m[2].trim();
}

export function parseMultipart(body: Buffer, boundary: string): Part[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: Part[] = [];
  let pos = body.indexOf(delimiter);
  if (pos < 0) throw new MultipartError('multipart body has no boundary line');
  for (;;) {
    pos += delimiter.length;
    if (body.subarray(pos, pos + 2).toString() === '--') return parts;
    if (body.subarray(pos, pos + 2).toString() !== '\r\n') throw new MultipartError('malformed multipart boundary line');
    pos += 2;
    const headerEnd = body.indexOf('\r\n\r\n', pos);
    if (headerEnd < 0) throw new MultipartError('multipart part without header end');
    const headers = new Map<string, string>();
    for (const line of body.toString('utf8', pos, headerEnd).split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headerEnd + 4);
    if (next < 0) throw new MultipartError('multipart part is not terminated by a boundary');
    const disposition = headers.get('content-disposition') ?? '';
    const name = headerParam(disposition, 'name');
    if (name === undefined) throw new MultipartError('multipart part without a name');
    parts.push({
      name,
      filename: headerParam(disposition, 'filename'),
      contentType: headers.get('content-type'),
      data: body.subarray(headerEnd + 4, next),
    });
    pos = next + 2;
  }
}
