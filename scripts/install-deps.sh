#!/usr/bin/env bash
# Installs, from Debian's or Ubuntu's packages, what silver's tests (and, with `bench`, its
# benchmarks) need. Says what it installs; does nothing when everything is already there.
# Usage: scripts/install-deps.sh [bench]
set -euo pipefail
packages=(
  python3 python3-venv python3-pip gunicorn postgresql          # apps, and their database
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
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "silver: installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
  # A qemu-utils from bookworm-backports (as some machines have) refuses bookworm's own QEMU:
  # take QEMU from backports too.
  . /etc/os-release
  backports="${VERSION_CODENAME:-bookworm}-backports"
  echo "silver: retrying with QEMU from $backports" >&2
  echo "deb http://deb.debian.org/debian $backports main" | $sudo tee /etc/apt/sources.list.d/silver-backports.list >/dev/null
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends -t "$backports" qemu-system-x86 qemu-utils >&2
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
