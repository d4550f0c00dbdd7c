// The one place tests find the golden fixtures: $SANA_GOLDEN_DIR, else ../shared/fixtures/golden
// beside the repository (where CI lays it). A suite that needs a fixture asks `haveGolden(...)`:
// missing fixtures are an error under CI=true (a silently skipped numerics suite looks green),
// and a skip with a warning elsewhere.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { goldenDir } from '../nodes/models/golden/transformer.ts';

export const GOLDEN = goldenDir();

/** A path inside the fixtures folder. */
export const golden = (...parts: string[]): string => resolve(GOLDEN, ...parts);

/** Whether the fixture exists; throws in CI when it does not. */
export function haveGolden(...parts: string[]): boolean {
  const p = golden(...parts);
  if (existsSync(p)) return true;
  const why = `golden fixture missing: ${p} (put ../shared beside the clone or set SANA_GOLDEN_DIR)`;
  if (process.env.CI === 'true') throw new Error(why);
  console.warn(`${why}; skipping`);
  return false;
}
