// Constant input coercion as ComfyUI's validation does it (shared/spec/comfyui-api.md §5.1 step 3): INT like
// Python's int(), FLOAT like float(), STRING like str(). BOOLEAN deliberately differs: the
// reference server turns the string "false" into true; here "false"/"0" are false and other
// strings are rejected. Returns the coerced value or a reason naming what is wrong.

export type Coerced = { ok: true; value: unknown } | { ok: false; reason: string };

const INT_RE = /^[+-]?\d+(?:_\d+)*$/;
const FLOAT_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i;
const INF_RE = /^[+-]?inf(?:inity)?$/i;

function show(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (v === null) return 'None';
  if (Array.isArray(v)) return 'list';
  return typeof v === 'object' ? 'dict' : String(v);
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * An exact integer as a number when a double holds it exactly, else as a BigInt: a seed of
 * 2^53 + 1 or 2^64 - 1 must reach the node, and the range check, unrounded.
 */
export function exactInt(v: bigint): number | bigint {
  return v <= MAX_SAFE && v >= -MAX_SAFE ? Number(v) : v;
}

export function coerceInt(v: unknown): Coerced {
  if (typeof v === 'boolean') return { ok: true, value: v ? 1 : 0 };
  if (typeof v === 'bigint') return { ok: true, value: exactInt(v) };
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return { ok: false, reason: 'cannot convert float NaN to integer' };
    if (!Number.isFinite(v)) return { ok: false, reason: 'cannot convert float infinity to integer' };
    const t = Math.trunc(v);
    // Python's int(1.8446744073709552e19) is that double's exact value, 2^64.
    return { ok: true, value: Number.isSafeInteger(t) ? t : exactInt(BigInt(t)) };
  }
  if (typeof v === 'string') {
    const s = v.trim();
    if (!INT_RE.test(s)) return { ok: false, reason: `invalid literal for int() with base 10: ${show(v)}` };
    // Python's own bound on int(str); it also keeps BigInt parsing cheap.
    if (s.length > 4300) return { ok: false, reason: 'Exceeds the limit (4300 digits) for integer string conversion' };
    return { ok: true, value: exactInt(BigInt(s.replaceAll('_', ''))) };
  }
  return { ok: false, reason: `int() argument must be a string or a number, not ${show(v)}` };
}

export function coerceFloat(v: unknown): Coerced {
  if (typeof v === 'boolean') return { ok: true, value: v ? 1 : 0 };
  if (typeof v === 'bigint') return { ok: true, value: Number(v) };
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return { ok: false, reason: 'NaN is not accepted' };
    return { ok: true, value: v };
  }
  if (typeof v === 'string') {
    const s = v.trim();
    if (INF_RE.test(s)) return { ok: true, value: s.startsWith('-') ? -Infinity : Infinity };
    if (!FLOAT_RE.test(s)) return { ok: false, reason: `could not convert string to float: ${show(v)}` };
    return { ok: true, value: Number(s) };
  }
  return { ok: false, reason: `float() argument must be a string or a real number, not ${show(v)}` };
}

export function coerceString(v: unknown): Coerced {
  if (typeof v === 'string') return { ok: true, value: v };
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return { ok: true, value: String(v) };
  return { ok: false, reason: `expected a string, got ${show(v)}` };
}

export function coerceBoolean(v: unknown): Coerced {
  if (typeof v === 'boolean') return { ok: true, value: v };
  if (typeof v === 'number') return { ok: true, value: v !== 0 };
  if (typeof v === 'bigint') return { ok: true, value: v !== 0n };
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (s === 'true' || s === '1') return { ok: true, value: true };
    if (s === 'false' || s === '0' || s === '') return { ok: true, value: false };
  }
  return { ok: false, reason: `expected a boolean, got ${show(v)}` };
}

/** Depth of nested arrays/objects (a scalar is 0), computed without recursion; stops past `limit`. */
export function nestingDepth(v: unknown, limit: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (x === null || typeof x !== 'object') continue;
    const depth = d + 1;
    if (depth > max) max = depth;
    if (max > limit) return max;
    for (const child of Array.isArray(x) ? x : Object.values(x)) stack.push([child, depth]);
  }
  return max;
}

/** Python-like repr of a value list for `value_not_in_list` details: `['a', 'b']`. */
export function pyListRepr(values: readonly unknown[]): string {
  return `[${values.map((x) => (typeof x === 'string' ? `'${x}'` : String(x))).join(', ')}]`;
}
