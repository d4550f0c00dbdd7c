// Node declaration types and the inference of `run()`'s argument and result types from a
// declaration. Browser-safe (types only, no runtime imports).

import type { ApiPrompt } from './schemas.ts';

/**
 * Value types carried by custom sockets. Node authors extend it by declaration merging:
 *
 *   declare module '../../engine/index.ts' { interface SocketTypes { LATENT: Latent } }
 *
 * A socket type that is not listed here is `unknown` in `run()`.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- filled by declaration merging
export interface SocketTypes {}

/** Widget types: the frontend draws a widget for these and workflows store their values. */
export type WidgetType = 'INT' | 'FLOAT' | 'STRING' | 'BOOLEAN' | 'COMBO';

interface CommonOptions {
  tooltip?: string;
  /** Socket only: no widget, no `widgets_values` slot (ComfyUI `forceInput`). */
  forceInput?: boolean;
  /** Shown under "advanced" in newer frontends. */
  advanced?: boolean;
}

export interface IntInput extends CommonOptions {
  type: 'INT';
  default?: number;
  /**
   * Bounds beyond 2^53 are written as bigint (`max: 0xffffffffffffffffn`): as a number that
   * maximum would round up to 2^64 and let 2^64 through. Values a double cannot hold reach
   * `run()` as bigint (only possible when a bound lies beyond 2^53).
   */
  min?: number | bigint;
  max?: number | bigint;
  step?: number;
  display?: 'number' | 'slider' | 'knob';
  /** Adds the frontend's fixed/increment/decrement/randomize widget after this one (seeds). */
  controlAfterGenerate?: boolean;
}

export interface FloatInput extends CommonOptions {
  type: 'FLOAT';
  default?: number;
  min?: number;
  max?: number;
  step?: number;
  /** Rounding precision the frontend applies, or false for none. */
  round?: number | false;
  display?: 'number' | 'slider' | 'knob';
}

export interface StringInput extends CommonOptions {
  type: 'STRING';
  default?: string;
  multiline?: boolean;
  dynamicPrompts?: boolean;
  placeholder?: string;
}

export interface BooleanInput extends CommonOptions {
  type: 'BOOLEAN';
  default?: boolean;
  labelOn?: string;
  labelOff?: string;
}

/**
 * Choices: a fixed list, or a function evaluated whenever object_info / validation needs it. The
 * function gets the registry's services (`NodeRegistry` options: the host's folders...), so a
 * list of files on disk needs no process-wide setting.
 */
export type ComboValues = readonly string[] | ((services: Services) => readonly string[]);

/** Host-provided objects (folders, model cache...), opaque to the engine: each node package
 *  narrows them to what it needs. */
export type Services = Record<string, unknown>;

export interface ComboInput<V extends ComboValues = ComboValues> extends CommonOptions {
  type: 'COMBO';
  values: V;
  default?: string;
  controlAfterGenerate?: boolean;
  /** Adds the frontend's upload button widget (LoadImage). */
  imageUpload?: boolean;
}

/** A socket of a custom type ('LATENT', 'CONDITIONING', 'SANA_MODEL', ...). `'*'` accepts any. */
export interface SocketInput<T extends string = string> extends CommonOptions {
  type: T;
}

export type InputSpec = IntInput | FloatInput | StringInput | BooleanInput | ComboInput | SocketInput;
/** An input is a spec object, or a bare custom type name as shorthand: `samples: 'LATENT'`. */
export type InputDecl = InputSpec | string;

/** Values the executor injects for hidden inputs (shared/spec/comfyui-api.md §4.4). */
export interface HiddenTypes {
  PROMPT: ApiPrompt;
  EXTRA_PNGINFO: Record<string, unknown> | undefined;
  UNIQUE_ID: string;
  DYNPROMPT: ApiPrompt;
  AUTH_TOKEN_COMFY_ORG: string | undefined;
  API_KEY_COMFY_ORG: string | undefined;
}
export type HiddenKind = keyof HiddenTypes;

export interface InputsDecl {
  required?: Record<string, InputDecl>;
  optional?: Record<string, InputDecl>;
  hidden?: Record<string, HiddenKind>;
}

export interface OutputDecl {
  name: string;
  type: string;
  /** ComfyUI OUTPUT_IS_LIST: the node returns an array, consumers run once per item. */
  isList?: boolean;
  tooltip?: string;
}

// ---- inference --------------------------------------------------------------------------

type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** Value type of a socket or widget type name. */
export type SocketValue<T extends string> = T extends 'INT' | 'FLOAT'
  ? number
  : T extends 'STRING'
    ? string
    : T extends 'BOOLEAN'
      ? boolean
      : T extends keyof SocketTypes
        ? SocketTypes[T]
        : unknown;

export type InputValue<D> = D extends string
  ? SocketValue<D>
  : D extends { type: 'COMBO'; values: readonly (infer V extends string)[] }
    ? string extends V
      ? string
      : V
    : D extends { type: 'COMBO' }
      ? string
      : D extends { type: infer T extends string }
        ? SocketValue<T>
        : unknown;

