// Constant input coercion as ComfyUI's validation does it (spec §5.1 step 3): INT like
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

export function coerceInt(v: unknown): Coerced {
  if (typeof v === 'boolean') return { ok: true, value: v ? 1 : 0 };
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return { ok: false, reason: 'cannot convert float NaN to integer' };
    if (!Number.isFinite(v)) return { ok: false, reason: 'cannot convert float infinity to integer' };
    return { ok: true, value: Math.trunc(v) };
  }
  if (typeof v === 'string') {
    const s = v.trim();
    if (!INT_RE.test(s)) return { ok: false, reason: `invalid literal for int() with base 10: ${show(v)}` };
    return { ok: true, value: Number(s.replaceAll('_', '')) };
  }
  return { ok: false, reason: `int() argument must be a string or a number, not ${show(v)}` };
}

export function coerceFloat(v: unknown): Coerced {
  if (typeof v === 'boolean') return { ok: true, value: v ? 1 : 0 };
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
  if (typeof v === 'number' || typeof v === 'boolean') return { ok: true, value: String(v) };
  return { ok: false, reason: `expected a string, got ${show(v)}` };
}

export function coerceBoolean(v: unknown): Coerced {
  if (typeof v === 'boolean') return { ok: true, value: v };
  if (typeof v === 'number') return { ok: true, value: v !== 0 };
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
