#!/usr/bin/env bash
# Installs, from Debian's or Ubuntu's packages, what silver's tests (and, with `bench`, its
# benchmarks) need, then checks every tool by running the command the tests run: a package can
# be installed while its binary is gone (apt removes a backports qemu-utils without an error
# when bookworm's qemu-system-x86 is installed beside it). Says what it installs.
# Usage: scripts/install-deps.sh [bench]
set -euo pipefail
packages=(
  python3 python3-venv python3-pip gunicorn postgresql          # apps, and their database
  python3-wheel-whl                                              # offline PEP 660 editable installs
  util-linux coreutils openssh-client openssh-server openssl    # nodes over ssh, TLS
  mmdebstrap e2fsprogs zstd tar dosfstools mtools                # baking images
  debian-archive-keyring qemu-utils qemu-system-x86              # and booting them
  curl                                                           # the demo fetches a page
  redis-server                                                   # service.redis
  postgresql-postgis                                             # service.postgis
  mariadb-server mariadb-client                                  # service.mysql
  docker-registry skopeo                                         # artifacts through a registry
  minisign                                                       # checks silver's signatures
  pebble                                                         # a test ACME CA (HTTPS tests)
  prometheus                                                     # promtool checks /metrics
  chromium                                                       # loads the status page
  php-fpm php-cli php-mysql                                      # platform = php apps
)
if [ "${1:-}" = bench ]; then
  packages+=(bc time rsync nginx-light caddy wrk)                # TLS load beside nginx and Caddy
fi
# Each tool the tests run, with the command that proves it works, and the package it comes from.
checks=(
  "gunicorn|gunicorn --version"
  "python3-venv|python3 -m venv --help"
  "postgresql|ls /usr/lib/postgresql/*/bin/initdb"
  "openssh-server|test -x /usr/sbin/sshd"
  "openssh-client|ssh -V"
  "openssl|openssl version"
  "mmdebstrap|mmdebstrap --version"
  "e2fsprogs|mke2fs -V"
  "zstd|zstd --version"
  "dosfstools|mkfs.vfat --help"
  "mtools|mcopy --version"
  "qemu-utils|qemu-img --version"
  "qemu-system-x86|qemu-system-x86_64 --version"
  "curl|curl --version"
  "redis-server|redis-server --version"
  "postgresql-postgis|ls /usr/share/postgresql/*/extension/postgis.control"
  "mariadb-server|mariadbd --version"
  "mariadb-client|mariadb-dump --version"
  "docker-registry|docker-registry --version"
  "skopeo|skopeo --version"
  "minisign|minisign -v"
  "pebble|pebble -h 2>&1 | grep -q -- -dnsserver"
  "pebble|pebble-challtestsrv -h 2>&1 | grep -q -- -tlsalpn01"
  "prometheus|promtool --version"
  "chromium|chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank"
  "php-fpm|\"\$(ls /usr/sbin/php-fpm* | sort -V | tail -n 1)\" -v"
  "php-cli|php -v"
  "php-mysql|php -m | grep -qx mysqli"
)
if [ "${1:-}" = bench ]; then
  checks+=("nginx-light|nginx -v" "caddy|caddy version" "wrk|wrk --version 2>&1 | grep -q wrk")
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
. /etc/os-release
backports="${VERSION_CODENAME:-bookworm}-backports"

# The Debian mirror this machine already uses, from its apt sources (one-line or deb822 form):
# never a host name of our own choosing.
debian_mirror() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local uri
  uri=$( { grep -hsE '^\s*deb\s' "${files[@]}" | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; exit } }';
           grep -hsiE '^\s*URIs:' "${files[@]}" | awk '{ print $2 }'; } \
         | grep -E '/debian/?$' | head -n 1)
  printf '%s\n' "${uri%/}"
}

updated=""
apt_update() {
  if [ -z "$updated" ]; then
    $sudo apt-get update -qq >&2
    updated=1
  fi
}

