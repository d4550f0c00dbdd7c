// The golden runner on the shared fixtures (f32 and bf16), and its CLI's exit codes.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { formatReport, runGolden } from '../../nodes/models/golden/run.ts';
import { STAGES } from '../../nodes/models/golden/index.ts';
import { GOLDEN, haveGolden } from '../fixtures.ts';

const REPO = resolve(import.meta.dirname, '../..');
const ROOT = GOLDEN;
const HAVE = haveGolden();

describe.skipIf(!HAVE)('golden fixtures', () => {
  it('every stage finds its fixture files', async () => {
    const report = await runGolden({ root: ROOT, only: ['noise'] });
    expect(report.stages.map((s) => s.name)).toEqual(['noise']);
    expect(STAGES.filter((s) => !s.available(ROOT)).map((s) => s.name)).toEqual([]);
  });

  // One test per stage and dtype, so a failure names the stage at fault.
  for (const dtype of ['f32', 'bf16'] as const) {
    for (const stage of STAGES) {
      it(`${stage.name} passes in ${dtype}`, async () => {
        const report = await runGolden({ root: ROOT, dtype, only: [stage.name] });
        console.log(formatReport(report));
        const s = report.stages[0];
        expect(s.error, `${s.name} threw`).toBeUndefined();
        expect(s.comparisons.length, `${s.name} compared nothing`).toBeGreaterThan(0);
        const bad = s.comparisons.filter((c) => !c.ok).map((c) => `${c.name}: max abs ${c.maxAbs}, ratio ${c.ratio}`);
        expect(bad, `${s.name} out of tolerance`).toEqual([]);
        expect(report.ok).toBe(true);
      }, 600_000);
    }
  }
});

describe.skipIf(!HAVE)('golden CLI', () => {
  const cli = (args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'scripts/golden.ts', ...args], { cwd: REPO, encoding: 'utf8', timeout: 120_000 });

  it('exits 0 on matching fixtures and 1 when a tensor is off', () => {
    const ok = cli([ROOT, '--stage', 'scheduler']);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/steps7\.safetensors:latents\[7\]/);
    expect(ok.stdout).toMatch(/PASS/);

    // A copy of the scheduler fixtures whose last float of steps7 is nudged.
    const dir = mkdtempSync(join(tmpdir(), 'golden-'));
    cpSync(join(ROOT, 'scheduler'), join(dir, 'scheduler'), { recursive: true });
    const f = join(dir, 'scheduler', 'steps7.safetensors');
    const buf = readFileSync(f);
    const hlen = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + hlen).toString()) as Record<string, { data_offsets: [number, number] }>;
    const end = 8 + hlen + header.latents.data_offsets[1];
    buf.writeFloatLE(buf.readFloatLE(end - 4) + 0.01, end - 4);
    writeFileSync(f, buf);
    const bad = cli([dir]);
    expect(bad.status, bad.stdout).toBe(1);
    expect(bad.stdout).toMatch(/FAIL/);
    expect(bad.stdout).toMatch(/skipped \(fixture files absent\): .*gemma2/);
  });

  it('exits 2 on usage errors', () => {
    expect(cli([]).status).toBe(2);
    expect(cli([ROOT, '--dtype', 'f16']).status).toBe(2);
    expect(cli([ROOT, '--stage', 'nope']).status).toBe(2);
  });
});
