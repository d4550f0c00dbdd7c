// The models folder: where loader nodes find weights, and what their combos list.
//
// Layout (ComfyUI-like; the folder names below `sana/`, `vae/` and `text_encoders/` are free, and
// one extra level such as an organisation folder is allowed):
//
//   models/
//     sana/<pipeline>/            a diffusers Sana pipeline, e.g. Sana_600M_1024px_diffusers/
//       model_index.json
//       transformer/  vae/  text_encoder/  tokenizer/  scheduler/
//     vae/<dc-ae repo>/           a diffusers AutoencoderDC, e.g. dc-ae-f32c32-sana-1.0-diffusers/
//       config.json  diffusion_pytorch_model.safetensors
//     text_encoders/<gemma repo>/ a transformers Gemma-2 with its tokenizer, e.g. gemma-2-2b-it/
//       config.json  model*.safetensors  tokenizer.json  tokenizer_config.json
//     model_map.json              optional: foreign model names -> entries here (see sana/model_names.ts)
//
// Combo values are paths relative to the models folder ("sana/Sana_600M_1024px_diffusers"), so
// a workflow names a model the same way on every machine. Every function takes the folder: the
// nodes read it from their services (ctx.services.folders.models, see services.ts), which the
// host fills from `--models-dir`, else `SANA_MODELS_DIR`, else `<repo>/models` (defaultModelsDir).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The models folder when the host names none: `SANA_MODELS_DIR`, else `<repo>/models`. */
export function defaultModelsDir(): string {
  const env = process.env.SANA_MODELS_DIR;
  return env ? path.resolve(env) : path.join(REPO_ROOT, 'models');
}

/** The three top-level folders, by what they hold. */
export const MODEL_FOLDERS = ['sana', 'vae', 'text_encoders'] as const;
export type ModelFolder = (typeof MODEL_FOLDERS)[number];

export interface SanaCheckpointDirs {
  /** The combo value, e.g. "sana/Sana_600M_1024px_diffusers". */
  name: string;
  root: string;
  transformer: string;
  /** `scheduler/scheduler_config.json` when the pipeline has one. */
  schedulerConfig?: string;
}

export interface TextEncoderDirs {
  name: string;
  root: string;
  /** Folder with the Gemma-2 config.json and safetensors. */
  textEncoder: string;
  /** Folder with tokenizer.json (+ tokenizer_config.json). */
  tokenizer: string;
}

export interface VaeDirs {
  name: string;
  root: string;
  vae: string;
}

const isFile = (p: string): boolean => {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
};

const isDir = (p: string): boolean => {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
};

function readClassName(configPath: string): string | undefined {
  try {
    const cfg = JSON.parse(fs.readFileSync(configPath, 'utf8')) as { _class_name?: unknown; architectures?: unknown };
    if (typeof cfg._class_name === 'string') return cfg._class_name;
    if (Array.isArray(cfg.architectures) && typeof cfg.architectures[0] === 'string') return cfg.architectures[0];
  } catch {
    // Unreadable or not JSON: not a model folder we recognise.
  }
  return undefined;
}

const hasSafetensors = (dir: string): boolean => {
  try {
    return fs.readdirSync(dir).some((f) => f.endsWith('.safetensors') || f.endsWith('.safetensors.index.json'));
  } catch {
    return false;
  }
};

/** Whether `dir` holds a diffusers component of class `cls` (config + weights). */
function isComponent(dir: string, cls: (name: string) => boolean): boolean {
  const cfg = path.join(dir, 'config.json');
  if (!isFile(cfg)) return false;
  const name = readClassName(cfg);
  return name !== undefined && cls(name) && hasSafetensors(dir);
}

const isSanaTransformer = (n: string): boolean => n === 'SanaTransformer2DModel';
const isDcae = (n: string): boolean => n === 'AutoencoderDC';
const isGemma2 = (n: string): boolean => n === 'Gemma2Model' || n === 'Gemma2ForCausalLM';
const hasTokenizer = (dir: string): boolean => isFile(path.join(dir, 'tokenizer.json'));

/** Candidate entry folders under `models/<folder>`: each child, and each grandchild (org/repo). */
function entries(folder: ModelFolder, base: string): Array<{ name: string; dir: string }> {
  const top = path.join(base, folder);
  const out: Array<{ name: string; dir: string }> = [];
  const children = (dir: string): string[] => {
    try {
      return fs
        .readdirSync(dir, { withFileTypes: true })
        .filter((d) => (d.isDirectory() || d.isSymbolicLink()) && !d.name.startsWith('.'))
        .map((d) => d.name)
        .sort();
    } catch {
      return [];
    }
  };
  for (const a of children(top)) {
    const da = path.join(top, a);
    if (!isDir(da)) continue;
    out.push({ name: `${folder}/${a}`, dir: da });
    for (const b of children(da)) {
      const db = path.join(da, b);
      if (isDir(db) && !['transformer', 'vae', 'text_encoder', 'tokenizer', 'scheduler'].includes(b)) {
        out.push({ name: `${folder}/${a}/${b}`, dir: db });
      }
    }
  }
  return out;
}

