#!/bin/sh
# Runs the mailbox store benchmark (bench/store/README.md).
# Usage: bench/store/run.sh BUILD_DIR [DATA_DIR]
# DATA_DIR must be on the disk a real server would use (not tmpfs: fsync matters).
set -eu
build=${1:?usage: run.sh BUILD_DIR [DATA_DIR]}
data=${2:-/var/tmp/postern-bench-store}
bin="$build/bench/store/bench_store"
rm -rf "$data/one" "$data/many"
"$bin" one "$data" 2000 1
"$bin" one "$data" 2000 4
"$bin" many "$data" 1000 2 4
[ -d "$data/big" ] || "$bin" build "$data" 100000
"$bin" open "$data"
"$bin" open "$data"
