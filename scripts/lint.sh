#!/usr/bin/env bash
# `npm run lint`: formatting (Prettier for TypeScript/JavaScript, clang-format for native/ C++ and
# CUDA), ESLint, and the type checks of the server/engine tree and the editor. Exits non-zero at the
# first failing step. `npm run format` (this script with --write) rewrites the sources in place.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=check
[ "${1:-}" = --write ] && mode=write

# Prettier takes these globs; .prettierignore and .gitignore keep generated files out.
TS_GLOB='**/*.{ts,mts,js,mjs}'
# The C++/CUDA sources: everything under native/ except the cmake build folders.
native_sources() {
  find native -path 'native/build*' -prune -o -type f \
    \( -name '*.cc' -o -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -print | sort
}
need_clang_format() {
  if ! command -v clang-format >/dev/null; then
    echo "lint: clang-format is not installed (Debian: apt-get install clang-format; npm test's set-up installs it when run as root)" >&2
    exit 1
  fi
}
step() { printf '[lint] %s\n' "$*" >&2; }

if [ "$mode" = write ]; then
  need_clang_format
  step "prettier --write"
  npx prettier --write --log-level warn "$TS_GLOB"
  step "clang-format -i ($(clang-format --version | grep -o 'version [0-9.]*'))"
  native_sources | xargs clang-format -i
  exit 0
fi

need_clang_format
step "prettier --check"
npx prettier --check --log-level warn "$TS_GLOB" || { echo "lint: run 'npm run format' to fix the formatting" >&2; exit 1; }
step "clang-format --dry-run --Werror ($(clang-format --version | grep -o 'version [0-9.]*'))"
native_sources | xargs clang-format --dry-run --Werror || { echo "lint: run 'npm run format' to fix the formatting (.clang-format is tuned on Debian 12's clang-format 14)" >&2; exit 1; }
step "eslint"
npx eslint --max-warnings 0 .
step "tsc (tsconfig.json, web/editor)"
npx tsc --noEmit -p tsconfig.json
npx tsc --noEmit -p web/editor
step "clean"
