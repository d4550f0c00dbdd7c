// A model's tensor layout, declared once per model as a function of its config: every checkpoint
// tensor in state_dict order with its shape, the dtype it is loaded in, and how a freshly
// constructed module initialises it. The expected-tensor check (`checkLayout`), the loaders
// (`WeightSet`, weight_set.ts), `expected*Tensors` and the tiny-model generator
// (scripts/make-tiny-models.ts) all read the same table, so they cannot disagree.
import type { WeightSource } from './weight_set.ts';

/** How a freshly constructed module fills a tensor (what the tiny-model generator writes):
 *  fan-in scaled normal (std gain/√fanIn), a constant, or a normal of given std (and mean). */
export type Init = { kind: 'fanin'; fanIn: number; gain?: number } | { kind: 'const'; value: number } | { kind: 'normal'; std: number; mean?: number };

export interface LayoutEntry {
  name: string;
  shape: number[];
  /** 'compute': converted to the model's compute dtype on load; 'f32': kept in f32 (Gemma's norms). */
  dtype: 'compute' | 'f32';
  init: Init;
}

/** Ordered as the checkpoint stores it (the tiny generator writes files in this order). */
export type Layout = LayoutEntry[];

const smallBias: Init = { kind: 'normal', std: 0.02 };
export const ONES: Init = { kind: 'const', value: 1 };
export const ZEROS: Init = { kind: 'const', value: 0 };

/** Appends one tensor (compute dtype unless told). */
export function tensor(out: Layout, name: string, shape: number[], init: Init, dtype: LayoutEntry['dtype'] = 'compute'): void {
  out.push({ name, shape, dtype, init });
}

/** torch Linear: weight (out, in) [+ bias (out)]. */
export function linear(out: Layout, name: string, nOut: number, nIn: number, bias: boolean, gain = 1): void {
  tensor(out, `${name}.weight`, [nOut, nIn], { kind: 'fanin', fanIn: nIn, gain });
  if (bias) tensor(out, `${name}.bias`, [nOut], smallBias);
}

/** torch Conv2d: weight (out, in/groups, k, k) [+ bias (out)]. */
export function conv(out: Layout, name: string, nOut: number, nIn: number, k: number, bias: boolean, groups = 1, gain = 1): void {
  const perGroup = nIn / groups;
  tensor(out, `${name}.weight`, [nOut, perGroup, k, k], { kind: 'fanin', fanIn: perGroup * k * k, gain });
  if (bias) tensor(out, `${name}.bias`, [nOut], smallBias);
}

/** diffusers RMSNorm with elementwise affine and bias: weight 1, bias 0 at init. */
export function rmsNormAffine(out: Layout, name: string, c: number): void {
  tensor(out, `${name}.weight`, [c], ONES);
  tensor(out, `${name}.bias`, [c], ZEROS);
}

/** name → shape, in layout order. */
export function layoutShapes(layout: Layout): Map<string, number[]> {
  return new Map(layout.map((e) => [e.name, e.shape]));
}

/**
 * Compares a checkpoint's names and shapes with the ones its config implies, before anything is
 * loaded. Returns one line per missing or mis-shaped tensor, and the names the config does not
 * expect (the caller decides which of those matter and how to describe them).
 */
export function tensorShapeProblems(
  want: ReadonlyMap<string, readonly number[]>,
  src: { keys(): string[]; entry(name: string): { shape: readonly number[]; file: string } },
): { problems: string[]; extra: string[] } {
  const have = new Set(src.keys());
  const problems: string[] = [];
  for (const [name, shape] of want) {
    if (!have.has(name)) { problems.push(`missing ${name} ${JSON.stringify(shape)}`); continue; }
    const e = src.entry(name);
    if (e.shape.length !== shape.length || e.shape.some((s, i) => s !== shape[i])) {
      problems.push(`${name} has shape ${JSON.stringify(e.shape)} (file ${e.file}), config implies ${JSON.stringify(shape)}`);
    }
  }
  return { problems, extra: [...have].filter((k) => !want.has(k)) };
}

export interface CheckOptions {
  /** Opens the error: `${what} weights in ${where} do not match its config`. */
  what: string;
  where: string;
  /** Stored dtypes accepted (default: any the reader can convert). */
  storedDtypes?: readonly string[];
  /** Turns the tensors the layout does not name into problem lines (default: none are). */
  extra?: (extra: string[]) => string[];
}

/** Throws one error listing every problem (first 12) when `src` does not fit `layout`. */
export function checkLayout(layout: Layout, src: Pick<WeightSource, 'keys' | 'entry'>, o: CheckOptions): void {
  const want = layoutShapes(layout);
  const { problems, extra } = tensorShapeProblems(want, src);
  if (o.storedDtypes) {
    const have = new Set(src.keys());
    for (const name of want.keys()) {
      const dtype = have.has(name) ? src.entry(name).dtype : undefined;
      if (dtype !== undefined && !o.storedDtypes.includes(dtype)) problems.push(`${name} has dtype ${dtype}; only ${o.storedDtypes.join('/')} weights are supported`);
    }
  }
  if (o.extra) problems.push(...o.extra(extra));
  if (problems.length > 0) {
    throw new Error(`${o.what} weights in ${o.where} do not match its config (${problems.length} problem(s)):\n  ${problems.slice(0, 12).join('\n  ')}`);
  }
}

/** The problem line for unexpected tensors (up to 5 named). */
export function unexpectedLine(extra: string[], what: string): string[] {
  return extra.length > 0 ? [`${extra.length} unexpected ${what}(s): ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', …' : ''}`] : [];
}
