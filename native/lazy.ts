// The addon's module, imported on first use: model code, nodes and tools that must stay
// importable where the addon is not built (config parsing, /object_info, shape checks) call
// this instead of importing native/index.ts, and everyone shares one import.
export type NativeIndex = typeof import('./index.ts');

let loading: Promise<NativeIndex> | undefined;

export function loadNative(): Promise<NativeIndex> {
  loading ??= import('./index.ts');
  return loading;
}
