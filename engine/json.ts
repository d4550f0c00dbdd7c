// JSON that keeps big integers exact. JSON.parse turns 18446744073709551615 (ComfyUI's seed
// maximum) into 18446744073709551616; Python's json keeps it. Node 20 has neither the reviver's
// `context.source` nor JSON.rawJSON, so integer literals beyond 2^53 - 1 are rewritten to marked
// strings before JSON.parse and turned into BigInt by a reviver, and BigInt values are written
// back as bare digits. The marker carries a per-process random nonce, so no string a client
// sends can be mistaken for one. Browser-safe (no node: imports).

const NONCE = Math.random().toString(36).slice(2, 12) + Math.random().toString(36).slice(2, 12);
/** Decoded form of the marker prefix (a NUL keeps it out of any sensible user text too). */
const MARK = `\u0000bigint${NONCE}:`;
/** How MARK is spelled inside JSON text (the NUL escaped). */
const MARK_JSON = `\\u0000bigint${NONCE}:`;
const MARKED_RE = new RegExp(`"\\\\u0000bigint${NONCE}:(-?\\d+)"`, 'g');
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export class JsonTextError extends Error {
  override name = 'JsonTextError';
  constructor(
    message: string,
    readonly code: 'json_too_deep' | 'invalid_json',
  ) {
    super(message);
  }
}

/**
 * One linear pass over JSON text: refuses nesting deeper than `maxDepth` (before JSON.parse
 * builds it) and finds the integer literals that a double cannot hold. Returns the text with
 * those literals marked, or undefined when there are none (the common case).
 */
function scan(text: string, maxDepth: number): string | undefined {
  let depth = 0;
  let out: string[] | undefined;
  let copied = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 92 /* \ */) i++;
        else if (d === 34) break;
      }
    } else if (c === 123 || c === 91 /* { [ */) {
      if (++depth > maxDepth) throw new JsonTextError(`JSON body nests deeper than ${maxDepth} levels`, 'json_too_deep');
    } else if (c === 125 || c === 93) {
      depth--;
    } else if (c === 45 /* - */ || (c >= 48 && c <= 57)) {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) >= 48 && text.charCodeAt(j) <= 57) j++;
      const next = j < text.length ? text.charCodeAt(j) : -1;
      const isInt = next !== 46 /* . */ && next !== 101 && next !== 69; /* e E */
      // 15 digits always fit a double exactly; only longer literals need a closer look.
      const digits = j - i - (c === 45 ? 1 : 0);
      if (isInt && digits > 15 && digits < 5000) {
        const literal = text.slice(i, j);
        let big: bigint | undefined;
        try {
          big = BigInt(literal);
        } catch {
          big = undefined; // malformed ("-", "01..."): JSON.parse reports it
        }
        if (big !== undefined && (big > MAX_SAFE || big < -MAX_SAFE) && !/^-?0\d/.test(literal)) {
          out ??= [];
          out.push(text.slice(copied, i), `"${MARK_JSON}${big.toString()}"`);
          copied = j;
        }
      }
      i = j - 1;
    }
  }
  if (!out) return undefined;
  out.push(text.slice(copied));
  return out.join('');
}

function revive(_key: string, value: unknown): unknown {
  return typeof value === 'string' && value.startsWith(MARK) ? BigInt(value.slice(MARK.length)) : value;
}

/**
 * JSON.parse that keeps integers outside ±(2^53 - 1) exact as BigInt (smaller ones stay
 * numbers) and refuses nesting deeper than `maxDepth`. Throws JsonTextError.
 */
export function parseJsonExact(text: string, maxDepth = Infinity): unknown {
  const marked = scan(text, maxDepth);
  try {
    return marked === undefined ? JSON.parse(text) : JSON.parse(marked, revive);
  } catch (e) {
    throw new JsonTextError(`invalid JSON: ${(e as Error).message}`, 'invalid_json');
  }
}

function markBigInt(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `${MARK}${value.toString()}` : value;
}

/** JSON.stringify that writes BigInt values as bare integer literals (what Python's json does). */
export function stringifyJson(value: unknown, space?: number): string {
  try {
    return JSON.stringify(value, undefined, space);
  } catch (e) {
    // Only pay for the replacer when there is a BigInt to write.
    if (!(e instanceof TypeError) || !/BigInt/i.test(e.message)) throw e;
  }
  return JSON.stringify(value, markBigInt, space).replace(MARKED_RE, '$1');
}
