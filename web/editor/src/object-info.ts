// Types for the `/object_info` payload (spec/comfyui-api.md §4) and the pure rules that turn an
// input spec into a widget plan. Kept free of DOM and litegraph so it can be unit-tested in Node.

export type InputOptions = {
  default?: unknown;
  min?: number;
  max?: number;
  step?: number;
  round?: number | false;
  multiline?: boolean;
  placeholder?: string;
  label_on?: string;
  label_off?: string;
  control_after_generate?: boolean;
  image_upload?: boolean;
  forceInput?: boolean;
  tooltip?: string;
  options?: unknown[];
  display?: string;
  [key: string]: unknown;
};

/** `[type, options?]`; `type` is a string or, for a legacy COMBO, the list of choices. */
export type InputSpec = [string | unknown[], InputOptions?] | [string | unknown[]];

export type NodeDef = {
  name: string;
  display_name?: string;
  description?: string;
  category?: string;
  python_module?: string;
  output_node?: boolean;
  input?: {
    required?: Record<string, InputSpec>;
    optional?: Record<string, InputSpec>;
    hidden?: Record<string, unknown>;
  };
  input_order?: { required?: string[]; optional?: string[] };
  output?: (string | unknown[])[];
  output_is_list?: boolean[];
  output_name?: string[];
  output_tooltips?: string[];
  deprecated?: boolean;
  experimental?: boolean;
};

export type ObjectInfo = Record<string, NodeDef>;

export const CONTROL_VALUES = ['fixed', 'increment', 'decrement', 'randomize'] as const;
export type ControlMode = (typeof CONTROL_VALUES)[number];

export type WidgetPlan =
  | { kind: 'INT' | 'FLOAT'; name: string; optional: boolean; value: number; min: number; max: number; step: number; round: number | null; tooltip?: string }
  | { kind: 'STRING'; name: string; optional: boolean; value: string; multiline: boolean; placeholder?: string; tooltip?: string }
  | { kind: 'BOOLEAN'; name: string; optional: boolean; value: boolean; labelOn?: string; labelOff?: string; tooltip?: string }
  | { kind: 'COMBO'; name: string; optional: boolean; value: string | number; values: (string | number)[]; tooltip?: string };

/** One input socket and, for widget-capable inputs, the widget behind it. */
export type InputPlan = {
  name: string;
  /** Slot type as litegraph sees it ("COMBO" for choice lists). */
  type: string;
  optional: boolean;
  widget: WidgetPlan | null;
  /** A control_after_generate widget follows this one (seeds, see shared/spec/comfyui-api.md §3.4 step 4). */
  control: boolean;
  /** An upload button follows this combo (`image_upload`, e.g. LoadImage). */
  upload: boolean;
  tooltip?: string;
};

const WIDGET_TYPES = new Set(['INT', 'FLOAT', 'STRING', 'BOOLEAN', 'COMBO']);

/** Inputs in definition order: `input_order` when present, then `required` before `optional`. */
export function orderedInputs(def: NodeDef): { name: string; spec: InputSpec; optional: boolean }[] {
  const out: { name: string; spec: InputSpec; optional: boolean }[] = [];
  for (const section of ['required', 'optional'] as const) {
    const specs = def.input?.[section] ?? {};
    const order = def.input_order?.[section] ?? Object.keys(specs);
    // input_order may omit keys from older servers; keep any leftovers in declaration order.
    const names = [...order.filter((n) => n in specs), ...Object.keys(specs).filter((n) => !order.includes(n))];
    for (const name of names) out.push({ name, spec: specs[name], optional: section === 'optional' });
  }
  return out;
}

