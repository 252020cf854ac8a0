#!/usr/bin/env bash
# Command 2 of the README: install what is missing, build, run every test
# (unit, loader, integration against the real daemon), then the same tests
# again in an ASan+UBSan build, then a short libFuzzer pass over the parsers.
# POSTERN_SKIP_SANITIZE=1 / POSTERN_SKIP_FUZZ=1 skip those passes.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/deps.sh
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# Cache hits across clones in different directories (CI builds a fresh clone),
# and for the core's precompiled-header compilations.
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=true
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime

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
if [ "${POSTERN_SKIP_FUZZ:-0}" != 1 ]; then
  # A short fuzzing pass on the seed corpora (clang + libFuzzer): any crash fails.
  secs=${POSTERN_FUZZ_SECONDS:-20}
  echo "== fuzz (${secs} s per target)"
  BUILD_DIR=build-fuzz tests/fuzz/run_mime_fuzz.sh "$secs" >build-fuzz-mime.log 2>&1 || { tail -50 build-fuzz-mime.log; exit 1; }
  BUILD_DIR=build-fuzz tests/fuzz/run_smtp_fuzz.sh "$secs" >build-fuzz-smtp.log 2>&1 || { tail -50 build-fuzz-smtp.log; exit 1; }
  BUILD_DIR=build-fuzz tests/fuzz/run_imap_fuzz.sh "$secs" >build-fuzz-imap.log 2>&1 || { tail -50 build-fuzz-imap.log; exit 1; }
  grep -h -E "^#[0-9]+.*DONE|stat::number_of_executed_units" build-fuzz-*.log | tail -6 || true
fi
echo "== all tests passed in $(( $(date +%s) - start )) s"
