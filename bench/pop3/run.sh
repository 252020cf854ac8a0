#!/bin/sh
# POP3 load: posternd vs a private Dovecot in the same run (see bench_pop3.py).
#   bench/pop3/run.sh [build-dir] [bench_pop3.py options...]
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
[ $# -gt 0 ] && shift
[ -x /usr/sbin/dovecot ] || { echo "dovecot-pop3d is not installed (apt-get install -y dovecot-pop3d)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true
exec /usr/bin/python3 "$here/bench_pop3.py" --build "$(cd "$build" && pwd)" "$@"
