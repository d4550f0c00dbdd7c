// Shared loading helpers for the model folders (transformers / diffusers layouts): config.json
// reading (lenient JSON), choosing the safetensors file(s) of a component (dtype variants such as
// `model.bf16.safetensors`, sharded checkpoints with their index), key-prefix handling
// (`model.` from Gemma2ForCausalLM checkpoints, `text_encoder.` and the like), the compute dtype
// choice, and opening a folder's checkpoint (the addon is passed in, or imported on first use,
// so this file stays importable without it).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Backend, DType, NativeModule, SafetensorsCheckpoint, SafetensorsEntry, Tensor } from '../../native/api.ts';
import { loadNative } from '../../native/lazy.ts';

/** JSON.parse that also accepts the bare `Infinity`, `-Infinity` and `NaN` Python's json writes. */
export function parseLenientJson(text: string, what: string): unknown {
  // Non-standard tokens are only replaced outside strings: walk the text once.
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i] ?? '';
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') { inString = true; out += c; continue; }
    if (text.startsWith('-Infinity', i)) { out += '"\\u0000-Infinity"'; i += 8; continue; }
    if (text.startsWith('Infinity', i)) { out += '"\\u0000Infinity"'; i += 7; continue; }
    if (text.startsWith('NaN', i)) { out += '"\\u0000NaN"'; i += 2; continue; }
    out += c;
  }
  try {
    // The markers are written as \u0000 escapes; a NUL-led string is not a real config value.
    return JSON.parse(out, (_k, v: unknown) => {
      if (v === '\u0000-Infinity') return -Infinity;
      if (v === '\u0000Infinity') return Infinity;
      if (v === '\u0000NaN') return NaN;
      return v;
    });
  } catch (err) {
    throw new Error(`${what}: invalid JSON (${(err as Error).message})`);
  }
}

