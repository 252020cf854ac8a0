#!/usr/bin/env bash
# Configures and builds Postern into build/ (or $POSTERN_BUILD_DIR).
# Extra arguments go to CMake's configure step (e.g. -DPOSTERN_SANITIZE=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${POSTERN_BUILD_DIR:-build}
JOBS=${POSTERN_JOBS:-$(nproc)}
if [ ! -f "$BUILD_DIR/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$JOBS"
