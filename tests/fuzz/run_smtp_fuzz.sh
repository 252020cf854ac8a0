#!/usr/bin/env bash
# Builds the SMTP fuzz targets with clang (ASan + UBSan) in their own build dir and
# runs each for SECONDS on its corpus (tests/fuzz/corpus/smtp_command, smtp_data, smtp_session).
# Usage: tests/fuzz/run_smtp_fuzz.sh [SECONDS=60]
# Environment: BUILD_DIR (default build-fuzz-smtp). Crashes land in
# $BUILD_DIR/smtp-fuzz/<target>/artifacts; the script exits non-zero on one.
# New inputs the fuzzer finds go to $BUILD_DIR/smtp-fuzz/<target>/corpus, never
# into the checked-in seeds.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-$root/build-fuzz-smtp}"

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOSTERN_FUZZ=ON -DPOSTERN_BUILD_TESTS=ON
       -DPOSTERN_BUILD_BENCH=OFF -DPOSTERN_SANITIZE=ON)

if grep -q 'smtp_fuzz.cmake' "$root/tests/fuzz/CMakeLists.txt"; then
  src="$root"
else
  # Not yet included by tests/fuzz/CMakeLists.txt: a wrapper project adds it.
  src="$build/wrapper"
  mkdir -p "$src"
  cat > "$src/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(postern_smtp_fuzz_wrapper LANGUAGES C CXX)
add_subdirectory("$root" postern)
include("$root/tests/fuzz/smtp_fuzz.cmake")
CMAKE
fi
CC=clang CXX=clang++ cmake -S "$src" -B "$build" "${generator[@]}" "${flags[@]}" >/dev/null
cmake --build "$build" --target postern_smtp_command_fuzz postern_smtp_data_fuzz postern_smtp_session_fuzz

dict="$build/smtp-fuzz/smtp.dict"
mkdir -p "$build/smtp-fuzz"
cat > "$dict" <<'DICT'
"\x0d\x0a"
"\x0d\x0a.\x0d\x0a"
"\x0a.\x0a"
"\x0d\x0a..\x0d\x0a"
"<>"
"<postmaster>"
"@"
"%"
"!"
"\"\\\""
"[IPv6:::1]"
"[127.0.0.1]"
"MAIL FROM:"
"RCPT TO:"
"EHLO x\x0d\x0a"
"DATA\x0d\x0a"
"BDAT 5 LAST\x0d\x0a"
"STARTTLS\x0d\x0a"
"AUTH PLAIN "
"AUTH LOGIN\x0d\x0a"
"RSET\x0d\x0a"
" SIZE="
" BODY=8BITMIME"
" SMTPUTF8"
" RET=HDRS"
" ENVID="
" NOTIFY=SUCCESS,FAILURE"
" ORCPT=rfc822;"
"+2B"
"\xc3\xa9"
DICT

status=0
for target in smtp_command smtp_data smtp_session; do
  fuzzer="$(find "$build" -type f -name "postern_${target}_fuzz" -perm -u+x | head -n 1)"
  work="$build/smtp-fuzz/$target"
  mkdir -p "$work/corpus" "$work/artifacts"
  echo "== $target: ${seconds}s"
  # The first corpus dir receives new inputs; the seeds are read only.
  "$fuzzer" "$work/corpus" "$root/tests/fuzz/corpus/$target" -dict="$dict" -max_total_time="$seconds" \
    -max_len=4096 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
    || status=$?
done
exit "$status"
