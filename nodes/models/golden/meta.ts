// Typed access to what a golden fixture says about the reference call that produced it: a
// safetensors `__metadata__` (all strings) and, for the pipeline, pipeline.json beside it. The
// runner takes every setting of a stage from here, so a fixture made with other settings passes
// or fails on its numbers; a setting that neither source states is an error naming the file(s)
// and key, never a silent default.
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { parseLenientJson } from '../weights.ts';

type Source = { file: string; values: Record<string, unknown> };

export class FixtureMeta {
  private readonly sources: Source[];

  /** Several sources: a key may be in any of them; where two state it, they must agree. */
  constructor(...sources: Source[]) {
    this.sources = sources;
  }

  static ofFixture(fx: { path: string; metadata: Record<string, string> }): FixtureMeta {
    return new FixtureMeta({ file: fx.path, values: fx.metadata });
  }

  /** Adds a JSON file (pipeline.json) as a further source when it exists. */
  withJsonFile(file: string): FixtureMeta {
    if (!existsSync(file)) return this;
    const raw = parseLenientJson(readFileSync(file, 'utf8'), file);
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: expected a JSON object`);
    return new FixtureMeta(...this.sources, { file, values: raw as Record<string, unknown> });
  }

  get files(): string { return this.sources.map((s) => s.file).join(' / '); }

  has(key: string): boolean {
    return this.sources.some((s) => s.values[key] !== undefined);
  }

  /** The value of `key` from every source that has it, each parsed by `parse`; sources must agree. */
  private pick<T>(key: string, what: string, parse: (v: unknown, where: string) => T): T {
    let found: { v: T; file: string } | undefined;
    for (const s of this.sources) {
      if (s.values[key] === undefined) continue;
      const where = `${s.file}: ${key}`;
      const v = parse(s.values[key], where);
      if (found && JSON.stringify(found.v) !== JSON.stringify(v)) {
        throw new Error(`${found.file} and ${s.file} disagree on ${key}: ${JSON.stringify(found.v)} vs ${JSON.stringify(v)}`);
      }
      found ??= { v, file: s.file };
    }
    if (!found) throw new Error(`${this.files}: no "${key}" in the fixture's metadata (${what}); the runner does not assume a value`);
    return found.v;
  }

  str(key: string, what: string): string {
    return this.pick(key, what, (v, where) => {
      if (typeof v !== 'string') throw new Error(`${where} must be a string, got ${JSON.stringify(v)}`);
      return v;
    });
  }

  num(key: string, what: string): number {
    return this.pick(key, what, (v, where) => {
      const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
      if (!Number.isFinite(n)) throw new Error(`${where} must be a number, got ${JSON.stringify(v)}`);
      return n;
    });
  }

  int(key: string, what: string): number {
    const n = this.num(key, what);
    if (!Number.isSafeInteger(n)) throw new Error(`${this.files}: ${key} must be an integer, got ${n}`);
    return n;
  }

  /** A list of strings: a JSON array (metadata stores it as a JSON string). `None`/null/empty → []. */
  strList(key: string, what: string): string[] {
    return this.pick(key, what, (v, where) => {
      let x = v;
      if (typeof x === 'string') {
        const s = x.trim();
        if (s === '' || s === 'None' || s === 'null') return [];
        try { x = JSON.parse(s); } catch { throw new Error(`${where} is not a JSON list: ${JSON.stringify(v)}`); }
      }
      if (x === null) return [];
      if (!Array.isArray(x) || x.some((e) => typeof e !== 'string')) throw new Error(`${where} must be a list of strings, got ${JSON.stringify(v)}`);
      return x as string[];
    });
  }

  /** A JSON object value (pipeline.json's `models`). */
  obj(key: string, what: string): Record<string, unknown> {
    return this.pick(key, what, (v, where) => {
      const x = typeof v === 'string' ? parseLenientJson(v, where) : v;
      if (x === null || typeof x !== 'object' || Array.isArray(x)) throw new Error(`${where} must be a JSON object`);
      return x as Record<string, unknown>;
    });
  }
}

/** Short name for messages: `pipeline/io.safetensors`. */
export const shortName = (file: string): string => `${basename(dirname(file))}/${basename(file)}`;

/**
 * Which self-attention blocks diffusers' PAGMixin._set_pag_attn_processor hooks for
 * `pag_applied_layers`: each entry is a regular expression searched in the module names
 * (`transformer_blocks.{i}.attn1` for Sana's self-attention); an entry that matches nothing is an error there, so it is here too. Note that the search
 * is unanchored, so "transformer_blocks.1" also hooks blocks 10–19 of a deep model, as in diffusers.
 */
export function pagLayerIndices(patterns: readonly string[], numLayers: number, where: string): number[] {
  const hit = new Set<number>();
  for (const p of patterns) {
    let re: RegExp;
    try { re = new RegExp(p); } catch (e) { throw new Error(`${where}: PAG layer pattern ${JSON.stringify(p)} is not a regular expression (${(e as Error).message})`); }
    let n = 0;
    // diffusers' fake-integral rule only drops modules whose names end in a number; Sana's
    // self-attention names end in "attn1", so it never applies here.
    for (let i = 0; i < numLayers; i++) {
      if (re.test(`transformer_blocks.${i}.attn1`)) { hit.add(i); n++; }
    }
    if (n === 0) throw new Error(`${where}: PAG layer ${JSON.stringify(p)} matches no self-attention of the ${numLayers}-block transformer`);
  }
  return [...hit].sort((a, b) => a - b);
}

/** Scheduler class of a diffusers scheduler config → the sampler that implements it. */
export function samplerKindOf(raw: Record<string, unknown>, where: string): 'dpmpp_2m' | 'flow_euler' {
  const cls = raw._class_name;
  if (cls === 'DPMSolverMultistepScheduler') return 'dpmpp_2m';
  if (cls === 'FlowMatchEulerDiscreteScheduler') return 'flow_euler';
  if (cls === undefined) throw new Error(`${where}: no "_class_name"; the runner needs it to pick the sampler`);
  throw new Error(`${where}: _class_name ${JSON.stringify(cls)} has no sampler here (DPMSolverMultistepScheduler or FlowMatchEulerDiscreteScheduler)`);
}
