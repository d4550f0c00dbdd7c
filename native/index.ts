// The native module (native/api.ts `NativeModule`): backends, safetensors, build facts.
import type { Backend, DeviceName, NativeModule } from './api.ts';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { raw } from './binding.ts';
import { NativeBackend } from './backend.ts';
import { openSafetensors, writeSafetensors } from './safetensors.ts';

export type * from './api.ts';
export { openSafetensors, writeSafetensors };
export { profiler, formatProfile, type ProfileStage, type ProfileRow } from './profile.ts';
export type { OpenOptions } from './safetensors.ts';

const backends = new Map<DeviceName, NativeBackend>();

/** Why scripts/setup.sh fell back to the portable build, when it did (it leaves this file). */
function fallbackReason(): string {
  const f = fileURLToPath(new URL('./build-portable.reason', import.meta.url));
  try {
    return existsSync(f) ? ` (set-up: ${readFileSync(f, 'utf8').trim()}; full log in native/build-fast.log)` : '';
  } catch {
    return '';
  }
}
let hintShown = false;

export function getBackend(device: DeviceName): Backend {
  const have = backends.get(device);
  if (have) return have;
  const d = raw()
    .backends()
    .find((b) => b.name === device);
  if (!d)
    throw new Error(
      `getBackend: device '${device}' is not compiled into this build (have: ${raw()
        .backends()
        .map((b) => b.name)
        .join(', ')})`,
    );
  if (!d.available) throw new Error(`getBackend: device '${device}' is unavailable: ${d.reason ?? 'unknown reason'}`);
  if (device === 'cpu' && !hintShown) {
    hintShown = true;
    const hint = raw().buildInfo().hint;
    if (hint) process.emitWarning(hint + fallbackReason(), { code: 'SANA_NATIVE_SLOW_PATH' });
  }
  const b = new NativeBackend(device);
  backends.set(device, b);
  return b;
}

export function devices(): ReturnType<NativeModule['devices']> {
  return raw()
    .backends()
    .map((b) => ({
      name: b.name as DeviceName,
      available: b.available,
      ...(b.reason ? { reason: b.reason } : {}),
      info: JSON.parse(b.info) as Record<string, unknown>,
    }));
}

/** Build and run-time facts; `gemm` names the GEMM paths, `bf16Dot` says whether bf16
 *  attentionTokens keeps its k|v as bf16 pairs (AVX512-BF16, SANA_CPU_ISA not lowered). */
export function buildInfo(): ReturnType<NativeModule['buildInfo']> & { gemm: string; bf16Dot: boolean } {
  return raw().buildInfo();
}

/** Measured fp32 FMA throughput of all CPU threads (GFLOP/s), for benchmarks. */
export function fmaPeakGflops(ms = 200): number {
  return raw().fmaPeak(ms);
}
/** Gives the CPU backend's cached free blocks back to the system (src/host_cache.cc); bytes released. */
export function trimHostCache(): number {
  return raw().trimHostCache();
}
/** Bytes of freed CPU blocks kept for reuse (resident, not tensors). */
export function hostCacheBytes(): number {
  return raw().memory('cpu').cached ?? 0;
}
/** Sets (when given) and returns the CPU thread count of the native kernels. */
export function cpuThreads(n?: number): number {
  return raw().threads(n);
}

const native: NativeModule = { getBackend, devices, openSafetensors, writeSafetensors, buildInfo };
export default native;
