// LoRA for the Sana transformer: reading diffusers/PEFT and kohya-style LoRA safetensors, matching
// them against the model's own tensor list, and merging W' = W + Σ strength·scale·(B·A) in f32 on
// the backend (spec: "The Sana family beyond 1.0", LoRA).
//
// Accepted key forms (one file may mix prefixes, never two names for one module):
//   diffusers / PEFT   [transformer. | base_model.model. | diffusion_model.]<module>.lora_A[.<adapter>].weight
//                      ... .lora_B[.<adapter>].weight   (also .lora_down / .lora_up), optional <module>.alpha
//   kohya (ComfyUI)    lora_unet_<module with . → _>.lora_down.weight / .lora_up.weight / .alpha
//                      (also lora_transformer_…); the underscore name is matched against the model's
//                      module names, and a name two modules share is refused.
//
// The scale of a module is alpha / rank (rank = rows of its A; rsLoRA: alpha / √rank). alpha comes
// from, in order: the module's `.alpha` tensor; PEFT's `alpha_pattern` / `lora_alpha` in the
// file's `lora_adapter_metadata` (diffusers' save_lora_weights, keys optionally prefixed
// `transformer.`) or in an adapter_config.json beside the file; kohya's `ss_network_alpha`
// metadata; else alpha = rank (scale 1), which is what diffusers does for Sana LoRAs without
// metadata (no network_alphas are passed for Sana).
//
// Targets: any `<module>.weight` of rank ≥ 2 (linears and convolutions): A is (r, …W.shape[1:]),
// B is (W.shape[0], r[, 1, 1]), so ΔW = B·A reshaped to W's shape. That covers attn1/attn2
// to_q/to_k/to_v/to_out.0, ff.conv_inverted/conv_point (1×1 convs) and conv_depth, caption and
// time projections, proj_out and the patch embedding.
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Backend, DType, NativeModule, SafetensorsCheckpoint, SafetensorsEntry, Tensor } from '../../native/api.ts';
import type { SanaTransformerConfig } from './sana_dit/config.ts';
import { expectedTransformerTensors } from './sana_dit/layout.ts';
import type { SanaTransformer } from './sana_dit/model.ts';
import type { WeightSource } from './weight_set.ts';
import { pickSafetensors, readJsonConfig } from './weights.ts';

/** What the parser reads from a LoRA file (a SafetensorsCheckpoint fits). */
export type LoraSource = Pick<SafetensorsCheckpoint, 'keys' | 'entry' | 'load'> & { readonly metadata?: Record<string, string> };

/** One low-rank update of one model tensor. */
export interface LoraTerm {
  /** The model tensor it updates, e.g. `transformer_blocks.0.attn1.to_q.weight`. */
  target: string;
  /** Keys in the LoRA file: down = A (r, in…), up = B (out, r…). */
  down: string;
  up: string;
  rank: number;
  alpha: number;
  /** alpha / rank (rsLoRA: alpha / √rank); the user strength multiplies it. */
  scale: number;
}

export interface LoraPlan {
  terms: LoraTerm[];
  /** 'diffusers' / 'kohya' / 'mixed': what the keys looked like (for messages and tests). */
  format: 'diffusers' | 'kohya' | 'mixed';
}

/** A parsed LoRA with its file and strength, ready to merge. */
export interface LoraApplication {
  plan: LoraPlan;
  src: LoraSource;
  strength: number;
  /** For messages: the LoRA's name. */
  name: string;
}

const PREFIXES = ['base_model.model.', 'transformer.', 'diffusion_model.', 'model.diffusion_model.'];
const KOHYA_PREFIXES = ['lora_unet_', 'lora_transformer_'];
// .lora_A.weight, .lora_A.default.weight (PEFT adapter names), .lora_down.weight
const PAIR_RE = /^(.+)\.(lora_A|lora_B|lora_down|lora_up)(?:\.([A-Za-z0-9_-]+))?\.weight$/;

const shapeStr = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** The model tensors a LoRA may target: every `.weight` of rank ≥ 2. */
export function loraTargets(modelShapes: ReadonlyMap<string, readonly number[]>): Map<string, readonly number[]> {
  const out = new Map<string, readonly number[]>();
  for (const [name, shape] of modelShapes) if (name.endsWith('.weight') && shape.length >= 2) out.set(name.slice(0, -'.weight'.length), shape);
  return out;
}

/** kohya module name (dots → underscores) → model module, or null where two modules share it. */
export function kohyaModuleMap(modules: Iterable<string>): Map<string, string | null> {
  const m = new Map<string, string | null>();
  for (const mod of modules) {
    const k = mod.replace(/\./g, '_');
    m.set(k, m.has(k) ? null : mod);
  }
  return m;
}

