#!/usr/bin/env bash
# The whole test suite: type check, then vitest (engine, native ops, models, server, CLI,
# browser). `npm test` runs scripts/setup.sh first. Ends with a plain "N passed, N failed" line
# (from vitest's JSON report) so that any CI log reader can count the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
npx tsc --noEmit -p tsconfig.json || exit 1
mkdir -p test-artifacts
report=test-artifacts/vitest-report.json
rm -f "$report"
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
rc=$?
if [ -f "$report" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
  ' "$report"
fi
exit $rc