enable_backports() {
  if grep -rqs "$backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    apt_update
    return
  fi
  local mirror
  mirror=$(debian_mirror)
  if [ -z "$mirror" ]; then
    echo "silver: no Debian mirror in /etc/apt/sources.list*: cannot enable $backports" >&2
    return 1
  fi
  echo "silver: enabling $backports from $mirror" >&2
  echo "deb $mirror $backports main" | $sudo tee /etc/apt/sources.list.d/silver-backports.list >/dev/null
  updated=""
  apt_update
}

installed_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

apt_install() {
  apt_update
  echo "silver: installing Debian packages: $*" >&2
  $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# QEMU's tools and its system emulator must come from one suite: bookworm's qemu-system-x86
# beside a backports qemu-utils makes apt remove qemu-utils. When either is from backports (or
# the machine is Debian 12, where backports has the newer pair), take both from there together.
if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  qemu_from_backports=""
  case "$(installed_version qemu-utils)$(installed_version qemu-system-x86)" in
    *bpo*) qemu_from_backports=1 ;;
  esac
  # Byte-identical disk images need mke2fs >= 1.47.1, which takes every inode time from
  # SOURCE_DATE_EPOCH (1.47.0 copies the build tree's ctimes in). Debian 12 has it in backports.
  e2fs=$(installed_version e2fsprogs)
  if [ -n "$qemu_from_backports" ] || [ -z "$e2fs" ] || dpkg --compare-versions "$e2fs" lt 1.47.1; then
    enable_backports
  fi
  if [ -z "$e2fs" ] || dpkg --compare-versions "$e2fs" lt 1.47.1; then
    echo "silver: e2fsprogs from $backports (1.47.1 or later makes reproducible disk images)" >&2
    apt_install -t "$backports" e2fsprogs
  fi
  if [ -n "$qemu_from_backports" ]; then
    if ! dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q "install ok installed" \
      || ! dpkg-query -W -f='${Status}' qemu-utils 2>/dev/null | grep -q "install ok installed"; then
      echo "silver: qemu-utils is from $backports: taking qemu-system-x86 from there too" >&2
      apt_install -t "$backports" qemu-system-x86 qemu-utils
    fi
  fi
  remaining=()
  for p in "${missing[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || remaining+=("$p")
  done
  missing=("${remaining[@]+"${remaining[@]}"}")
fi

if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi

# service.couchdb: Debian packages no CouchDB; the tests use pouchdb-server, which speaks its
# HTTP API, from npm's configured registry (Debian's npm when the machine has no npm at all).
if ! command -v pouchdb-server >/dev/null 2>&1; then
  if ! command -v npm >/dev/null 2>&1; then
    apt_install npm
  fi
  echo "silver: installing pouchdb-server from npm (CouchDB's HTTP API, for service.couchdb)" >&2
  $sudo npm install -g --no-fund --no-audit pouchdb-server >&2
fi
checks+=("pouchdb-server|pouchdb-server --help")

# Now prove each tool by running it. A tool that does not run gets its package reinstalled once.
check_all() {
  local failed=()
  for c in "${checks[@]}"; do
    local pkg=${c%%|*} cmd=${c#*|}
    bash -c "$cmd" >/dev/null 2>&1 || failed+=("$pkg|$cmd")
  done
  printf '%s\n' "${failed[@]+"${failed[@]}"}"
}
broken=$(check_all)
if [ -n "$broken" ]; then
  pkgs=$(printf '%s\n' "$broken" | cut -d'|' -f1 | sort -u | tr '\n' ' ')
  echo "silver: these tools did not run after the install: $(printf '%s\n' "$broken" | cut -d'|' -f2 | paste -sd, -)" >&2
  echo "silver: reinstalling $pkgs" >&2
  $sudo apt-get install -y -qq --no-install-recommends --reinstall $pkgs >&2 || true
  broken=$(check_all)
  if [ -n "$broken" ]; then
    echo "silver: still not working after a reinstall:" >&2
    printf '  %s\n' "$broken" | sed 's/|/: /' >&2
    echo "hint: check 'apt-cache policy <package>' for a version mix (backports vs the release)" >&2
    exit 1
  fi
fi
