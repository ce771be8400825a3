#!/usr/bin/env bash
# HTTPS at the front door beside Debian's nginx and Caddy, in one run, on this machine: the same
# certificate (localhost, ECDSA P-256), the same 4 KiB static file, wrk over loopback.
#   keep-alive:   requests/s on 32 connections that stay open;
#   handshakes:   requests/s when every request opens a new connection (Connection: close),
#                 so each is a TLS handshake.
# Also an idle agent's CPU and memory with metrics on and off (--no-metrics), over IDLE seconds.
# Usage: bench/tls.sh   (after scripts/install-deps.sh bench)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECS:-10}
idle=${IDLE:-60}
cargo build --release --quiet
silver=$PWD/target/release/silver
work=$(mktemp -d)
chmod 755 "$work"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 600 "$work/key.pem"
mkdir -p "$work/app/static" "$work/www/static"
head -c 4096 /dev/urandom | base64 -w 76 | head -c 4096 > "$work/app/static/file.txt"
cp "$work/app/static/file.txt" "$work/www/static/file.txt"
printf '[production]\napp_name = tlsbench\ndefault_location = localhost\n' > "$work/app/app.ini"

# silver: a static-only app at localhost; the router serves static/ itself.
sp=$(free_port)
"$silver" agent --root "$work/node" --listen 127.0.0.1:0 --http 127.0.0.1:0 --https "127.0.0.1:$sp" --no-acme > "$work/agent.addr" 2>"$work/agent.log" &
pids+=($!)
for _ in $(seq 200); do [ -s "$work/agent.addr" ] && break; sleep 0.05; done
export SILVER_NODE=$(head -1 "$work/agent.addr") SILVER_TOKEN=$(cat "$work/node/token")
"$silver" certs add localhost "$work/cert.pem" "$work/key.pem" >/dev/null 2>&1
SILVER_CACHE_DIR="$work/cache" "$silver" deploy "$work/app" >/dev/null 2>&1

# nginx, as Debian ships it, with keep-alive requests not capped (silver's are not).
np=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$np ssl http2;
    server_name localhost;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    root $work/www;
  }
}
NGINX
nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>"$work/nginx/stderr" &
pids+=($!)

# Caddy, with the same certificate and no automatic HTTPS.
cp_=$(free_port)
cat > "$work/Caddyfile" <<CADDY
{
  admin off
  auto_https off
  storage file_system $work/caddy
}
https://localhost:$cp_ {
  tls $work/cert.pem $work/key.pem
  root * $work/www
  file_server
}
CADDY
HOME=$work caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
pids+=($!)

for port in "$sp" "$np" "$cp_"; do
  for _ in $(seq 200); do
    curl -sk --fail "https://localhost:$port/static/file.txt" -o /dev/null && break
    sleep 0.05
  done
done
wrk_rps() {  # wrk_rps PORT [HEADER]: requests/s
  local extra=()
  [ -n "${2:-}" ] && extra=(-H "$2")
  wrk -t1 -c32 -d"${secs}s" "${extra[@]}" "https://localhost:$1/static/file.txt" | awk '/Requests\/sec/ {print $2}'
}
printf 'server  keep-alive req/s  handshakes/s\n'
declare -A ka hs
for name in silver:$sp nginx:$np caddy:$cp_; do
  s=${name%%:*} port=${name##*:}
  ka[$s]=$(wrk_rps "$port")
  hs[$s]=$(wrk_rps "$port" "Connection: close")
  printf '%-7s %17s %13s\n' "$s" "${ka[$s]}" "${hs[$s]}"
done
printf 'silver/nginx: keep-alive %.2f, handshakes %.2f\n' \
  "$(echo "${ka[silver]} / ${ka[nginx]}" | bc -l)" "$(echo "${hs[silver]} / ${hs[nginx]}" | bc -l)"
printf 'silver/caddy: keep-alive %.2f, handshakes %.2f\n' \
  "$(echo "${ka[silver]} / ${ka[caddy]}" | bc -l)" "$(echo "${hs[silver]} / ${hs[caddy]}" | bc -l)"

[ "$idle" = 0 ] && exit 0
# An idle agent's own cost, with metrics on and off: CPU seconds over IDLE s and RSS at the end.
idle_cost() {  # idle_cost ROOT [FLAGS...]: "cpu_percent rss_kib"
  local root=$1; shift
  "$silver" agent --root "$root" --listen 127.0.0.1:0 --http 127.0.0.1:0 "$@" > "$root.addr" 2>/dev/null &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 200); do [ -s "$root.addr" ] && break; sleep 0.05; done
  # An app on it, so the sampler has an app to read as well as the node.
  SILVER_NODE=$(head -1 "$root.addr") SILVER_TOKEN=$(cat "$root/token") SILVER_CACHE_DIR="$work/cache" \
    "$silver" deploy "$work/app" >/dev/null 2>&1
  sleep 12  # past the first samples and the start-up
  local t0 t1
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sleep "$idle"
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  local rss
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  kill "$pid"
  echo "$(echo "($t1 - $t0) / $idle" | bc -l) $rss"
}
read -r on_cpu on_rss < <(idle_cost "$work/idle-on")
read -r off_cpu off_rss < <(idle_cost "$work/idle-off" --no-metrics)
printf 'idle agent over %ss: metrics on %.3f%% of a core, %s KiB; off %.3f%% of a core, %s KiB\n' \
  "$idle" "$on_cpu" "$on_rss" "$off_cpu" "$off_rss"
printf 'metrics cost: %+.3f%% of a core, %+d KiB\n' "$(echo "$on_cpu - $off_cpu" | bc -l)" "$((on_rss - off_rss))"
