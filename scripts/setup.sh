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
# python3-websocket + chromium: only the tests need them (a Python client and the browser tests).
want=(libdnnl-dev)
if [ "${SANA_SETUP_TEST:-0}" = 1 ] || [ "${CI:-}" = true ]; then
  want+=(python3-websocket chromium)
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
run_if_defined build:native
run_if_defined build:editor
run_if_defined models:tiny
log "ready"
