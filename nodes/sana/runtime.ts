// Where the Sana nodes meet the native backends and the model cache: device choice with CPU
// fallback, compute dtype choice, and `with*` helpers that fetch a model's weights through the
// shared cache from a socket reference. The addon and the model code are imported lazily, so
// registering the nodes (and /object_info) works before the addon is built.
import type { Backend, DeviceName, DType } from '../../native/api.ts';
import { loadNative } from '../../native/lazy.ts';
import type { ModelKey } from '../model_cache.ts';
import type { NodeServices } from '../services.ts';
import { weightBytes } from '../models_dir.ts';
import type { DcaeRef, GemmaRef, SanaModelRef } from './types.ts';

/** What the dtype widgets offer; 'auto' = bf16 where the backend has a native bf16 matmul, else f32. */
export const DTYPE_CHOICES = ['auto', 'bf16', 'f16', 'f32'] as const;
export type DTypeChoice = (typeof DTYPE_CHOICES)[number];
/** 'auto' = the GPU when one is usable, else the CPU; 'cuda' asks for the GPU (CPU fallback, logged). */
export const DEVICE_CHOICES = ['auto', 'cpu', 'cuda'] as const;
export type DeviceChoice = (typeof DEVICE_CHOICES)[number];

/** The addon's module, imported on first use (native/lazy.ts). */
export const native = loadNative;

export async function backendFor(device: DeviceName): Promise<Backend> {
  return (await native()).getBackend(device);
}

/**
 * The device to load on. 'auto' takes the GPU when one is usable and the CPU otherwise, silently
 * (ComfyUI's own device choice). An explicit 'cuda' that cannot be honoured (no GPU, no CUDA
 * build) also runs on the CPU, so a workflow saved on a GPU machine still runs here, and `note`
 * says why: callers log it (`logDeviceNote`), never return it as UI output, because ComfyUI
 * clients take any `executed` message for a node's result.
 */
export async function resolveDevice(requested: string, who: string): Promise<{ device: DeviceName; note?: string }> {
  if (requested === 'cpu') return { device: 'cpu' };
  if (requested !== 'cuda' && requested !== 'auto') throw new Error(`${who}: device "${requested}" is not one of ${DEVICE_CHOICES.join(', ')}`);
  const n = await native();
  const cuda = n.devices().find((d) => d.name === 'cuda');
  if (cuda?.available) return { device: 'cuda' };
  if (requested === 'auto') return { device: 'cpu' };
  const why = cuda?.reason ?? 'no CUDA backend in this build';
  return { device: 'cpu', note: `${who}: CUDA is not available (${why}); running on the CPU instead` };
}

/** Where a device fallback note goes: the log (the server's stderr, via the execution process). */
export function logDeviceNote(note: string | undefined): void {
  if (note) console.warn(note);
}

/** Shared by every node with a device widget. */
export const DEVICE_INPUT = {
  type: 'COMBO',
  values: DEVICE_CHOICES,
  default: 'auto',
  tooltip: 'auto: the GPU when one is usable, else the CPU. cuda: the GPU; where none is usable it runs on the CPU and says so in the server log.',
} as const;

/** Resolves a dtype widget value on a backend. `allowF16` is false for models that overflow in fp16. */
export function resolveDtype(choice: string, backend: Backend, who: string, allowF16 = true): DType {
  switch (choice) {
    case 'auto':
      return backend.supportsOp('linear', 'bf16') ? 'bf16' : 'f32';
    case 'bf16':
    case 'f32':
      return choice;
    case 'f16':
      if (!allowF16) throw new Error(`${who}: dtype f16 is not supported for this model (its activations overflow in fp16); use bf16 or f32`);
      return 'f16';
    default:
      throw new Error(`${who}: dtype "${choice}" is not one of ${DTYPE_CHOICES.join(', ')}`);
  }
}

type SanaTransformer = import('../models/sana_dit/model.ts').SanaTransformer;
type DcaeDecoder = import('../models/dcae.ts').DcaeDecoder;

/** LoRA-patched models built on each loaded base, so they leave the cache with it. */
const loraDependants = new WeakMap<SanaTransformer, Map<string, ModelKey>>();
let baseInstances = 0;
const baseIds = new WeakMap<SanaTransformer, number>();

/**
 * Runs `fn` with the transformer behind `ref`, loading it into the model cache when needed. With
 * LoRAs on the reference, `fn` gets a patched model: its own cache entry (keyed by the base
 * instance and the LoRA set) holding only the merged weights and borrowing the rest from the
 * base, which stays cached unpatched for other jobs. Both are pinned while `fn` runs.
 */