function sanaAt(name: string, dir: string): SanaCheckpointDirs | undefined {
  const sub = path.join(dir, 'transformer');
  const transformer = isComponent(sub, isSanaTransformer) ? sub : isComponent(dir, isSanaTransformer) ? dir : undefined;
  if (!transformer) return undefined;
  const sched = path.join(dir, 'scheduler', 'scheduler_config.json');
  return { name, root: dir, transformer, schedulerConfig: isFile(sched) ? sched : undefined };
}

function vaeAt(name: string, dir: string): VaeDirs | undefined {
  const sub = path.join(dir, 'vae');
  const vae = isComponent(sub, isDcae) ? sub : isComponent(dir, isDcae) ? dir : undefined;
  return vae ? { name, root: dir, vae } : undefined;
}

function textEncoderAt(name: string, dir: string): TextEncoderDirs | undefined {
  const te = path.join(dir, 'text_encoder');
  const tok = path.join(dir, 'tokenizer');
  if (isComponent(te, isGemma2) && hasTokenizer(tok)) return { name, root: dir, textEncoder: te, tokenizer: tok };
  if (isComponent(dir, isGemma2) && hasTokenizer(dir)) return { name, root: dir, textEncoder: dir, tokenizer: dir };
  return undefined;
}

/** Sana transformers present (pipelines under `sana/`). Evaluated at object_info time. */
export function listSanaCheckpoints(base: string): SanaCheckpointDirs[] {
  return entries('sana', base).flatMap(({ name, dir }) => sanaAt(name, dir) ?? []);
}

/** DC-AE decoders present: standalone ones under `vae/`, then the `vae/` of each Sana pipeline. */
export function listVaes(base: string): VaeDirs[] {
  return [...entries('vae', base), ...entries('sana', base)].flatMap(({ name, dir }) => vaeAt(name, dir) ?? []);
}

/** Gemma-2 text encoders with a tokenizer: `text_encoders/` entries, then Sana pipelines. */
export function listTextEncoders(base: string): TextEncoderDirs[] {
  return [...entries('text_encoders', base), ...entries('sana', base)].flatMap(({ name, dir }) => textEncoderAt(name, dir) ?? []);
}

function resolveEntry<T>(what: string, name: string, at: (name: string, dir: string) => T | undefined, base: string, expect: string): T {
  const norm = name.replace(/\\/g, '/').replace(/\/+$/, '');
  if (path.isAbsolute(norm) || norm.split('/').includes('..')) {
    throw new Error(`${what} "${name}": must be a path inside the models folder (${base}), like "${expect}"`);
  }
  const dir = path.join(base, norm);
  const found = isDir(dir) ? at(norm, dir) : undefined;
  if (!found) {
    throw new Error(
      `${what} "${name}" was not found in the models folder ${base} (expected ${path.join(base, norm)} with ${expect}); ` +
        `see the README section "Models" for the layout`,
    );
  }
  return found;
}

export function resolveSanaCheckpoint(name: string, base: string): SanaCheckpointDirs {
  return resolveEntry('Sana checkpoint', name, sanaAt, base, 'transformer/config.json and its safetensors');
}

export function resolveVae(name: string, base: string): VaeDirs {
  return resolveEntry('DC-AE', name, vaeAt, base, 'vae/config.json (or config.json) of an AutoencoderDC and its safetensors');
}

export function resolveTextEncoder(name: string, base: string): TextEncoderDirs {
  return resolveEntry('Gemma-2 text encoder', name, textEncoderAt, base, 'text_encoder/ + tokenizer/ (or config.json + tokenizer.json) of a Gemma-2');
}

/** Total size of the safetensors in a folder: the size hint for the model cache. */
export function weightBytes(dir: string): number {
  let n = 0;
  try {
    for (const f of fs.readdirSync(dir)) if (f.endsWith('.safetensors')) n += fs.statSync(path.join(dir, f)).size;
  } catch {
    return 0;
  }
  return n;
}

/** LoRA files: `models/loras/**.safetensors` (two folder levels below it), as paths relative to
 *  `loras/`, the way ComfyUI's LoRA loaders list them. */
export function listLoras(base: string): string[] {
  const top = path.join(base, 'loras');
  const out: string[] = [];
  const walk = (dir: string, rel: string, depth: number): void => {
    let items: fs.Dirent[];
    try {
      items = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const d of items.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (d.name.startsWith('.')) continue;
      const p = path.join(dir, d.name);
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.name.endsWith('.safetensors') && isFile(p)) out.push(r);
      else if (depth < 2 && isDir(p)) walk(p, r, depth + 1);
    }
  };
  walk(top, '', 0);
  return out;
}

/** The file behind a LoRA combo value (`sana_tiny_lora.safetensors`, `org/x.safetensors`). */
export function resolveLora(name: string, base: string): string {
  const norm = name.replace(/\\/g, '/');
  const top = path.join(base, 'loras');
  if (path.isAbsolute(norm) || norm.split('/').includes('..')) {
    throw new Error(`LoRA "${name}": must be a path inside ${top}, like "my_lora.safetensors"`);
  }
  const file = path.join(top, norm);
  if (!norm.endsWith('.safetensors') || !isFile(file)) {
    throw new Error(`LoRA "${name}" was not found: expected the file ${file} (a .safetensors under models/loras/)`);
  }
  return file;
}
