#!/usr/bin/env bash
# Command 2 of the README: install what is missing, build, run every test
# (unit, loader, integration against the real daemon), then the same tests
# again in an ASan+UBSan build. POSTERN_SKIP_SANITIZE=1 skips the second pass.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/deps.sh
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# Cache hits across clones in different directories (CI builds a fresh clone).
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=true

echo "== build (RelWithDebInfo)"
scripts/build.sh
echo "== tests"
(cd build && ctest --output-on-failure -j "$(nproc)" --timeout 600)

if [ "${POSTERN_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== build (ASan+UBSan)"
  POSTERN_BUILD_DIR=build-asan scripts/build.sh -DPOSTERN_SANITIZE=ON -DPOSTERN_BUILD_BENCH=OFF
  echo "== tests (ASan+UBSan)"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j "$(nproc)" --timeout 900)
fi
echo "== all tests passed in $(( $(date +%s) - start )) s"
