// Runs the golden stages over a fixtures folder and formats the report (used by
// scripts/golden.ts and by the tests).
import { existsSync, readdirSync } from 'node:fs';
import type { Backend, DeviceName, NativeModule } from '../../../native/api.ts';
import { loadNative } from '../../../native/lazy.ts';
import { STAGES } from './index.ts';
import { componentTolerance } from './tolerance.ts';
import type { Comparison, GoldenContext, GoldenDType } from './types.ts';

export interface GoldenOptions {
  root: string;
  dtype?: GoldenDType;
  device?: DeviceName;
  /** Only these stages (default: every stage whose files are present). */
  only?: readonly string[];
  /** Override the native module (tests). */
  native?: () => Promise<NativeModule>;
}

export interface StageReport {
  name: string;
  comparisons: Comparison[];
  /** Set when the stage threw instead of producing comparisons. */
  error?: string;
  ok: boolean;
  seconds: number;
}

export interface GoldenReport {
  root: string;
  dtype: GoldenDType;
  device: DeviceName;
  stages: StageReport[];
  /** Stages skipped because their fixture files are absent. */
  skipped: string[];
  /** Sub-folders of the root that no stage reads (fixtures for models not implemented yet). */
  ignored: string[];
  ok: boolean;
}

export async function runGolden(opts: GoldenOptions): Promise<GoldenReport> {
  const dtype = opts.dtype ?? 'f32';
  const device = opts.device ?? 'cpu';
  if (!existsSync(opts.root)) throw new Error(`golden: fixtures folder ${opts.root} does not exist`);
  const unknown = (opts.only ?? []).filter((n) => !STAGES.some((s) => s.name === n));
  if (unknown.length) throw new Error(`golden: unknown stage(s) ${unknown.join(', ')} (known: ${STAGES.map((s) => s.name).join(', ')})`);
  let nativeP: Promise<NativeModule> | undefined;
  let backendP: Promise<Backend> | undefined;
  const getNative = opts.native ?? loadNative;
  const ctx: GoldenContext = {
    root: opts.root,
    dtype,
    device,
    tolerance: componentTolerance(dtype),
    native: () => (nativeP ??= getNative()),
    backend: () => (backendP ??= ctx.native().then((n) => n.getBackend(device))),
  };
  const stages: StageReport[] = [];
  const skipped: string[] = [];
  const ignored = readdirSync(opts.root, { withFileTypes: true })
    // A stage reads the folder its name (or the name's first `/` part) says.
    .filter((e) => e.isDirectory() && !STAGES.some((s) => s.name.split('/')[0] === e.name))
    .map((e) => e.name)
    .sort();
  for (const stage of STAGES) {
    if (opts.only && opts.only.length > 0 && !opts.only.includes(stage.name)) continue;
    if (!stage.available(opts.root)) {
      skipped.push(stage.name);
      continue;
    }
    const t0 = performance.now();
    try {
      const comparisons = await stage.run(ctx);
      const ok = comparisons.length > 0 && comparisons.every((c) => c.ok);
      stages.push({ name: stage.name, comparisons, ok, seconds: (performance.now() - t0) / 1000 });
    } catch (err) {
      const e = err as Error;
      stages.push({ name: stage.name, comparisons: [], error: e.stack ?? e.message, ok: false, seconds: (performance.now() - t0) / 1000 });
    }
  }
  return { root: opts.root, dtype, device, stages, skipped, ignored, ok: stages.length > 0 && stages.every((s) => s.ok) };
}

const fmt = (x: number): string => (Number.isNaN(x) ? '-' : Number.isFinite(x) ? x.toExponential(2) : String(x));

export function formatReport(r: GoldenReport): string {
  const lines: string[] = [`golden fixtures ${r.root}  dtype=${r.dtype} device=${r.device}`];
  for (const s of r.stages) {
    lines.push('', `== ${s.name}  ${s.ok ? 'PASS' : 'FAIL'}  (${s.seconds.toFixed(2)} s)`);
    if (s.error) {
      lines.push(`   error: ${s.error}`);
      continue;
    }
    const w = Math.min(90, Math.max(...s.comparisons.map((c) => c.name.length)));
    lines.push(`   ${'tensor'.padEnd(w)}  ${'shape'.padEnd(16)} ${'max abs'.padStart(9)} ${'max rel'.padStart(9)} ${'ratio'.padStart(9)}  tol(atol/rtol)`);
    for (const c of s.comparisons) {
      const shape = c.shape.length ? `[${c.shape.join(',')}]` : '-';
      lines.push(`   ${c.name.padEnd(w)}  ${shape.padEnd(16)} ${fmt(c.maxAbs).padStart(9)} ${fmt(c.maxRel).padStart(9)} ${fmt(c.ratio).padStart(9)}  ${c.tolerance.atol}/${c.tolerance.rtol}${c.ok ? '' : '  FAIL'}${c.note ? `  (${c.note})` : ''}`);
    }
  }
  if (r.skipped.length) lines.push('', `skipped (fixture files absent): ${r.skipped.join(', ')}`);
  if (r.ignored.length) lines.push(`ignored (no stage reads these folders): ${r.ignored.join(', ')}`);
  const nCmp = r.stages.reduce((a, s) => a + s.comparisons.length, 0);
  const nBad = r.stages.reduce((a, s) => a + s.comparisons.filter((c) => !c.ok).length + (s.error ? 1 : 0), 0);
  lines.push('', `${r.ok ? 'PASS' : 'FAIL'}: ${r.stages.length} stage(s), ${nCmp} comparison(s), ${nBad} failure(s)`);
  return lines.join('\n');
}
