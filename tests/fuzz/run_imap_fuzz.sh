#!/usr/bin/env bash
# Builds the IMAP command fuzz target with clang (ASan + UBSan) in its own build
# dir and runs it for SECONDS on its corpus (tests/fuzz/corpus/imap_command).
# Usage: tests/fuzz/run_imap_fuzz.sh [SECONDS=60]
# Environment: BUILD_DIR (default build-fuzz-imap). Crashes land in
# $BUILD_DIR/imap-fuzz/artifacts; the script exits non-zero on one. New inputs
# go to $BUILD_DIR/imap-fuzz/corpus, never into the checked-in seeds.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-$root/build-fuzz-imap}"

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOSTERN_FUZZ=ON -DPOSTERN_BUILD_TESTS=ON
       -DPOSTERN_BUILD_BENCH=OFF -DPOSTERN_SANITIZE=ON)

if grep -q 'imap_fuzz.cmake' "$root/tests/fuzz/CMakeLists.txt"; then
  src="$root"
else
  # Not yet included by tests/fuzz/CMakeLists.txt: a wrapper project adds it.
  src="$build/wrapper"
  mkdir -p "$src"
  cat > "$src/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(postern_imap_fuzz_wrapper LANGUAGES C CXX)
add_subdirectory("$root" postern)
include("$root/tests/fuzz/imap_fuzz.cmake")
CMAKE
fi
CC=clang CXX=clang++ cmake -S "$src" -B "$build" "${generator[@]}" "${flags[@]}" >/dev/null
cmake --build "$build" --target postern_imap_command_fuzz

work="$build/imap-fuzz"
mkdir -p "$work/corpus" "$work/artifacts"
dict="$work/imap.dict"
cat > "$dict" <<'DICT'
"\x0d\x0a"
" {5}\x0d\x0a"
" {3+}\x0d\x0a"
"{0}\x0d\x0a"
"a1 "
"UID "
"FETCH 1:* "
"BODY.PEEK[1.2.HEADER.FIELDS (FROM TO)]<0.10>"
"BODY[TEXT]"
"BODY[2.MIME]"
"RFC822.SIZE"
"(CHANGEDSINCE 5)"
"STORE 1 +FLAGS.SILENT (\\Seen $Junk)"
"(UNCHANGEDSINCE 3)"
"SEARCH CHARSET UTF-8 "
"OR NOT ( "
"HEADER X-A b "
"SINCE 1-Feb-1994 "
"MODSEQ \"/flags/\\\\draft\" all 5"
"APPEND INBOX (\\Seen) \"05-Jan-2024 10:00:00 +0100\" "
"SELECT \"&U,BTFw-\" (CONDSTORE)"
"CREATE x (USE (\\Sent))"
"LIST \"\" %/*"
"STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ)"
"LOGIN \"a\\\"b\" c"
"AUTHENTICATE PLAIN"
"ENABLE CONDSTORE"
"ID (\"name\" NIL)"
"IDLE"
"DONE"
"&-"
"4294967295"
DICT

echo "== imap_command: ${seconds}s"
# The first corpus dir receives new inputs; the seeds are read only.
exec "$(find "$build" -type f -name postern_imap_command_fuzz -perm -u+x | head -n 1)" \
  "$work/corpus" "$root/tests/fuzz/corpus/imap_command" -dict="$dict" -max_total_time="$seconds" \
  -max_len=4096 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/" -print_final_stats=1
