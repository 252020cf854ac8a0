#!/usr/bin/env bash
# Installs what building and testing Postern needs on Debian 12, if missing.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost1.81-dev libssl-dev libsqlite3-dev libpugixml-dev libc-ares-dev libfmt-dev
  libcrypt-dev libgtest-dev libgmock-dev libbenchmark-dev
  python3 openssl swaks libnet-ssleay-perl libio-socket-ssl-perl postfix dnsmasq-base unbound libargon2-dev tcpdump
  clang libclang-rt-14-dev
  # Real mail clients the IMAP/POP3 integration tests drive (docs: ../shared/docs/real-clients.md).
  curl fetchmail getmail6 s-nail isync offlineimap3 mutt neomutt tmux
  # The reference IMAP server BODYSTRUCTURE/ENVELOPE are compared with
  # (tests/integration/imap/test_imap_dovecot_structure.py; a private instance on loopback).
  dovecot-imapd
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "deps: installing ${missing[*]}" >&2
# postfix is installed only for its smtp-source/smtp-sink test tools: no configuration, no daemon.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
