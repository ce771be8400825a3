#!/usr/bin/env bash
# P5: a fleet deploy to 20 agents on this machine (loopback ports) against the same deploy to
# one agent, in one run; and the flip skew across the 20 (first flip to last).
# Usage: bench/fleet.sh [AGENTS]   (after scripts/install-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
observe=${OBSERVE:-1}   # the observe window, seconds (0: confirm at once)
cargo build --release --quiet
silver=$PWD/target/release/silver
work=$(mktemp -d)
chmod 755 "$work"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT
token=bench-fleet-token-0123456789abcdef
printf '%s' "$token" > "$work/token" && chmod 600 "$work/token"

app() {  # app DIR VERSION: a small WSGI app under gunicorn, like the test fixtures
  mkdir -p "$1/static"
  printf '[production]\napp_name = bench\nrunner = app.py\ndefault_location = bench.test\n' > "$1/app.ini"
  printf 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"%s"]\n' "$2" > "$1/app.py"
}
app "$work/v1" one
app "$work/v2" two

start_agents() {  # start_agents COUNT INVENTORY
  local hosts=()
  for i in $(seq "$1"); do
    local root="$work/nodes$1/node$i"
    mkdir -p "$root" && cp "$work/token" "$root/token"
    "$silver" agent --root "$root" --listen 127.0.0.1:0 --http 127.0.0.1:0 > "$root.addr" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 200); do [ -s "$root.addr" ] && break; sleep 0.05; done
    hosts+=("\"$(head -1 "$root.addr")\"")
  done
  printf '[environments.bench]\nhosts = [%s]\ntoken_file = "%s"\nobserve = %s\n' "$(IFS=,; echo "${hosts[*]}")" "$work/token" "$observe" > "$2"
}

now() { date +%s.%N; }
timed_deploy() {  # timed_deploy INVENTORY APP_DIR -> seconds, and the report in $work/report.json
  local t0 t1
  t0=$(now)
  "$silver" fleet deploy "$2" --env bench --inventory "$1" --json > "$work/report.json" 2>/dev/null
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}
field() { python3 -c "import json,sys; d=json.load(open('$work/report.json')); print(d$1)"; }

start_agents 1 "$work/one.toml"
start_agents "$n" "$work/many.toml"
# First deploys (every node gets v1), then the measured deploy of v2 (a change, as a release).
timed_deploy "$work/one.toml" "$work/v1" > /dev/null
timed_deploy "$work/many.toml" "$work/v1" > /dev/null
one=$(timed_deploy "$work/one.toml" "$work/v2")
one_phases=$(field '["phases_ms"]')
many=$(timed_deploy "$work/many.toml" "$work/v2")
skew=$(field '["skew_ms"]')
many_phases=$(field '["phases_ms"]')
outcome=$(field '["outcome"]')

printf '| agents | %s on loopback, %s cores, observe %s s |\n|---|---|\n' "$n" "$(nproc)" "$observe"
printf '| fleet deploy, 1 agent | %.2f s (%s) |\n' "$one" "$one_phases"
printf '| fleet deploy, %s agents | %.2f s (%s), %s |\n' "$n" "$many" "$many_phases" "$outcome"
printf '| **P5 ratio** (%s agents / 1) | **%.2f** |\n' "$n" "$(echo "$many / $one" | bc -l)"
printf '| flip skew across the %s | %s ms |\n' "$n" "$skew"