/** Reads `<dir>/config.json` (or the given file) as a plain object. */
export function readJsonConfig(pathOrDir: string, name = 'config.json'): Record<string, unknown> {
  const file = existsSync(pathOrDir) && statSync(pathOrDir).isDirectory() ? join(pathOrDir, name) : pathOrDir;
  if (!existsSync(file)) throw new Error(`config not found: ${file}`);
  const v = parseLenientJson(readFileSync(file, 'utf8'), file);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${file}: expected a JSON object`);
  return v as Record<string, unknown>;
}

/** Variant order tried when none is requested: full precision first, then the half variants. */
const VARIANT_PREFERENCE = ['', 'bf16', 'fp16'];

/**
 * Picks the safetensors of a component folder: `<stem>[.<variant>].safetensors`, or the
 * sharded `<stem>[.<variant>]-0000k-of-0000n.safetensors` set through its
 * `<stem>.safetensors.index[.<variant>].json`. `stem` is `model` (transformers) or
 * `diffusion_pytorch_model` (diffusers); both are tried when not given. The returned path is a
 * single file or an index json, either of which `openSafetensors` accepts.
 */
export function pickSafetensors(dir: string, opts: { variant?: string; stems?: string[] } = {}): string {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`model folder not found: ${dir}`);
  const files = new Set(readdirSync(dir));
  const stems = opts.stems ?? ['model', 'diffusion_pytorch_model'];
  const variants = opts.variant !== undefined ? [opts.variant] : VARIANT_PREFERENCE;
  for (const variant of variants) {
    for (const stem of stems) {
      const v = variant ? `.${variant}` : '';
      const single = `${stem}${v}.safetensors`;
      if (files.has(single)) return join(dir, single);
      const index = `${stem}.safetensors.index${v}.json`;
      if (files.has(index)) return join(dir, index);
      // Some exports name the index after the variant file instead.
      const index2 = `${stem}${v}.safetensors.index.json`;
      if (files.has(index2)) return join(dir, index2);
    }
  }
  // Last resort: exactly one safetensors file of any name.
  const any = [...files].filter((f) => f.endsWith('.safetensors'));
  if (any.length === 1 && opts.variant === undefined) return join(dir, any[0]);
  const want = opts.variant !== undefined ? ` (variant ${opts.variant || 'none'})` : '';
  throw new Error(`no safetensors weights${want} found in ${dir} (files: ${[...files].sort().join(', ') || 'none'})`);
}

/**
 * A checkpoint view with key prefixes resolved: `get('layers.0.mlp.up_proj.weight')` finds
 * that key, or the same key under one of `prefixes` (e.g. `model.`).
 */
export class PrefixedCheckpoint {
  readonly prefix: string;

  constructor(readonly ckpt: SafetensorsCheckpoint, probeKey: string, prefixes: readonly string[] = ['', 'model.']) {
    const found = prefixes.find((p) => ckpt.has(p + probeKey));
    if (found === undefined) {
      const sample = ckpt.keys().slice(0, 5).join(', ');
      throw new Error(`checkpoint ${ckpt.files.map((f) => basename(f)).join(', ')}: no ${probeKey} under any prefix of [${prefixes.map((p) => JSON.stringify(p)).join(', ')}] (first keys: ${sample})`);
    }
    this.prefix = found;
  }

  /** The names under the prefix, without it. */
  keys(): string[] {
    return this.ckpt.keys().filter((k) => k.startsWith(this.prefix)).map((k) => k.slice(this.prefix.length));
  }

  has(key: string): boolean {
    return this.ckpt.has(this.prefix + key);
  }

  entry(key: string): SafetensorsEntry {
    return this.ckpt.entry(this.fullKey(key));
  }

  shape(key: string): number[] {
    return this.ckpt.entry(this.fullKey(key)).shape;
  }

  storedDtype(key: string): string {
    return this.ckpt.entry(this.fullKey(key)).dtype;
  }

  load(key: string, backend: Backend, dtype?: DType, expectShape?: readonly number[]): Tensor {
    const full = this.fullKey(key);
    if (expectShape) {
      const got = this.ckpt.entry(full).shape;
      if (got.length !== expectShape.length || got.some((d, i) => d !== expectShape[i])) {
        throw new Error(`weight ${full}: shape [${got.join(', ')}] but the config implies [${expectShape.join(', ')}]`);
      }
    }
    return this.ckpt.load(full, backend, dtype);
  }

  private fullKey(key: string): string {
    const full = this.prefix + key;
    if (!this.ckpt.has(full)) throw new Error(`checkpoint ${this.ckpt.files.map((f) => basename(f)).join(', ')}: missing weight ${full}`);
    return full;
  }
}

/** Opens the component folder's weights (see `pickSafetensors`) with prefixes resolved. */
export function openComponent(
  native: Pick<NativeModule, 'openSafetensors'>,
  dir: string,
  probeKey: string,
  opts: { variant?: string; stems?: string[]; prefixes?: string[] } = {},
): PrefixedCheckpoint {
  const path = pickSafetensors(dir, opts);
  const ckpt = native.openSafetensors(path);
  try {
    return new PrefixedCheckpoint(ckpt, probeKey, opts.prefixes);
  } catch (err) {
    ckpt.close();
    throw err;
  }
}

export type ComputeDType = 'f32' | 'bf16' | 'f16';

/**
 * The dtype a model computes in: the request when given, else bf16 where the backend has a
 * native bf16 matmul (AMX / tensor cores) and f32 otherwise. `allowF16` is false for Gemma-2
 * and DC-AE, which overflow in fp16 (shared/spec/sana.md §8).
 */
export function chooseComputeDType(backend: Backend, requested?: ComputeDType | 'auto', allowF16 = true): ComputeDType {
  if (requested && requested !== 'auto') {
    if (requested === 'f16' && !allowF16) throw new Error('compute dtype f16 is not supported for this model (activations overflow); use bf16 or f32');
    return requested;
  }
  return backend.supportsOp('linear', 'bf16') ? 'bf16' : 'f32';
}

/** Bytes a weight set takes at `dtype`. */
export function weightBytes(numel: number, dtype: DType): number {
  return numel * (dtype === 'f32' || dtype === 'i32' ? 4 : dtype === 'i64' ? 8 : 2);
}

/** How a model is loaded from its folder: the addon (default: imported on first use) and the
 *  weight variant (`bf16`, `fp16`; default: full precision first). */
export interface FolderLoadOptions {
  native?: Pick<NativeModule, 'openSafetensors'>;
  variant?: string;
}

/** Opens the component folder's checkpoint (see `pickSafetensors`), hands it to `use` and closes
 *  it afterwards (loaded tensors do not need it). */
export async function withCheckpoint<M>(dir: string, opts: FolderLoadOptions, stems: string[], use: (ckpt: SafetensorsCheckpoint) => M): Promise<M> {
  const native = opts.native ?? (await loadNative());
  const ckpt = native.openSafetensors(pickSafetensors(dir, { variant: opts.variant, stems }));
  try {
    return use(ckpt);
  } finally {
    ckpt.close();
  }
}
