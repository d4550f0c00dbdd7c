#!/usr/bin/env bash
# The fresh-machine check: what a new user does on a clean Debian 12, from the README alone.
#   1. purge the Debian packages the set-up is meant to install (run as root; skipped with
#      --no-purge), so a package left over from earlier work cannot hide a missing install step;
#   2. clone the committed HEAD into a new folder with ../shared beside it, as CI lays it out;
#   3. `npm start` (the README's first command): wait for the editor page, queue the shipped
#      default workflow over HTTP, wait for its PNG, stop the server;
#   4. .ci/run (the README's second command `npm test`, then `npm run lint`) with CI=true and no stdin;
#   5. with --fallback: a second clone whose fast native build is made to fail must still set up
#      (portable kernels) and say why.
# Exit 0 only when every step passed. Usage: scripts/check-fresh.sh [--no-purge] [--fallback] [--keep]
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
PURGE=1 FALLBACK=0 KEEP=0
for a in "$@"; do
  case $a in
    --no-purge) PURGE=0 ;;
    --fallback) FALLBACK=1 ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--no-purge] [--fallback] [--keep]" >&2; exit 2 ;;
  esac
done
PKGS=(libdnnl-dev libdnnl2 ocl-icd-opencl-dev opencl-c-headers opencl-clhpp-headers chromium python3-websocket clang-format redis-server redis-tools)
say() { printf '\n[check-fresh] %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }

[ -d "$SRC/../shared" ] || fail "no ../shared beside $SRC (CI has it there)"
WORK=$(mktemp -d /tmp/sana-fresh.XXXXXX)
cleanup() {
  [ -n "${SERVER_PID:-}" ] && kill -- -"$SERVER_PID" 2>/dev/null
  if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ "$PURGE" = 1 ]; then
  [ "$(id -u)" = 0 ] || fail "purging needs root (or pass --no-purge)"
  say "purging ${PKGS[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${PKGS[@]}" >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get autoremove --purge -y -qq >/dev/null 2>&1 || true
  for p in "${PKGS[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then fail "$p is still installed"; fi
  done
fi

say "fresh clone of $(git -C "$SRC" rev-parse --short HEAD) into $WORK/main (uncommitted changes are not included)"
git clone -q "$SRC" "$WORK/main" || fail "git clone"
cp -r "$SRC/../shared" "$WORK/shared" && chmod -R a-w "$WORK/shared"
cd "$WORK/main"

# --- npm start -------------------------------------------------------------------------
PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
say "npm start -- --port $PORT"
t0=$(date +%s)
setsid npm start -- --port "$PORT" </dev/null >"$WORK/start.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 1200); do
  curl -fsS "http://127.0.0.1:$PORT/" -o /dev/null 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$WORK/start.log"; fail "npm start exited"; }
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/" | grep -qi '<html' || { tail -n 30 "$WORK/start.log"; fail "the editor page is not served"; }
say "editor served after $(( $(date +%s) - t0 )) s; queueing the default workflow"
pid=$(node -e '
  const fs = require("fs");
  const prompt = JSON.parse(fs.readFileSync("workflows/sana_default.api.json", "utf8"));
  fetch(`http://127.0.0.1:${process.argv[1]}/prompt`, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt, client_id: "check-fresh" }) })
    .then(async (r) => { const j = await r.json(); if (!r.ok) { console.error(JSON.stringify(j)); process.exit(1); } console.log(j.prompt_id); });
' "$PORT") || fail "POST /prompt refused the default workflow"
png=""
for _ in $(seq 1 600); do
  png=$(curl -fsS "http://127.0.0.1:$PORT/history/$pid" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const h = JSON.parse(s)[process.argv[1]]; if (!h) return;
      if (h.status?.status_str === "error") { console.log("ERROR " + JSON.stringify(h.status.messages)); return; }
      for (const o of Object.values(h.outputs ?? {})) for (const i of o.images ?? []) if (i.type === "output") { console.log(i.subfolder ? i.subfolder + "/" + i.filename : i.filename); return; }
    });' "$pid")
  [ -n "$png" ] && break
  sleep 1
done
case $png in "" ) fail "no image after 600 s";; ERROR*) fail "the default workflow failed: $png";; esac
[ -s "$WORK/main/output/$png" ] || fail "history names $png but output/$png is missing"
say "default workflow wrote output/$png ($(stat -c %s "$WORK/main/output/$png") bytes) after $(( $(date +%s) - t0 )) s"
kill -- -"$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""

# --- .ci/run (npm test, npm run lint) ---------------------------------------------------
say "bash .ci/run (npm test, npm run lint) with CI=true, no stdin"
t0=$(date +%s)
CI=true bash .ci/run </dev/null >"$WORK/test.log" 2>&1
rc=$?
grep -E '^[0-9]+ passed, [0-9]+ failed' "$WORK/test.log" | tail -n 1
say ".ci/run exited $rc after $(( $(date +%s) - t0 )) s (log: $WORK/test.log)"
if [ $rc != 0 ]; then KEEP=1; grep -E 'FAIL|✗|×' "$WORK/test.log" | head -n 40; fail ".ci/run"; fi

# --- fallback: a failing fast build still sets up ------------------------------------------
if [ "$FALLBACK" = 1 ]; then
  say "fallback: a clone whose fast native build fails"
  git clone -q "$SRC" "$WORK/fallback/main" || fail "git clone"
  ln -s "$WORK/shared" "$WORK/fallback/shared"
  (cd "$WORK/fallback/main" && SANA_FAST_BUILD_ARGS="--CDCMAKE_CXX_COMPILER=/nonexistent/g++" bash scripts/setup.sh) >"$WORK/fallback.log" 2>&1 \
    || { tail -n 20 "$WORK/fallback.log"; fail "set-up stopped instead of falling back"; }
  grep -q 'fast native build failed' "$WORK/fallback.log" || fail "set-up did not say why it fell back"
  (cd "$WORK/fallback/main" && node --import tsx -e '
    const n = await import("./native/index.ts");
    const b = n.buildInfo();
    if (b.onednn) { console.error("expected the portable build"); process.exit(1); }
    n.getBackend("cpu");' ) 2>"$WORK/fallback-run.log" || fail "the portable addon does not load"
  grep -q 'set-up: fast build failed' "$WORK/fallback-run.log" || fail "the slow-path warning does not carry the reason"
  say "fallback ok: $(grep -m1 'set-up:' "$WORK/fallback-run.log" | cut -c1-200)"
fi
say "all steps passed"
