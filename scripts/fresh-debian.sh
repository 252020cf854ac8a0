#!/usr/bin/env bash
# Runs a command on a clean clone of this repository's HEAD inside a FRESH Debian 12
# (bookworm) root: what a new user's machine has, not what this machine kept from
# earlier installs. .ci/run uses it so that a package scripts/deps.sh forgets fails CI.
#
#   scripts/fresh-debian.sh                      # scripts/test.sh, then scripts/check-demo.sh
#   scripts/fresh-debian.sh 'scripts/build.sh'   # any command, run from the clone's root
#
# How: the bare base system (mmdebstrap --variant=apt, no project package) is cached as
# a tarball for up to 7 days under $POSTERN_FRESH_CACHE (/var/cache/postern-fresh-debian);
# every run unpacks it anew, clones HEAD into it, runs scripts/deps.sh there with the
# network (apt installs every project package from the mirror, nothing is cached), then
# runs the command in a network namespace of its own that has only loopback, so its test
# servers cannot collide with anything on the host. The host's ccache directory is bind-
# mounted (compilation results only; the packages still come from apt).
#
# Needs root (chroot, mounts, unshare) and the Debian mirror of the host's apt sources.
# Every process left in the root is killed and every mount undone on exit.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "fresh-debian: needs root (chroot, mount, unshare)" >&2; exit 1; }
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
cmd=${1:-scripts/test.sh && scripts/check-demo.sh}
cache=${POSTERN_FRESH_CACHE:-/var/cache/postern-fresh-debian}
ccache_dir=${CCACHE_DIR:-$HOME/.cache/ccache}
mkdir -p "$cache" "$ccache_dir"

if ! command -v mmdebstrap >/dev/null; then
  echo "fresh-debian: installing mmdebstrap" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi

# The base: a week-old one is as good as new (apt-get update runs inside anyway).
base=$(find "$cache" -maxdepth 1 -type f -name 'bookworm-*.tar' -mtime -7 -size +1M 2>/dev/null | sort | tail -1)
if [ -z "$base" ]; then
  rm -f "$cache"/bookworm-*.tar
  base=$cache/bookworm-$(date +%Y%m%d).tar
  # The mirror is the one this host's apt uses (its sources files), else mmdebstrap's default.
  sources=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -s "$f" ] && grep -q bookworm "$f" && sources+=("$f")
  done
  echo "fresh-debian: making the base system (${sources[*]:-default mirror})" >&2
  # mmdebstrap picks the output format from the name: keep ".tar" at the end.
  mmdebstrap --quiet --variant=apt --include=ca-certificates,git bookworm "$cache/partial.tar" "${sources[@]}" >&2
  mv "$cache/partial.tar" "$base"
fi

root=$(mktemp -d /tmp/postern-fresh.XXXXXX)
cleanup() {
  local rc=$?
  # Kill whatever still runs inside the root (daemons a failed test left behind).
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -9 "${p#/proc/}" 2>/dev/null
  done
  for m in root/.ccache dev proc sys; do
    mountpoint -q "$root/$m" 2>/dev/null && umount -R -l "$root/$m" 2>/dev/null
  done
  rm -rf --one-file-system "$root"
  exit $rc
}
trap cleanup EXIT INT TERM
tar -C "$root" -xf "$base"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# What Debian's installer writes and mmdebstrap does not: localhost by name,
# and this machine's name (the chroot shares the host's UTS name).
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$(hostname)" \
  >"$root/etc/hosts"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --rbind /dev "$root/dev"; mount --make-rslave "$root/dev"
mkdir -p "$root/root/.ccache"; mount --bind "$ccache_dir" "$root/root/.ccache"
git clone -q "$repo" "$root/root/postern"

run_in_root() {
  # A clean environment: what a user's login shell has, plus CI and the Postern knobs.
  local keep=() v
  for v in CI $(compgen -e | grep '^POSTERN_' || true); do
    [ -n "${!v+x}" ] && keep+=("$v=${!v}")
  done
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CCACHE_DIR=/root/.ccache "${keep[@]}" /bin/bash -c "cd /root/postern && $1"
}
export -f run_in_root; export root

echo "fresh-debian: installing the project's packages in a clean Debian 12 root" >&2
run_in_root 'scripts/deps.sh'
echo "fresh-debian: running (loopback-only network namespace): $cmd" >&2
unshare --net bash -c 'ip link set lo up && run_in_root "$0"' "$cmd"
