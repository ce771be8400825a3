#!/usr/bin/env bash
# Installs, from Debian's or Ubuntu's packages, what silver's tests (and, with `bench`, its
# benchmarks) need. Says what it installs; does nothing when everything is already there.
# Usage: scripts/install-deps.sh [bench]
set -euo pipefail
packages=(
  python3 python3-venv python3-pip gunicorn postgresql          # apps, and their database
  python3-wheel-whl                                              # offline PEP 660 editable installs
  util-linux coreutils openssh-client openssh-server openssl    # nodes over ssh, TLS
  mmdebstrap e2fsprogs zstd tar dosfstools mtools qemu-utils     # baking images
  debian-archive-keyring qemu-system-x86                         # and booting them
)
if [ "${1:-}" = bench ]; then
  packages+=(bc time rsync curl)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
. /etc/os-release
backports="${VERSION_CODENAME:-bookworm}-backports"
enable_backports() {
  if ! grep -rqs "$backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian $backports main" | $sudo tee /etc/apt/sources.list.d/silver-backports.list >/dev/null
  fi
  $sudo apt-get update -qq >&2
}
if [ ${#missing[@]} -gt 0 ]; then
  echo "silver: installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq >&2
  if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    # A qemu-utils from bookworm-backports (as some machines have) refuses bookworm's own QEMU:
    # take QEMU from backports too.
    echo "silver: retrying with QEMU from $backports" >&2
    enable_backports
    $sudo apt-get install -y -qq --no-install-recommends -t "$backports" qemu-system-x86 qemu-utils >&2
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
fi
# Byte-identical disk images need mke2fs >= 1.47.1, which takes every inode time from
# SOURCE_DATE_EPOCH (1.47.0 copies the build tree's ctimes in). Debian 12 has it in backports.
e2fs=$(dpkg-query -W -f='${Version}' e2fsprogs)
if dpkg --compare-versions "$e2fs" lt 1.47.1; then
  if [ "${ID:-}" = debian ]; then
    echo "silver: installing e2fsprogs from $backports (1.47.1 or later makes reproducible disk images)" >&2
    enable_backports
    $sudo apt-get install -y -qq --no-install-recommends -t "$backports" e2fsprogs >&2
  else
    echo "silver: e2fsprogs $e2fs is older than 1.47.1: baked root filesystems stay reproducible, disk images will not be byte-identical" >&2
  fi
fi
