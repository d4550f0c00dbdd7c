// Request-body parsing for the ComfyUI routes: real clients send JSON as application/json,
// text/plain (@saintno/comfyui-sdk) and application/x-www-form-urlencoded (Python urllib), and
// sometimes an empty body. Malformed or hostile JSON is a 400, never a 500.

export class BodyError extends Error {
  readonly statusCode = 400;
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** Deepest nesting allowed in a request body; a real workflow needs fewer than 20 levels. */
export const MAX_JSON_DEPTH = 256;

/** Rejects too-deep nesting before JSON.parse builds it (cheap linear scan, strings skipped). */
export function checkJsonDepth(text: string, maxDepth = MAX_JSON_DEPTH): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91 /* { [ */) {
      if (++depth > maxDepth) throw new BodyError(`JSON body nests deeper than ${maxDepth} levels`, 'json_too_deep');
    } else if (c === 125 || c === 93) depth--;
  }
}

/** Parses a JSON body; an empty (or whitespace) body is `{}`. */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === '') return {};
  checkJsonDepth(text);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BodyError(`invalid JSON body: ${(e as Error).message}`, 'invalid_json');
  }
}

/** The body as a plain object ({} for anything else, as aiohttp handlers that .get() would fail). */
export function asObject(body: unknown): Record<string, unknown> {
  return typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
}
