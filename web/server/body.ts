// Request-body parsing for the ComfyUI routes: real clients send JSON as application/json,
// text/plain (@saintno/comfyui-sdk) and application/x-www-form-urlencoded (Python urllib), and
// sometimes an empty body. Malformed or hostile JSON is a 400, never a 500.
import { JsonTextError, parseJsonExact } from '../../engine/json.ts';

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

/**
 * Parses a JSON body; an empty (or whitespace) body is `{}`. Integers beyond 2^53 - 1 (seeds up
 * to 0xffffffffffffffff) arrive as BigInt, exact, instead of rounded doubles.
 */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === '') return {};
  try {
    return parseJsonExact(text, MAX_JSON_DEPTH);
  } catch (e) {
    if (e instanceof JsonTextError)
      throw new BodyError(e.code === 'invalid_json' ? `invalid JSON body: ${e.message.replace(/^invalid JSON: /, '')}` : e.message, e.code);
    throw e;
  }
}

/** The body as a plain object ({} for anything else, as aiohttp handlers that .get() would fail). */
export function asObject(body: unknown): Record<string, unknown> {
  return typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
}
