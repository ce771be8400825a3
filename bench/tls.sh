#!/usr/bin/env bash
# HTTPS at the front door beside Debian's nginx and Caddy, in one run, on this machine: the same
# certificate (localhost, ECDSA P-256), the same 4 KiB static file, wrk over loopback.
#   keep-alive:   requests/s on 32 connections that stay open;
#   handshakes:   requests/s when every request opens a new connection (Connection: close),
#                 so each is a TLS handshake.
# Each server also gets its own CPU time per request (µs, from /proc): on a small machine wrk
# itself can be the limit, and then requests/s measure the client more than the server.
# nginx runs twice: as Debian's nginx 1.22 ships (TLS 1.2 only, a cheaper handshake for both
# ends) and with TLS 1.3 turned on, the protocol silver and Caddy speak.
# ROUNDS rounds, interleaved; the median of each figure is printed.
# Also an idle agent's CPU and memory with metrics on and off (--no-metrics), over IDLE seconds.
# Usage: bench/tls.sh   (after scripts/install-deps.sh bench)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECS:-10}
idle=${IDLE:-60}
rounds=${ROUNDS:-3}
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

# nginx, as Debian ships it (and with TLS 1.3 on), keep-alive requests not capped (silver's are
# not).
start_nginx() {  # start_nginx NAME PORT [DIRECTIVE]
  local dir=$work/$1
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<NGINX
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
  uwsgi_temp_path $dir; scgi_temp_path $dir;
  server {
    listen 127.0.0.1:$2 ssl http2;
    server_name localhost;
    ${3:-}
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    root $work/www;
  }
}
NGINX
  nginx -c "$dir/nginx.conf" -g 'daemon off;' 2>"$dir/stderr" &
  pids+=($!)
}
np=$(free_port)
start_nginx nginx "$np"
n3p=$(free_port)
start_nginx nginx13 "$n3p" 'ssl_protocols TLSv1.2 TLSv1.3;'

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

for port in "$sp" "$np" "$n3p" "$cp_"; do
  for _ in $(seq 200); do
    curl -sk --fail "https://localhost:$port/static/file.txt" -o /dev/null && break
    sleep 0.05
  done
done
# The processes that do a server's work: the agent; nginx's workers; Caddy.
server_pids() {  # server_pids NAME
  case $1 in
    silver) echo "${pids[0]}" ;;
    nginx) pgrep -P "${pids[1]}" ;;
    nginx13) pgrep -P "${pids[2]}" ;;
    caddy) echo "${pids[3]}" ;;
  esac
}
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
measure() {  # measure NAME PORT [HEADER]: "requests/s µs-of-server-CPU-per-request"
  local extra=() procs t0 t1 rps
  [ -n "${3:-}" ] && extra=(-H "$3")
  procs=$(server_pids "$1")
  t0=$(cpu_ticks $procs)
  rps=$(wrk -t1 -c32 -d"${secs}s" "${extra[@]}" "https://localhost:$2/static/file.txt" | awk '/Requests\/sec/ {print $2}')
  t1=$(cpu_ticks $procs)
  echo "$rps $(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / ($rps * $secs)" | bc -l)"
}
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
names=(silver nginx nginx13 caddy)
declare -A port=([silver]=$sp [nginx]=$np [nginx13]=$n3p [caddy]=$cp_) runs
for round in $(seq "$rounds"); do
  for s in "${names[@]}"; do
    runs[$s.ka]+="$(measure "$s" "${port[$s]}")"$'\n'
    runs[$s.hs]+="$(measure "$s" "${port[$s]}" "Connection: close")"$'\n'
  done
done
declare -A fig
printf '%-8s %12s %9s %13s %9s\n' server keep-alive/s µs/req handshakes/s µs/conn
for s in "${names[@]}"; do
  for m in ka hs; do
    fig[$s.$m.rps]=$(printf '%s' "${runs[$s.$m]}" | awk '{print $1}' | median)
    fig[$s.$m.cpu]=$(printf '%s' "${runs[$s.$m]}" | awk '{print $2}' | median)
  done
  printf '%-8s %12.0f %9.1f %13.0f %9.1f\n' "$s" "${fig[$s.ka.rps]}" "${fig[$s.ka.cpu]}" \
    "${fig[$s.hs.rps]}" "${fig[$s.hs.cpu]}"
done
for other in nginx nginx13 caddy; do
  printf 'silver/%-7s requests/s: keep-alive %.2f, handshakes %.2f; server CPU per request: keep-alive %.2f, handshakes %.2f\n' \
    "$other" \
    "$(echo "${fig[silver.ka.rps]} / ${fig[$other.ka.rps]}" | bc -l)" \
    "$(echo "${fig[silver.hs.rps]} / ${fig[$other.hs.rps]}" | bc -l)" \
    "$(echo "${fig[silver.ka.cpu]} / ${fig[$other.ka.cpu]}" | bc -l)" \
    "$(echo "${fig[silver.hs.cpu]} / ${fig[$other.hs.cpu]}" | bc -l)"
done

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