interface AdapterConfig {
  r?: number;
  lora_alpha?: number;
  alpha_pattern?: Record<string, number>;
  rank_pattern?: Record<string, number>;
  use_rslora?: boolean;
}

/** PEFT's LoraConfig fields from diffusers' `lora_adapter_metadata` (keys possibly `transformer.`-prefixed). */
export function adapterConfigFromMetadata(meta: Record<string, string> | undefined, where: string): AdapterConfig | undefined {
  const raw = meta?.lora_adapter_metadata;
  if (raw === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (e) {
    throw new Error(`${where}: metadata lora_adapter_metadata is not JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`${where}: metadata lora_adapter_metadata is not a JSON object`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    // A pipeline save prefixes each component's config; only the transformer's applies here.
    if (k.includes('.') && !k.startsWith('transformer.')) continue;
    out[k.replace(/^transformer\./, '')] = v;
  }
  return out as AdapterConfig;
}

/** PEFT pattern lookup: a pattern matches a module name exactly or as a dotted suffix; a leading
 *  `^` anchors it to the start. The longest matching pattern wins (most specific). */
function patternValue(patterns: Record<string, number> | undefined, module: string): number | undefined {
  if (!patterns) return undefined;
  let best: { len: number; v: number } | undefined;
  for (const [pat, v] of Object.entries(patterns)) {
    const anchored = pat.startsWith('^');
    const p = anchored ? pat.slice(1) : pat;
    const ok = anchored ? module === p : module === p || module.endsWith(`.${p}`);
    if (ok && typeof v === 'number' && (!best || p.length > best.len)) best = { len: p.length, v };
  }
  return best?.v;
}

export interface ParseOptions {
  /** adapter_config.json beside the file (raw PEFT adapters), when there is one. */
  adapterConfig?: Record<string, unknown>;
  /** Backend to read `.alpha` scalars with. */
  backend: Backend;
  /** Prefix for messages, e.g. `SanaLoraLoader input lora_name: my.safetensors`. */
  where: string;
}

/**
 * Matches every key of a LoRA file against the model tensors (`modelShapes`: name → shape, as
 * `expectedTransformerTensors` gives them). Refuses, naming the first key (in the file's key
 * order) that does not fit: an unknown form, an unknown or ambiguous target, a shape that does
 * not fit the target (both shapes named), a rank that differs between A and B, or a half pair.
 */
export function parseLora(src: LoraSource, modelShapes: ReadonlyMap<string, readonly number[]>, opts: ParseOptions): LoraPlan {
  const { where } = opts;
  const targets = loraTargets(modelShapes);
  const kohya = kohyaModuleMap(targets.keys());
  const meta = src.metadata ?? {};
  const cfg: AdapterConfig = { ...(opts.adapterConfig as AdapterConfig | undefined), ...adapterConfigFromMetadata(meta, where) };
  const kohyaAlpha = meta.ss_network_alpha !== undefined ? Number(meta.ss_network_alpha) : undefined;

  type Pair = { module: string; down?: SafetensorsEntry; up?: SafetensorsEntry; alphaKey?: string; firstKey: string };
  const pairs = new Map<string, Pair>();
  const forms = new Set<'diffusers' | 'kohya'>();
  const fail = (key: string, why: string): never => {
    throw new Error(`${where}: LoRA key "${key}" ${why}`);
  };

  /** `<prefix><module>` → the model module it names. */
  const resolveModule = (key: string, stem: string): string => {
    for (const kp of KOHYA_PREFIXES) {
      if (!stem.startsWith(kp)) continue;
      const k = stem.slice(kp.length);
      const mod = kohya.get(k);
      if (mod === null) fail(key, `is ambiguous: "${k}" matches more than one tensor of this model once dots become underscores`);
      if (mod === undefined) fail(key, `targets "${k}", which is not a weight of this model (kohya name; e.g. lora_unet_transformer_blocks_0_attn1_to_q)`);
      forms.add('kohya');
      return mod!;
    }
    let mod = stem;
    for (let again = true; again;) {
      again = false;
      for (const p of PREFIXES) if (mod.startsWith(p)) { mod = mod.slice(p.length); again = true; }
    }
    if (!targets.has(mod)) {
      const known = modelShapes.has(`${mod}.weight`) ? ` (${mod}.weight has rank 1: norms and tables take no LoRA)` : '';
      fail(key, `targets "${mod}", which is not a weight of this model${known}`);
    }
    forms.add('diffusers');
    return mod;
  };

  for (const key of src.keys()) {
    const e = src.entry(key);
    if (/dora_scale|lora_magnitude_vector/.test(key)) fail(key, 'is a DoRA magnitude: DoRA LoRAs are not supported');
    if (/\.lora_(B|up)(\.[A-Za-z0-9_-]+)?\.bias$/.test(key)) fail(key, 'is a LoRA bias (PEFT lora_bias): not supported');
    let module: string;
    let part: 'down' | 'up' | 'alpha';
    const m = PAIR_RE.exec(key);
    if (m) {
      module = resolveModule(key, m[1]!);
      part = m[2] === 'lora_A' || m[2] === 'lora_down' ? 'down' : 'up';
    } else if (key.endsWith('.alpha')) {
      module = resolveModule(key, key.slice(0, -'.alpha'.length));
      part = 'alpha';
    } else {
      fail(key, 'is not a LoRA tensor (expected <module>.lora_A.weight / .lora_B.weight, .lora_down.weight / .lora_up.weight or .alpha)');
    }
    const W = targets.get(module!)!;
    const p = pairs.get(module!) ?? { module: module!, firstKey: key };
    pairs.set(module!, p);
    if (part! === 'alpha') {
      if (e.shape.reduce((a, b) => a * b, 1) !== 1) fail(key, `has shape ${shapeStr(e.shape)}; an alpha is one number`);
      if (p.alphaKey) fail(key, `repeats the alpha of ${module!} (already given by "${p.alphaKey}")`);
      p.alphaKey = key;
      continue;
    }
    if (!['F32', 'F16', 'BF16'].includes(e.dtype)) fail(key, `has dtype ${e.dtype}; only F32/F16/BF16 LoRA weights are supported`);
    const s = e.shape;
    const targetDesc = `${module!}.weight ${shapeStr(W)}`;
    if (part! === 'down') {
      if (p.down) fail(key, `repeats the down (A) matrix of ${module!} (already given by "${p.down.name}")`);
      // A: (r, …W.shape[1:])
      if (s.length !== W.length || s.slice(1).some((d, i) => d !== W[i + 1]) || !(s[0]! > 0)) {
        fail(key, `has shape ${shapeStr(s)}, which does not fit ${targetDesc} (lora_A must be [r, ${W.slice(1).join(', ')}])`);
      }
      if (p.up && p.up.shape[1] !== s[0]) fail(key, `has rank ${s[0]} but its up (B) matrix "${p.up.name}" has rank ${p.up.shape[1]}`);
      p.down = e;
    } else {
      if (p.up) fail(key, `repeats the up (B) matrix of ${module!} (already given by "${p.up.name}")`);
      // B: (out, r) or (out, r, 1, 1) for convolutions
      const okRank = s.length === 2 || s.length === W.length;
      if (!okRank || s[0] !== W[0] || !(s[1]! > 0) || s.slice(2).some((d) => d !== 1)) {
        const want = W.length === 2 ? `[${W[0]}, r]` : `[${W[0]}, r${', 1'.repeat(W.length - 2)}]`;
        fail(key, `has shape ${shapeStr(s)}, which does not fit ${targetDesc} (lora_B must be ${want})`);
      }
      if (p.down && p.down.shape[0] !== s[1]) fail(key, `has rank ${s[1]} but its down (A) matrix "${p.down.name}" has rank ${p.down.shape[0]}`);
      p.up = e;
    }
  }

  const terms: LoraTerm[] = [];
  for (const p of pairs.values()) {
    if (!p.down || !p.up) {
      if (!p.down && !p.up) fail(p.firstKey, `gives an alpha for ${p.module} but no lora_A/lora_B (down/up) pair`);
      fail(p.firstKey, `has no ${p.down ? 'up (lora_B)' : 'down (lora_A)'} partner for ${p.module}`);
    }
    const rank = p.down!.shape[0]!;
    let alpha: number | undefined;
    if (p.alphaKey) {
      const t = src.load(p.alphaKey, opts.backend, 'f32');
      try { alpha = t.toFloat32()[0]; } finally { t.dispose(); }
    }
    alpha ??= patternValue(cfg.alpha_pattern, p.module) ?? cfg.lora_alpha ?? kohyaAlpha ?? rank;
    if (!(typeof alpha === 'number' && Number.isFinite(alpha))) fail(p.alphaKey ?? p.firstKey, `has alpha ${alpha}, not a finite number`);
    const scale = cfg.use_rslora ? alpha! / Math.sqrt(rank) : alpha! / rank;
    terms.push({ target: `${p.module}.weight`, down: p.down!.name, up: p.up!.name, rank, alpha: alpha!, scale });
  }
  if (terms.length === 0) throw new Error(`${where}: the file holds no LoRA tensors`);
  const format = forms.size === 2 ? 'mixed' : forms.has('kohya') ? 'kohya' : 'diffusers';
  return { terms, format };
}

/**
 * The weights of `base` with the LoRAs merged, as a WeightSource: tensors no LoRA touches load
 * from `base` unchanged; a touched one is W' = W + Σ strength·scale·(B·A), computed in f32 on
 * `backend` from the checkpoint's stored W (never from a model's packed or released copy) and
 * cast to the requested dtype. `changed` lists the touched tensors.
 */
export function mergedWeights(base: WeightSource, loras: readonly LoraApplication[]): { source: WeightSource; changed: Set<string> } {
  const byTarget = new Map<string, Array<{ term: LoraTerm; app: LoraApplication }>>();
  for (const app of loras) {
    if (app.strength === 0) continue;
    for (const term of app.plan.terms) {
      const list = byTarget.get(term.target) ?? [];
      list.push({ term, app });
      byTarget.set(term.target, list);
    }
  }
  const load = (name: string, bk: Backend, dtype?: DType): Tensor => {
    const list = byTarget.get(name);
    if (!list) return base.load(name, bk, dtype);
    return bk.scope(() => {
      let W = base.load(name, bk, 'f32'); // (out, …)
      const out = W.shape[0]!;
      const n = W.numel / out;
      for (const { term, app } of list) {
        const A = bk.reshape(app.src.load(term.down, bk, 'f32'), [term.rank, n]); // (r, n)
        const B = bk.reshape(app.src.load(term.up, bk, 'f32'), [out, term.rank]); // (out, r)
        const delta = bk.affine(bk.matmul(B, A), app.strength * term.scale); // (out, n)
        W = bk.add(W, bk.reshape(delta, W.shape)); // (out, …), a fresh f32 tensor
      }
      return dtype === undefined || dtype === 'f32' ? W : bk.cast(W, dtype);
    });
  };
  return {
    source: { keys: () => base.keys(), has: (n) => base.has(n), entry: (n) => base.entry(n), load },
    changed: new Set(byTarget.keys()),
  };
}

// ------------------------------------------------------------------------------------------------
// Files

type Native = Pick<NativeModule, 'openSafetensors'>;

/** Opens a LoRA file with the adapter_config.json beside it (raw PEFT adapters), if any. */
export function openLora(file: string, native: Native): { src: SafetensorsCheckpoint; adapterConfig?: Record<string, unknown> } {
  const side = join(dirname(file), 'adapter_config.json');
  let adapterConfig: Record<string, unknown> | undefined;
  // Only a PEFT adapter folder's own weights take its config; loose files in models/loras do not.
  if (basename(file).startsWith('adapter_model') && existsSync(side)) adapterConfig = readJsonConfig(side);
  return { src: native.openSafetensors(file), adapterConfig };
}

/** Parses a LoRA file against a transformer config (the loader node's check; nothing is merged). */
export function checkLoraFile(file: string, cfg: SanaTransformerConfig, backend: Backend, native: Native, where: string): LoraPlan {
  const { src, adapterConfig } = openLora(file, native);
  try {
    return parseLora(src, expectedTransformerTensors(cfg), { backend, where, adapterConfig });
  } finally {
    src.close();
  }
}

/**
 * The LoRA-patched model: shares `base`'s weights except the merged ones, which it owns. The
 * merge reads W from the checkpoint in `transformerDir` (the file `base` was loaded from), so it
 * never depends on what the base kept resident after packing.
 */
export function loadLoraPatched(
  base: SanaTransformer, transformerDir: string, loras: ReadonlyArray<{ name: string; path: string; strength: number }>,
  backend: Backend, native: Native,
): SanaTransformer {
  const opened: SafetensorsCheckpoint[] = [];
  try {
    const ckpt = native.openSafetensors(pickSafetensors(transformerDir, { stems: ['diffusion_pytorch_model', 'model'] }));
    opened.push(ckpt);
    const shapes = expectedTransformerTensors(base.config);
    const apps: LoraApplication[] = loras.map((l) => {
      const { src, adapterConfig } = openLora(l.path, native);
      opened.push(src);
      return { plan: parseLora(src, shapes, { backend, where: `LoRA ${l.name}`, adapterConfig }), src, strength: l.strength, name: l.name };
    });
    const { source, changed } = mergedWeights(ckpt, apps);
    return base.withWeights(source, changed, `${ckpt.files.join(', ')} + LoRA ${loras.map((l) => l.name).join(', ')}`);
  } finally {
    for (const c of opened) c.close();
  }
}
