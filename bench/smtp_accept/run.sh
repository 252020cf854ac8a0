#!/usr/bin/env bash
# SMTP accept benchmark (issue 3): smtp-source against posternd and a private
# stock Postfix in one run. Method and caveats: bench/smtp_accept/README.md.
# Usage: bench/smtp_accept/run.sh [BUILD_DIR]   (or BUILD_DIR=...; default build/)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec /usr/bin/python3 "$here/smtp_accept.py" "$@"
