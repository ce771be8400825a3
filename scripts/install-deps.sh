#!/usr/bin/env bash
# Installs, from Debian's or Ubuntu's packages, what silver's tests (and, with `bench`, its
# benchmarks) need. Says what it installs; does nothing when everything is already there.
# Usage: scripts/install-deps.sh [bench]
set -euo pipefail
packages=(python3 python3-venv python3-pip gunicorn postgresql util-linux coreutils openssh-client openssh-server openssl)
if [ "${1:-}" = bench ]; then
  packages+=(zstd tar bc time rsync curl)
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
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