export async function withTransformer<R>(svc: NodeServices, ref: SanaModelRef, fn: (model: SanaTransformer, backend: Backend) => Promise<R> | R): Promise<R> {
  const backend = await backendFor(ref.device);
  const { loadSanaTransformer } = await import('../models/sana_dit/load.ts');
  const loras = (ref.loras ?? []).filter((l) => l.strength !== 0);
  const cache = svc.modelCache;
  return cache.use(
    { kind: 'sana_transformer', path: ref.path, dtype: ref.dtype, device: ref.device },
    async () => {
      const m = await loadSanaTransformer(ref.path, backend, ref.dtype);
      baseIds.set(m, ++baseInstances);
      return {
        value: m,
        bytes: m.bytes,
        dispose: () => {
          for (const k of loraDependants.get(m)?.values() ?? []) cache.forget(k);
          m.dispose();
        },
      };
    },
    (base) => (loras.length === 0 ? fn(base, backend) : withLoraPatched(svc, ref, base, loras, backend, fn)),
    weightBytes(ref.path),
  );
}

async function withLoraPatched<R>(
  svc: NodeServices,
  ref: SanaModelRef,
  base: SanaTransformer,
  loras: NonNullable<SanaModelRef['loras']>,
  backend: Backend,
  fn: (model: SanaTransformer, backend: Backend) => Promise<R> | R,
): Promise<R> {
  const { loadLoraPatched } = await import('../models/lora.ts');
  const set = JSON.stringify(loras.map((l) => [l.path, l.strength, l.stamp]));
  const key: ModelKey = { kind: 'sana_transformer_lora', path: `${ref.path}#${baseIds.get(base) ?? 0}#${set}`, dtype: ref.dtype, device: ref.device };
  const deps = loraDependants.get(base) ?? new Map<string, ModelKey>();
  loraDependants.set(base, deps);
  deps.set(key.path, key);
  const n = await native();
  return svc.modelCache.use(
    key,
    () => {
      const m = loadLoraPatched(base, ref.path, loras, backend, n);
      return { value: m, bytes: m.bytes, dispose: () => m.dispose() };
    },
    (m) => fn(m, backend),
  );
}

/** Runs `fn` with the DC-AE decoder behind `ref`. */
export async function withDcae<R>(svc: NodeServices, ref: DcaeRef, fn: (model: DcaeDecoder, backend: Backend) => Promise<R> | R): Promise<R> {
  const backend = await backendFor(ref.device);
  const { loadDcaeDecoder } = await import('../models/dcae.ts');
  return svc.modelCache.use(
    { kind: 'dcae_decoder', path: ref.path, dtype: ref.dtype, device: ref.device },
    async () => {
      const m = await loadDcaeDecoder(ref.path, backend, ref.dtype);
      return { value: m, bytes: m.bytes, dispose: () => m.dispose() };
    },
    (m) => fn(m, backend),
    // Only the decoder half of the file is loaded.
    weightBytes(ref.path) / 2,
  );
}

type DcaeEncoder = import('../models/dcae_encoder.ts').DcaeEncoder;

/**
 * Runs `fn` with the DC-AE encoder behind `ref` (the same vae/ folder as the decoder). Loaded
 * only when something encodes, so a decoder-only checkpoint fails here, naming the missing key,
 * and nowhere else.
 */
export async function withDcaeEncoder<R>(svc: NodeServices, ref: DcaeRef, fn: (model: DcaeEncoder, backend: Backend) => Promise<R> | R): Promise<R> {
  const backend = await backendFor(ref.device);
  const { loadDcaeEncoder } = await import('../models/dcae_encoder.ts');
  return svc.modelCache.use(
    { kind: 'dcae_encoder', path: ref.path, dtype: ref.dtype, device: ref.device },
    async () => {
      const m = await loadDcaeEncoder(ref.path, backend, ref.dtype);
      return { value: m, bytes: m.bytes, dispose: () => m.dispose() };
    },
    (m) => fn(m, backend),
    weightBytes(ref.path) / 2,
  );
}

type Gemma2Model = import('../models/gemma2.ts').Gemma2Model;

/** Runs `fn` with the Gemma-2 encoder behind `ref`. */
export async function withGemma<R>(svc: NodeServices, ref: GemmaRef, fn: (model: Gemma2Model, backend: Backend) => Promise<R> | R): Promise<R> {
  const backend = await backendFor(ref.device);
  const { loadGemma2 } = await import('../models/gemma2.ts');
  return svc.modelCache.use(
    { kind: 'gemma2', path: ref.textEncoderPath, dtype: ref.dtype, device: ref.device },
    async () => {
      const m = await loadGemma2(ref.textEncoderPath, backend, ref.dtype);
      return { value: m, bytes: m.bytes, dispose: () => m.dispose() };
    },
    (m) => fn(m, backend),
    weightBytes(ref.textEncoderPath),
  );
}