type ListIf<Flag, T> = [Flag] extends [true] ? T[] : T;

type RequiredValues<R, L> = R extends Record<string, InputDecl> ? { [K in keyof R]: ListIf<L, InputValue<R[K]>> } : {};
type OptionalValues<O, L> = O extends Record<string, InputDecl> ? { [K in keyof O]: ListIf<L, InputValue<O[K]>> | undefined } : {};
type HiddenValues<H> = H extends Record<string, HiddenKind> ? { [K in keyof H]: HiddenTypes[H[K]] } : {};

/** `run()`'s first argument, inferred from `inputs` (and `inputIsList`). */
export type InferInputs<I extends InputsDecl, L extends boolean | undefined = false> = Simplify<
  RequiredValues<I['required'], L> & OptionalValues<I['optional'], L> & HiddenValues<I['hidden']>
>;

/** The outputs tuple `run()` returns: one value per output, an array for `isList` outputs. */
export type InferOutputs<O extends readonly OutputDecl[]> = {
  readonly [K in keyof O]: O[K] extends { type: infer T extends string } ? (O[K] extends { isList: true } ? readonly SocketValue<T>[] : SocketValue<T>) : never;
};

/** What `executed` carries and history stores, e.g. `{ images: [{ filename, subfolder, type }] }`. */
export type UiOutput = Record<string, unknown[]>;

export type NodeResult<O extends readonly OutputDecl[]> = InferOutputs<O> | { result?: InferOutputs<O>; ui?: UiOutput };

// ---- run context ------------------------------------------------------------------------

export interface PreviewImage {
  format: 'JPEG' | 'PNG';
  /** The encoded image file. */
  data: Uint8Array;
}

export interface NodeContext {
  nodeId: string;
  promptId: string;
  /** Aborted when the job is interrupted. */
  signal: AbortSignal;
  /**
   * Reports progress (sends ComfyUI's `progress` {value, max, prompt_id, node}); with a preview
   * the host also sends a binary preview frame. Throws `InterruptedError` when interrupted, so a
   * sampler calling it once per step stops at the next step.
   */
  progress(value: number, max: number, preview?: PreviewImage): void;
  /** Streams an image to the client without a progress update (SaveImageWebsocket). */
  sendBinaryPreview(image: PreviewImage): void;
  /** Host-provided objects: folders, model cache, ... (see `ExecutorOptions.services`). */
  services: Services;
  /** `extra_data` of the job (client_id, extra_pnginfo, ...). */
  extraData: Record<string, unknown>;
  throwIfInterrupted(): void;
}

// ---- the declaration --------------------------------------------------------------------

export interface NodeDefinition<
  I extends InputsDecl = InputsDecl,
  O extends readonly OutputDecl[] = readonly OutputDecl[],
  L extends boolean | undefined = boolean | undefined,
> {
  /** The class type (`class_type` in prompts, key of /object_info). */
  name: string;
  displayName?: string;
  /** e.g. 'ExtraModels/Sana'; ComfyUI's default is 'sd'. */
  category?: string;
  description?: string;
  /** object_info `python_module`; default 'custom_nodes.sana_graph'. */
  module?: string;
  inputs: I;
  outputs: O;
  outputNode?: boolean;
  /** ComfyUI INPUT_IS_LIST: run once with every input as the whole list. */
  inputIsList?: L;
  /** ComfyUI NOT_IDEMPOTENT: the cache key includes the node id. */
  notIdempotent?: boolean;
  deprecated?: boolean;
  experimental?: boolean;
  /**
   * ComfyUI IS_CHANGED: a value that changes when the node's result would change for reasons
   * outside its inputs (file contents, time). Called with the constant inputs only (linked
   * inputs are absent). Return NaN to re-run every time; a throw counts as NaN.
   */
  fingerprint?: (inputs: Record<string, unknown>, services: Services) => unknown;
  /**
   * ComfyUI VALIDATE_INPUTS: checks the constant inputs (coerced; linked inputs are absent) at
   * submit time. Returns undefined when they are fine, else input name -> reason; each becomes a
   * `custom_validation_failed` node error with `extra_info.input_name`. A throw is
   * `exception_during_validation`.
   */
  validateInputs?: (inputs: Record<string, unknown>, services: Services) => Record<string, string> | undefined;
  run(inputs: InferInputs<I, L>, ctx: NodeContext): NodeResult<NoInfer<O>> | Promise<NodeResult<NoInfer<O>>>;
}

/** A definition with its type parameters erased, as the registry and executor hold it. */
export interface AnyNodeDefinition {
  name: string;
  displayName?: string;
  category?: string;
  description?: string;
  module?: string;
  inputs: InputsDecl;
  outputs: readonly OutputDecl[];
  outputNode?: boolean;
  inputIsList?: boolean;
  notIdempotent?: boolean;
  deprecated?: boolean;
  experimental?: boolean;
  fingerprint?: (inputs: Record<string, unknown>, services: Services) => unknown;
  validateInputs?: (inputs: Record<string, unknown>, services: Services) => Record<string, string> | undefined;
  run(inputs: Record<string, unknown>, ctx: NodeContext): unknown;
}
