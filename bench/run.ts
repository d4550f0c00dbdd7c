// The project's benchmark runner.
//   npm run bench                 every bench/*.bench.ts
//   npm run bench -- engine dit   only bench/engine.bench.ts and bench/dit.bench.ts
// Each bench runs in its own child process (a native crash or a leak in one cannot take the
// others down), returns BenchRow[] from its default export; the runner prints one table and
// writes bench/results/<name>.json with the rows, the machine facts and a timestamp.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BenchMeasurement, BenchRow } from './types.ts';
import { formatProfile, type ProfileStage } from '../native/profile.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const resultsDir = path.join(benchDir, 'results');
const SUFFIX = '.bench.ts';

function isBenchRow(r: unknown): r is BenchRow {
  const o = r as Record<string, unknown>;
  if (!o || typeof o.name !== 'string') return false;
  if ('metrics' in o) return !!o.metrics && typeof o.metrics === 'object' && Object.values(o.metrics).every((v) => typeof v === 'number');
  return typeof o.metric === 'string' && typeof o.value === 'number' && typeof o.unit === 'string';
}

/** Unit of a `metrics` key when the row does not say: by the key's conventional suffix. */
function unitOf(key: string): string {
  const k = key.toLowerCase();
  if (k === 'seconds' || k.endsWith('_s') || k.endsWith('_seconds')) return 's';
  if (k === 'ms' || k.endsWith('_ms')) return 'ms';
  if (k.endsWith('_mb')) return 'MB';
  if (k.endsWith('_gb')) return 'GB';
  if (k === 'tflops' || k.endsWith('_tflops')) return 'TFLOP/s';
  if (k === 'gflops' || k.endsWith('_gflops')) return 'GFLOP/s';
  if (k === 'tflop') return 'TFLOP';
  if (k.startsWith('us_per_')) return `µs/${k.slice(7)}`;
  if (k.includes('_us_per_')) return `µs/${k.slice(k.indexOf('_us_per_') + 8)}`;
  return '';
}

/** One row per measurement. */
function expandRows(rows: BenchRow[]): BenchMeasurement[] {
  return rows.flatMap((r) =>
    'metrics' in r
      ? Object.entries(r.metrics).map(([metric, value]) => ({
          name: r.name,
          metric,
          value,
          unit: r.units?.[metric] ?? unitOf(metric),
          ...(r.notes ? { notes: r.notes } : {}),
        }))
      : [r],
  );
}

/** Child mode: run one bench file and write its rows as JSON to `out`. */
async function runOne(file: string, out: string): Promise<void> {
  const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  if (typeof mod.default !== 'function') throw new Error(`${path.basename(file)}: the default export must be an async function returning BenchRow[]`);
  const rows = (await (mod.default as () => Promise<unknown>)()) as unknown;
  if (!Array.isArray(rows) || !rows.every(isBenchRow)) {
    throw new Error(
      `${path.basename(file)}: the default export did not return BenchRow[] ({ name, metric, value, unit, notes? } or { name, metrics, units?, notes? })`,
    );
  }
  fs.writeFileSync(out, JSON.stringify(expandRows(rows)));
  // SANA_PROFILE=1: the op profile of each case the bench named (profiler.stage), beside the rows.
  const { profiler } = await import('../native/profile.ts');
  if (profiler.enabled) {
    profiler.endStage();
    fs.writeFileSync(`${out}.profile`, JSON.stringify(profiler.report()));
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpu_model: cpus[0]?.model ?? 'unknown',
    loadavg: os.loadavg().map((l) => Math.round(l * 100) / 100),
    total_mem_gb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    free_mem_gb: Math.round((os.freemem() / 2 ** 30) * 10) / 10,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(3) : String(Math.round(v * 1000) / 1000);
}

function printTable(rows: (BenchMeasurement & { bench: string })[]): void {
  const head = ['bench', 'name', 'metric', 'value', 'unit', 'notes'];
  const cells = rows.map((r) => [r.bench, r.name, r.metric, fmt(r.value), r.unit, r.notes ?? '']);
  const widths = head.map((h, i) => Math.min(60, Math.max(h.length, ...cells.map((c) => c[i].length))));
  const line = (c: string[]) =>
    c
      .map((x, i) => (i === 3 ? x.padStart(widths[i]) : x.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const c of cells) console.log(line(c));
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args[0] === '--one') {
    await runOne(args[1], args[2]);
    return 0;
  }
  const all = fs
    .readdirSync(benchDir)
    .filter((f) => f.endsWith(SUFFIX))
    .sort();
  const names = all.map((f) => f.slice(0, -SUFFIX.length));
  const wanted = args.length ? args : names;
  const unknown = wanted.filter((n) => !names.includes(n));
  if (unknown.length) {
    console.error(`unknown bench name(s): ${unknown.join(', ')}; available: ${names.join(', ')}`);
    return 2;
  }
  fs.mkdirSync(resultsDir, { recursive: true });
  const table: (BenchMeasurement & { bench: string })[] = [];
  let failed = 0;
  for (const name of wanted) {
    const file = path.join(benchDir, `${name}${SUFFIX}`);
    const tmp = path.join(resultsDir, `${name}.${process.pid}.tmp`);
    const started = new Date();
    console.error(`[bench] ${name} ...`);
    const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--one', file, tmp], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    let rows: BenchMeasurement[] | undefined;
    let profile: ProfileStage[] | undefined;
    try {
      if (child.status === 0) rows = JSON.parse(fs.readFileSync(tmp, 'utf8')) as BenchMeasurement[];
      if (child.status === 0 && fs.existsSync(`${tmp}.profile`)) profile = JSON.parse(fs.readFileSync(`${tmp}.profile`, 'utf8')) as ProfileStage[];
    } finally {
      fs.rmSync(tmp, { force: true });
      fs.rmSync(`${tmp}.profile`, { force: true });
    }
    const seconds = (Date.now() - started.getTime()) / 1000;
    if (!rows) {
      failed++;
      const why = child.error ? child.error.message : child.signal ? `killed by ${child.signal}` : `exit code ${child.status}`;
      console.error(`[bench] ${name} failed (${why})`);
      table.push({ bench: name, name: '(failed)', metric: why, value: Number.NaN, unit: '' });
      continue;
    }
    const record = { name, timestamp: started.toISOString(), seconds, machine: machine(), rows };
    fs.writeFileSync(path.join(resultsDir, `${name}.json`), `${JSON.stringify(record, null, 2)}\n`);
    if (profile) {
      // Beside the rows, not in them: the profile is per op kind and per case, the rows per case.
      fs.writeFileSync(
        path.join(resultsDir, `${name}.profile.json`),
        `${JSON.stringify({ name, timestamp: started.toISOString(), machine: machine(), stages: profile }, null, 2)}\n`,
      );
      console.log(formatProfile(profile, { maxRows: 25 }));
    }
    for (const r of rows) table.push({ bench: name, ...r });
  }
  printTable(table);
  const m = machine();
  console.log(`\n${m.cpus} x ${m.cpu_model}, load ${m.loadavg.join(' ')}; results in ${path.relative(process.cwd(), resultsDir) || resultsDir}/`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
