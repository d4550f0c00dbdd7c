// Model names used by ComfyUI workflows (ComfyUI_ExtraModels' Hugging Face ids such as
// "Efficient-Large-Model/Sana_1600M_1024px_MultiLing", NVlabs .pth file names, Gemma and DC-AE
// repo ids) -> entries of our models folder.
//
// Resolution order for a foreign name N of kind K (sana | text_encoders | vae):
//   1. models/model_map.json, a user file: { "N": "sana/Some_Local_Folder", ... };
//   2. N itself when it is already an entry ("sana/Sana_600M_1024px_diffusers");
//   3. the standard download locations for N (see `candidatesFor`), first one present wins.
// Sana-Sprint and SANA 1.5 ids map like Sana 1.0 ones ("Efficient-Large-Model/Sana_Sprint_0.6B_1024px"
// -> "sana/Sana_Sprint_0.6B_1024px_diffusers"). A name that names something we cannot run (4-bit Gemma)
// fails with a message saying so; a name that maps nowhere lists the folders that were tried.
import fs from 'node:fs';
import path from 'node:path';
import { listSanaCheckpoints, listTextEncoders, listVaes } from '../models_dir.ts';

export type ModelKind = 'sana' | 'text_encoders' | 'vae';

/** The Hugging Face ids ComfyUI_ExtraModels offers (shared/spec/comfyui-api.md §7.1, §7.2, §7.8). */
export const EXTRAMODELS_SANA_IDS = [
  'Efficient-Large-Model/Sana_Sprint_0.6B_1024px',
  'Efficient-Large-Model/Sana_Sprint_1.6B_1024px',
  'Efficient-Large-Model/SANA1.5_1.6B_1024px',
  'Efficient-Large-Model/SANA1.5_4.8B_1024px',
  'Efficient-Large-Model/Sana_1600M_1024px_MultiLing',
  'Efficient-Large-Model/Sana_1600M_512px_MultiLing',
  'Efficient-Large-Model/Sana_1600M_1024px_BF16',
  'Efficient-Large-Model/Sana_1600M_1024px',
  'Efficient-Large-Model/Sana_1600M_2Kpx_BF16',
  'Efficient-Large-Model/Sana_1600M_4Kpx_BF16',
  'Efficient-Large-Model/Sana_1600M_512px',
  'Efficient-Large-Model/Sana_600M_1024px',
  'Efficient-Large-Model/Sana_600M_512px',
] as const;
export const EXTRAMODELS_GEMMA_IDS = ['Efficient-Large-Model/gemma-2-2b-it', 'unsloth/gemma-2-2b-it-bnb-4bit', 'google/gemma-2-2b-it'] as const;
export const EXTRAMODELS_VAE_IDS = [
  'mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers',
  'mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers',
  'mit-han-lab/dc-ae-f32c32-sana-1.1V-diffusers',
] as const;

/** Why a known name cannot run here, or undefined when it can. */
export function unsupportedReason(kind: ModelKind, name: string): string | undefined {
  const base = name.split('/').pop() ?? name;
  if (kind === 'text_encoders' && /bnb|4bit/i.test(base)) return 'bitsandbytes 4-bit Gemma checkpoints are not supported; use gemma-2-2b-it in bf16/fp32';
  return undefined;
}

/** Standard locations for a foreign name, as paths relative to the models folder. */
export function candidatesFor(kind: ModelKind, name: string): string[] {
  const clean = name.replace(/\\/g, '/').replace(/\.(pth|safetensors|pt|bin)$/i, '');
  const parts = clean.split('/');
  const base = parts[parts.length - 1];
  const org = parts.length > 1 ? parts[parts.length - 2] : undefined;
  const out: string[] = [];
  const add = (p: string) => {
    if (!out.includes(p)) out.push(p);
  };
  if (kind === 'sana') {
    // The .pth repos and their diffusers twins: "Sana_1600M_1024px" -> "Sana_1600M_1024px_diffusers".
    const stem = base.replace(/_diffusers$/, '');
    for (const b of [`${stem}_diffusers`, stem]) {
      add(`sana/${b}`);
      add(`sana/${org ?? 'Efficient-Large-Model'}/${b}`);
    }
  } else {
    for (const b of [base]) {
      add(`${kind}/${b}`);
      if (org) add(`${kind}/${org}/${b}`);
    }
  }
  return out;
}

function readUserMap(base: string): Record<string, string> {
  const file = path.join(base, 'model_map.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json) || Object.values(json).some((v) => typeof v !== 'string')) {
    throw new Error(`${file} must be an object of "foreign model name": "entry in the models folder" strings`);
  }
  return json as Record<string, string>;
}

function present(kind: ModelKind, base: string): Set<string> {
  const list = kind === 'sana' ? listSanaCheckpoints(base) : kind === 'vae' ? listVaes(base) : listTextEncoders(base);
  return new Set(list.map((e) => e.name));
}

/**
 * Maps a foreign model name to an entry of our models folder, or throws a message naming `who`
 * (node and input) and what to do.
 */
export function mapModelName(kind: ModelKind, name: string, who: string, base: string): string {
  const have = present(kind, base);
  const user = readUserMap(base)[name];
  if (user !== undefined) {
    if (!have.has(user)) throw new Error(`${who}: models/model_map.json maps "${name}" to "${user}", which is not a usable ${kind} entry in ${base}`);
    return user;
  }
  if (have.has(name)) return name;
  const why = unsupportedReason(kind, name);
  if (why) throw new Error(`${who}: "${name}" cannot run here: ${why}`);
  const tried = candidatesFor(kind, name);
  const hit = tried.find((c) => have.has(c));
  if (hit) return hit;
  throw new Error(
    `${who}: "${name}" is not in the models folder ${base}; looked for ${tried.join(', ')}. ` +
      `Download it there (see README "Models"), or map the name to a local entry in ${path.join(base, 'model_map.json')}, ` +
      `e.g. {"${name}": "${[...have][0] ?? `${kind}/<folder>`}"}`,
  );
}

/** Combo choices for a compatibility loader: the foreign ids it knows, then the local entries. */
export function foreignChoices(kind: ModelKind, ids: readonly string[], base: string): string[] {
  const user = Object.keys(readUserMapSafe(base));
  return [...new Set([...ids, ...user, ...present(kind, base)])];
}

function readUserMapSafe(base: string): Record<string, string> {
  try {
    return readUserMap(base);
  } catch {
    // A broken map must not take /object_info down; running the loader reports it.
    return {};
  }
}
