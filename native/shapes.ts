// Shape arithmetic for the backend: axis normalisation, broadcasting to the raw ops' collapsed
// (shape, strides) form, and the (outer, axis, inner) split used by the axis ops.
import { fmtShape } from './tensor.ts';

export function normAxis(op: string, axis: number, ndim: number): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) throw new Error(`${op}: axis ${axis} is out of range for ${ndim} dims`);
  return a;
}

export const prod = (s: readonly number[], from = 0, to = s.length): number => {
  let p = 1;
  for (let i = from; i < to; i++) p *= s[i];
  return p;
};

/** (outer, axis length, inner) around `axis`. */
export function splitAt(shape: readonly number[], axis: number): [number, number, number] {
  return [prod(shape, 0, axis), shape[axis], prod(shape, axis + 1)];
}

export function checkShape(op: string, what: string, shape: readonly number[]): void {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`${op}: ${what} has an invalid dim in ${fmtShape(shape)}`);
  }
}

/**
 * Strides (elements) with which an operand of shape `s` is read when broadcast to `target`
 * (numpy rules: right-aligned, dims equal or 1). Throws naming the op and operand.
 */
export function broadcastStrides(op: string, what: string, s: readonly number[], target: readonly number[]): number[] {
  if (s.length > target.length) throw new Error(`${op}: ${what} ${fmtShape(s)} has more dims than ${fmtShape(target)}`);
  const strides = new Array<number>(target.length).fill(0);
  let acc = 1;
  for (let i = s.length - 1, j = target.length - 1; i >= 0; i--, j--) {
    if (s[i] === target[j]) strides[j] = s[i] === 1 ? 0 : acc;
    else if (s[i] === 1) strides[j] = 0;
    else throw new Error(`${op}: ${what} ${fmtShape(s)} does not broadcast to ${fmtShape(target)}`);
    acc *= s[i];
  }
  return strides;
}

/**
 * Drops size-1 dims and merges neighbours that are contiguous for every operand, so the raw
 * kernel iterates over as few, as long rows as possible. Returns at least one dim.
 */
export function collapse(shape: readonly number[], strides: number[][]): { shape: number[]; strides: number[][] } {
  const keep = shape.map((d, i) => i).filter((i) => shape[i] !== 1);
  let outShape = keep.map((i) => shape[i]);
  let outStrides = strides.map((st) => keep.map((i) => st[i]));
  if (outShape.length === 0) return { shape: [1], strides: strides.map(() => [0]) };
  const s2: number[] = [outShape[0]];
  const st2 = outStrides.map((st) => [st[0]]);
  for (let d = 1; d < outShape.length; d++) {
    const last = s2.length - 1;
    const mergeable = outStrides.every((st, k) => st2[k][last] === st[d] * outShape[d]);
    if (mergeable) {
      s2[last] *= outShape[d];
      outStrides.forEach((st, k) => {
        st2[k][last] = st[d];
      });
    } else {
      s2.push(outShape[d]);
      outStrides.forEach((st, k) => st2[k].push(st[d]));
    }
  }
  outShape = s2;
  outStrides = st2;
  return { shape: outShape, strides: outStrides };
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}
