#!/usr/bin/env bash
# One idempotent set-up for a fresh clone: system packages, npm packages, the native addon, the
# editor bundle and the small shipped models. `npm start` and `npm test` run it first, so a fresh
# machine needs nothing else. Steps that are already up to date take well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STAMPS="$ROOT/.setup-stamps"
mkdir -p "$STAMPS"
log() { printf '[setup] %s\n' "$*" >&2; }

# --- 1. Debian packages -------------------------------------------------------------------
# libdnnl-dev: oneDNN for the fast CPU path (the build works without it, slower).
# python3-websocket + chromium: only the tests need them (a Python client and the browser tests);
# clang-format: `npm run lint`, which CI (.ci/run) runs after the tests;
# redis-server: the cluster tests start their own Redis (the embedded mode needs none).
want=(libdnnl-dev)
if [ "${SANA_SETUP_TEST:-0}" = 1 ] || [ "${CI:-}" = true ]; then
  want+=(python3-websocket chromium clang-format redis-server)
fi
missing=()
# dpkg -s also succeeds for a removed package whose config files remain: ask for the status itself.
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then command -v sudo >/dev/null && SUDO="sudo -n" || SUDO="none"; fi
  if [ "$SUDO" = none ] || [ "${SANA_SKIP_APT:-0}" = 1 ]; then
    why="not root"; [ "${SANA_SKIP_APT:-0}" = 1 ] && why="SANA_SKIP_APT=1"
    log "missing Debian packages: ${missing[*]} ($why: install them with apt-get for the fast path / browser tests)"
  else
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq || log "apt-get update failed; trying the install anyway"
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || log "apt-get install failed for ${missing[*]}; continuing without them"
  fi
fi

# --- 2. npm packages ----------------------------------------------------------------------
lock_sum=$(cat package.json package-lock.json 2>/dev/null | sha1sum | cut -c1-40)
if [ ! -d node_modules ] || [ "$(cat "$STAMPS/npm" 2>/dev/null)" != "$lock_sum" ]; then
  log "npm install"
  if [ -f package-lock.json ] && [ "${CI:-}" = true ]; then npm ci --no-audit --no-fund --loglevel=error
  else npm install --no-audit --no-fund --loglevel=error; fi
  echo "$lock_sum" > "$STAMPS/npm"
fi

# --- 3. build steps that other parts of the project declare in package.json ---------------
run_if_defined() {
  local script=$1
  if node -e "process.exit(require('./package.json').scripts?.['$script'] ? 0 : 1)"; then
    log "npm run $script"
    npm run --silent "$script"
  fi
}
# The native addon: the fast build (oneDNN, CUDA when nvcc is present) first; if it fails for any
# reason, say why and build the portable kernels instead of stopping, so a machine missing a
# package still gets a working (slower) addon. The failed build's log is kept for the reason.
build_native() {
  local logf="$ROOT/native/build-fast.log"
  mkdir -p "$ROOT/native"
  log "npm run build:native"
  # SANA_FAST_BUILD_ARGS: extra cmake-js arguments for the fast build only (check-fresh.sh
  # passes a broken one to prove the fallback).
  # shellcheck disable=SC2086
  if npm run --silent build:native -- ${SANA_FAST_BUILD_ARGS:-} >"$logf" 2>&1; then
    rm -f "$ROOT/native/build-portable.reason"
    return 0
  fi
  local why
  # The first error and the lines that explain it, on one line (cmake-js configures twice, so
  # only the first occurrence).
  why=$(grep -m1 -A8 -E 'CMake Error|error:|Could NOT|fatal|undefined reference' "$logf" | grep -v '^[[:space:]]*$' \
        | head -n 5 | tr '\n' ' ' | tr -s ' ' | cut -c1-300)
  [ -n "$why" ] || why=$(tail -n 3 "$logf" | tr '\n' ' ' | cut -c1-300)
  log "the fast native build failed; building the portable kernels instead (slower, same results)."
  log "why (full log: native/build-fast.log):"
  log "  $why"
  rm -rf "$ROOT/native/build"
  if ! npx cmake-js compile -d native -O native/build --log-level warn --CDSANA_NO_DNNL=ON >"$ROOT/native/build-portable.log" 2>&1; then
    log "the portable build with the CUDA backend failed too; building the CPU kernels alone (log: native/build-portable.log)"
    rm -rf "$ROOT/native/build"
    npx cmake-js compile -d native -O native/build --log-level warn --CDSANA_NO_DNNL=ON --CDSANA_NO_CUDA=ON
  fi
  printf 'fast build failed: %s\n' "$why" > "$ROOT/native/build-portable.reason"
}
build_native
run_if_defined build:editor
run_if_defined models:tiny
log "ready"
