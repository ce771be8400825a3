#!/usr/bin/env bash
# Runtime benchmarks, with a real agent, real gunicorn and the real front door on loopback:
#   1. zero downtime: CONNECTIONS keep-alive connections of constant load through the router
#      across DEPLOYS consecutive deploys alternating two versions. Reports failed requests,
#      responses from the old version after a switch completed, and the longest gap between
#      successful responses;
#   2. router overhead: the same gunicorn through the router and reached directly, one after the
#      other in the same run, as ratios of p50 and p99 latency and of throughput.
# Usage: bench/runtime.sh [DEPLOYS] [CONNECTIONS] [SECONDS]   (after scripts/install-deps.sh bench)
set -euo pipefail
cd "$(dirname "$0")/.."
deploys=${1:-20} connections=${2:-50} seconds=${3:-10}
cargo build --release --quiet --bin silver --example loadgen
silver=$PWD/target/release/silver loadgen=$PWD/target/release/examples/loadgen
work=$(mktemp -d)
chmod 755 "$work"  # apps run as an unprivileged user when this runs as root
trap 'kill $agent_pid 2>/dev/null || true; rm -rf "$work"' EXIT
now() { date +%s%N; }

for v in 1 2; do
  mkdir -p "$work/v$v"
  printf '[production]\napp_name = bench\nrunner = app.py\ndefault_location = bench.test\nhealth_check = /\n[variables]\nVERSION = %s\n' "$v" > "$work/v$v/app.ini"
  cat > "$work/v$v/app.py" <<'PY'
import os
BODY = ("v" + os.environ["VERSION"]).encode()

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
PY
done

"$silver" agent --root "$work/node" --listen 127.0.0.1:0 --http 127.0.0.1:0 --workers 4 > "$work/addr" 2> "$work/agent.log" &
agent_pid=$!
for _ in $(seq 100); do [ "$(wc -l < "$work/addr")" -ge 2 ] && break; sleep 0.05; done
export SILVER_NODE=$(sed -n 1p "$work/addr") SILVER_TOKEN=$(cat "$work/node/token") SILVER_CACHE_DIR=$work/cache
front=$(sed -n 2p "$work/addr" | sed 's|http://||')
"$silver" deploy "$work/v1" > /dev/null 2>&1

echo "== zero downtime: $connections connections, $deploys deploys" >&2
"$loadgen" run "$front" bench.test / "$connections" 3600 "$work/load.csv" "$work/stop" &
load_pid=$!
sleep 2
: > "$work/switches"
for i in $(seq "$deploys"); do
  v=$(( i % 2 + 1 ))
  start=$(now)
  "$silver" deploy "$work/v$v" > /dev/null 2>> "$work/deploys.log"
  echo "$start $(now) v$v" >> "$work/switches"
  sleep 1
done
touch "$work/stop"
wait "$load_pid"
zero=$("$loadgen" report "$work/load.csv" "$work/switches")
echo "$zero"

echo "== router overhead: $seconds s each, 16 connections" >&2
sleep 2
direct=$(python3 -c "import json; print(json.load(open('$work/node/apps/bench/run/environment.json'))['PORT'])")
"$loadgen" run "$front" bench.test / 16 "$seconds" "$work/router.csv"
"$loadgen" run "127.0.0.1:$direct" bench.test / 16 "$seconds" "$work/direct.csv"
router=$("$loadgen" report "$work/router.csv")
direct=$("$loadgen" report "$work/direct.csv")
echo "router: $router"
echo "direct: $direct"
python3 - "$router" "$direct" <<'PY'
import json, sys
r, d = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({
    "p50_ratio": round(r["p50_ms"] / d["p50_ms"], 3),
    "p99_ratio": round(r["p99_ms"] / d["p99_ms"], 3),
    "throughput_ratio": round(r["throughput_rps"] / d["throughput_rps"], 3),
}))
PY
