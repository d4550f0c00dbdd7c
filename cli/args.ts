// Command-line parsing for `sana-graph`: a subcommand, positional arguments, and --flags with
// declared kinds. Unknown flags and missing values are errors that name the flag.

export type FlagKind = 'string' | 'number' | 'boolean' | 'optional-string' | 'list';

export interface FlagSpec {
  kind: FlagKind;
  /** For optional-string: the value when the flag is given without one. */
  implicit?: string;
  choices?: readonly string[];
}

export class UsageError extends Error {
  override name = 'UsageError';
}

/** A problem with the workflow file or --set (exit code 2, no usage text). */
export class WorkflowInputError extends Error {
  override name = 'WorkflowInputError';
}

export interface Parsed {
  positional: string[];
  flags: Record<string, string | number | boolean | string[]>;
}

/** Parses `--name value`, `--name=value`, boolean `--name`, and repeatable list flags. */
export function parseArgs(argv: readonly string[], specs: Record<string, FlagSpec>): Parsed {
  const out: Parsed = { positional: [], flags: {} };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      out.positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--') || arg === '--') {
      out.positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const spec = specs[name];
    if (!spec) throw new UsageError(`unknown option --${name}`);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const next = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`option --${name} needs a value`);
      i++;
      return v;
    };
    let value: string | number | boolean | string[];
    switch (spec.kind) {
      case 'boolean':
        if (inline !== undefined && !['true', 'false', '1', '0'].includes(inline)) throw new UsageError(`option --${name} is a switch (true/false)`);
        value = inline === undefined ? true : inline === 'true' || inline === '1';
        break;
      case 'number': {
        const raw = next();
        value = Number(raw);
        if (raw.trim() === '' || !Number.isFinite(value)) throw new UsageError(`option --${name} needs a number, got ${JSON.stringify(raw)}`);
        break;
      }
      case 'optional-string': {
        const v = argv[i + 1];
        if (inline !== undefined) value = inline;
        else if (v !== undefined && !v.startsWith('--')) {
          value = v;
          i++;
        } else value = spec.implicit ?? '';
        break;
      }
      case 'list': {
        const prev = out.flags[name];
        value = [...(Array.isArray(prev) ? prev : []), next()];
        break;
      }
      default:
        value = next();
    }
    if (spec.choices && typeof value === 'string' && !spec.choices.includes(value)) {
      throw new UsageError(`option --${name} must be one of ${spec.choices.join(', ')}; got ${JSON.stringify(value)}`);
    }
    out.flags[name] = value;
  }
  return out;
}

/**
 * `--set <node>.<input>=<value>`: the node is an id or a title (`_meta.title`); the value is
 * JSON when it parses (numbers, booleans, quoted strings, links like ["4",0]), else a string.
 */
export function parseSet(expr: string): { node: string; input: string; value: unknown } {
  const eq = expr.indexOf('=');
  const dot = eq < 0 ? -1 : expr.lastIndexOf('.', eq);
  if (eq < 0 || dot <= 0 || dot === eq - 1) throw new UsageError(`--set expects <node>.<input>=<value>, got ${JSON.stringify(expr)}`);
  const raw = expr.slice(eq + 1);
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  return { node: expr.slice(0, dot), input: expr.slice(dot + 1, eq), value };
}
