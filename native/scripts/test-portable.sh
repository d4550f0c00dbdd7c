#!/usr/bin/env bash
# Builds the addon WITHOUT oneDNN (and without the CUDA backends) into native/build/portable and
# runs the native op tests against that build, so the portable GEMM/conv kernels that machines
# without libdnnl-dev use are checked too. Extra arguments go to vitest.
#   bash native/scripts/test-portable.sh            # build (incremental) + test/native
set -euo pipefail
cd "$(dirname "$0")/../.."
npx cmake-js compile -d native -O native/build/portable --CDSANA_NO_DNNL=ON --CDSANA_NO_CUDA=ON --log-level warn
SANA_NATIVE_ADDON="$PWD/native/build/portable/Release/sana_native.node" npx vitest run test/native "$@"
