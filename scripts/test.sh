#!/usr/bin/env bash
# The whole test suite: type check, then vitest (engine, native ops, models, server, CLI,
# browser). `npm test` runs scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc --noEmit -p tsconfig.json
npx vitest run "$@"
