#!/usr/bin/env bash
# Front-door benchmark: 20 ordinary requests per second, timed, first alone and then while 500
# connections from another loopback address hold unfinished headers (a slowloris flood). The
# target: every ordinary request answered, p99 within 100 ms, during the flood.
# Usage: bench/front-door.sh [CONNECTIONS] [SECONDS]   (needs python3 and gunicorn)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500}
secs=${2:-10}
cargo build --release --quiet
silver=$PWD/target/release/silver
work=$(mktemp -d)
chmod 755 "$work"
trap 'kill "$agent" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/app/static"
printf '[production]\napp_name = bench\nrunner = app.py\n' > "$work/app/app.ini"
cat > "$work/app/app.py" <<'PY'
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
PY
"$silver" agent --root "$work/node" --listen 127.0.0.1:0 --http 127.0.0.1:0 > "$work/urls" 2> "$work/agent.log" &
agent=$!
until [ "$(wc -l < "$work/urls")" -ge 2 ]; do
  kill -0 "$agent" || { cat "$work/agent.log"; exit 1; }
  sleep 0.1
done
control=$(sed -n 1p "$work/urls")
front=$(sed -n 2p "$work/urls")
SILVER_NODE=$control SILVER_TOKEN=$(cat "$work/node/token") "$silver" deploy "$work/app" --location '*' > /dev/null 2>&1
python3 bench/slow_headers.py "${front#http://}" "$n" "$secs"
