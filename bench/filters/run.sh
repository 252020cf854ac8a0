#!/usr/bin/env bash
# Filter benchmark (issue 8): smtp-source throughput with dnsbl (3 lists, warm
# cache, real unbound) and greylist against no filters, same run.
# Method and figures: bench/filters/README.md.
# Usage: bench/filters/run.sh [BUILD_DIR]   (or BUILD_DIR=...; default build/)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec /usr/bin/python3 "$here/filters.py" "$@"
