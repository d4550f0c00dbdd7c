#!/usr/bin/env bash
# Builds the addon with AddressSanitizer (without the CUDA backend) into native/build-asan and runs
# the native op and model tests against it, with GCC's libasan preloaded into node (node itself is
# not instrumented; leak checking is off, node's own allocations would drown it). Catches
# out-of-bounds reads and writes in the CPU kernels that the float64 comparisons cannot see.
# Slower than the normal build (~3× on these tests); not part of .ci/run. Extra arguments go to vitest.
#   bash native/scripts/test-asan.sh                       # test/native and test/models
#   bash native/scripts/test-asan.sh test/native/nn.test.ts
set -euo pipefail
cd "$(dirname "$0")/../.."
# cmake-js sets CMAKE_CXX_FLAGS itself, so the sanitizer goes in the Release flags.
npx cmake-js compile -d native -O native/build-asan --CDSANA_NO_CUDA=ON --log-level warn \
  --CDCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG -fsanitize=address -fno-omit-frame-pointer" \
  --CDCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address"
asan="$(gcc -print-file-name=libasan.so)"
[ -f "$asan" ] || { echo "test-asan: libasan.so not found (apt-get install libasan8)" >&2; exit 1; }
if [ $# -eq 0 ]; then set -- test/native test/models; fi
LD_PRELOAD="$asan" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" \
  SANA_NATIVE_ADDON="$PWD/native/build-asan/Release/sana_native.node" npx vitest run "$@"
