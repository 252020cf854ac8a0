#!/usr/bin/env bash
# Builds postern_mime_fuzz with clang in its own build dir and fuzzes the MIME parser.
# Usage: tests/fuzz/run_mime_fuzz.sh [seconds=60]
# Environment: BUILD_DIR (default build-fuzz), JOBS (parallel fuzzing jobs, default 1).
# Crashes land in $BUILD_DIR/mime-fuzz/artifacts; the script exits non-zero on one.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-$root/build-fuzz}"
jobs="${JOBS:-1}"

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

# ASan and UBSan for the whole core (cmake/PosternWarnings.cmake adds clang's
# -fno-sanitize=function, which clang 14 cannot apply to coroutine code). The
# same flags as run_smtp_fuzz.sh, so both can share one BUILD_DIR.
CC=clang CXX=clang++ cmake -S "$root" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPOSTERN_FUZZ=ON -DPOSTERN_BUILD_TESTS=ON -DPOSTERN_BUILD_BENCH=OFF \
  -DPOSTERN_SANITIZE=ON >/dev/null
cmake --build "$build" --target postern_mime_fuzz

work="$build/mime-fuzz"
mkdir -p "$work/corpus" "$work/artifacts"
# Seed with the sample messages; the corpus grows across runs.
cp -n "$root"/sdk/lib/test/data/*.eml "$work/corpus/" 2>/dev/null || true

# Tokens the mutator would take long to guess.
cat > "$work/mime.dict" <<'DICT'
"\x0d\x0a"
"\x0d\x0a\x0d\x0a"
"--"
"Content-Type: "
"Content-Transfer-Encoding: "
"Content-Disposition: "
"multipart/mixed"
"multipart/digest"
"message/rfc822"
"message/global"
"text/plain"
"; boundary="
"; charset="
"; filename*0*="
"; filename*="
"; name="
"utf-8''"
"base64"
"quoted-printable"
"=?utf-8?q?"
"=?koi8-r?b?"
"=?iso-2022-jp?b?"
"?="
"=C3=A9"
"%E9"
DICT

fuzzer="$(find "$build" -type f -name postern_mime_fuzz -perm -u+x | head -n 1)"
args=("$work/corpus" -dict="$work/mime.dict" -max_total_time="$seconds" -max_len=65536 -timeout=10
      -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/" -print_final_stats=1)
# With -jobs libFuzzer runs workers that log to fuzz-N.log in the current directory.
if [ "$jobs" -gt 1 ]; then args+=(-jobs="$jobs" -workers="$jobs"); cd "$work"; fi
exec "$fuzzer" "${args[@]}"
