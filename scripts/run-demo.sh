#!/usr/bin/env bash
# Command 1 of the README: install what is missing, build, and run the demo
# server in the foreground with config/postern.xml (data under var/, a
# self-signed certificate made on first start). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=true
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
scripts/build.sh
mkdir -p var
# The demo account lives in the directory (docs/directory.md); made once.
ctl=(build/bin/posternctl --config config/postern.xml)
if ! "${ctl[@]}" user show demo@postern.test >/dev/null 2>&1; then
  "${ctl[@]}" domain add postern.test >/dev/null 2>&1 || true
  echo demo-password | "${ctl[@]}" user add demo@postern.test --name "Demo User" --password-stdin
fi
exec build/bin/posternd --config config/postern.xml --foreground
