// Golden runner: checks the model code against reference fixtures (shared/fixtures/golden format).
//   npm run golden -- <fixtures-dir> [--dtype f32|bf16] [--device cpu|cuda|cuda-emu] [--stage NAME]... [--json]
// Runs every stage whose files are present, prints max abs / max rel error per tensor, and exits
// 1 when any comparison is out of tolerance (2 on a usage error).
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { formatReport, runGolden } from '../nodes/models/golden/run.ts';
import type { DeviceName } from '../native/api.ts';

const USAGE = 'usage: npm run golden -- <fixtures-dir> [--dtype f32|bf16] [--device cpu|cuda|cuda-emu] [--stage NAME]... [--json]';

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        dtype: { type: 'string', default: 'f32' },
        device: { type: 'string', default: 'cpu' },
        stage: { type: 'string', multiple: true },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    console.error(`expected one fixtures folder, got ${positionals.length}\n${USAGE}`);
    return 2;
  }
  if (values.dtype !== 'f32' && values.dtype !== 'bf16') {
    console.error(`--dtype must be f32 or bf16, got ${values.dtype}\n${USAGE}`);
    return 2;
  }
  if (!['cpu', 'cuda', 'cuda-emu'].includes(values.device)) {
    console.error(`--device must be cpu, cuda or cuda-emu, got ${values.device}\n${USAGE}`);
    return 2;
  }
  const report = await runGolden({
    root: resolve(positionals[0]),
    dtype: values.dtype,
    device: values.device as DeviceName,
    only: values.stage,
  });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  if (report.stages.length === 0) console.error(`no stage found fixture files under ${report.root}`);
  return report.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`golden: ${err.message}`);
    process.exit(2);
  },
);