function numberOr(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

/** Plans one input: its socket type and its widget (null for socket-only types). */
export function planInput(nodeName: string, name: string, spec: InputSpec, optional: boolean): InputPlan {
  if (!Array.isArray(spec) || spec.length < 1) {
    throw new Error(`object_info: node ${nodeName} input ${name} has an invalid spec ${JSON.stringify(spec)}`);
  }
  const head = spec[0];
  const opts: InputOptions = (spec[1] as InputOptions | undefined) ?? {};
  const tooltip = typeof opts.tooltip === 'string' ? opts.tooltip : undefined;
  let kind: string;
  let choices: (string | number)[] | null = null;
  if (Array.isArray(head)) {
    kind = 'COMBO';
    choices = head as (string | number)[];
  } else if (head === 'COMBO') {
    kind = 'COMBO';
    choices = Array.isArray(opts.options) ? (opts.options as (string | number)[]) : [];
  } else {
    kind = head;
  }
  const socketOnly = !WIDGET_TYPES.has(kind) || opts.forceInput === true;
  if (socketOnly) return { name, type: kind, optional, widget: null, control: false, upload: false, tooltip };

  let widget: WidgetPlan;
  switch (kind) {
    case 'INT':
    case 'FLOAT': {
      // Defaults as the ComfyUI frontend applies them when the spec leaves them out.
      const min = numberOr(opts.min, kind === 'INT' ? 0 : -Infinity);
      const max = numberOr(opts.max, kind === 'INT' ? 2048 : Infinity);
      const step = numberOr(opts.step, kind === 'INT' ? 1 : 0.1);
      const round = kind === 'INT' ? 1 : opts.round === false ? null : numberOr(opts.round, step);
      const value = clampNumber(numberOr(opts.default, Number.isFinite(min) ? min : 0), min, max);
      widget = { kind, name, optional, value, min, max, step, round, tooltip };
      break;
    }
    case 'STRING':
      widget = {
        kind: 'STRING',
        name,
        optional,
        tooltip,
        value: typeof opts.default === 'string' ? opts.default : '',
        multiline: opts.multiline === true,
        placeholder: typeof opts.placeholder === 'string' ? opts.placeholder : undefined,
      };
      break;
    case 'BOOLEAN':
      widget = {
        kind: 'BOOLEAN',
        name,
        optional,
        tooltip,
        value: opts.default === true,
        labelOn: typeof opts.label_on === 'string' ? opts.label_on : undefined,
        labelOff: typeof opts.label_off === 'string' ? opts.label_off : undefined,
      };
      break;
    default: {
      const values = choices ?? [];
      const value = values.includes(opts.default as string) ? (opts.default as string) : (values[0] ?? '');
      widget = { kind: 'COMBO', name, optional, value, values, tooltip };
    }
  }
  // Same rule as engine/convert.ts `hasExtraWidget`, so widgets_values line up with the converter.
  const control =
    (opts.control_after_generate === true && (kind === 'INT' || kind === 'COMBO')) || (kind === 'INT' && (name === 'seed' || name === 'noise_seed'));
  const upload = kind === 'COMBO' && opts.image_upload === true;
  return { name, type: kind, optional, widget, control, upload, tooltip };
}

export function planNode(def: NodeDef): InputPlan[] {
  return orderedInputs(def).map(({ name, spec, optional }) => planInput(def.name, name, spec, optional));
}

export function clampNumber(v: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, v));
}

/** Snaps a number to the widget's grid (offset by min, as the ComfyUI frontend does) and range. */
export function snapNumber(plan: { kind: 'INT' | 'FLOAT'; min: number; max: number; step: number; round: number | null }, v: number): number {
  if (!Number.isFinite(v)) return clampNumber(0, plan.min, plan.max);
  let out = v;
  if (plan.kind === 'INT') {
    const base = Number.isFinite(plan.min) ? plan.min : 0;
    const step = plan.step > 0 ? plan.step : 1;
    out = Math.round((v - base) / step) * step + base;
    out = Math.round(out);
  } else if (plan.round) {
    const r = plan.round;
    out = Math.round(v / r) * r;
    // Float noise such as 0.30000000000000004 after the division: cut at the round's precision.
    const decimals = Math.max(0, Math.ceil(-Math.log10(r)));
    out = Number(out.toFixed(decimals));
  }
  return clampNumber(out, plan.min, plan.max);
}

/** Decimal places to display for a numeric widget. */
export function precisionOf(plan: { kind: 'INT' | 'FLOAT'; step: number; round: number | null }): number {
  if (plan.kind === 'INT') return 0;
  const ref = plan.round ?? plan.step;
  if (!(ref > 0)) return 3;
  return Math.min(6, Math.max(0, Math.ceil(-Math.log10(ref) - 1e-9)));
}

/**
 * The value a control_after_generate widget gives the next run. `rand` is a source of
 * uniform [0,1) numbers so tests can pin it.
 */
export function nextControlledValue(
  mode: ControlMode,
  value: number,
  range: { min: number; max: number; step: number },
  rand: () => number = Math.random,
): number {
  const step = range.step > 0 ? range.step : 1;
  // Seeds can go up to 2^64-1; a JS number only holds integers exactly up to 2^53.
  const max = Math.min(range.max, Number.MAX_SAFE_INTEGER);
  const min = Math.max(range.min, Number.MIN_SAFE_INTEGER);
  switch (mode) {
    case 'fixed':
      return value;
    case 'increment':
      return Math.min(max, value + step);
    case 'decrement':
      return Math.max(min, value - step);
    case 'randomize': {
      const span = Math.floor((max - min) / step);
      return min + Math.floor(rand() * (span + 1)) * step;
    }
  }
}
