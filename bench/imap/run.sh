#!/bin/sh
# IMAP benchmark (issue 6): posternd's imap plugin against a private Dovecot in
# the same run: commands/s of N concurrent clients (LOGIN, SELECT, FETCH flags
# and bodies, SEARCH, APPEND, STORE, EXPUNGE, LOGOUT), the ratio, and memory
# per idle logged-in connection. Method and results: bench/imap/README.md.
#
# Usage: bench/imap/run.sh BUILD_DIR [run.py options]
#   --clients 20 --users 20 --messages 50 --duration 20 --rounds 2
#   --idle-connections 500 --threads 1 --only dovecot|postern --keep
# Builds bench_imap, posternd, posternctl and the imap plugin in BUILD_DIR first.
# Needs root (Dovecot runs as root with its own config; mail as nobody),
# packages dovecot-imapd and /usr/bin/python3.
set -eu
build=${1:?usage: bench/imap/run.sh BUILD_DIR [run.py options]}
shift
here=$(cd "$(dirname "$0")" && pwd)
command -v dovecot >/dev/null || { echo "run.sh: dovecot not found (apt-get install dovecot-imapd)" >&2; exit 1; }
ninja -C "$build" bench_imap posternd posternctl imap >&2
exec /usr/bin/python3 "$here/run.py" "$build" "$@"
