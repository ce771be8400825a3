#!/usr/bin/env bash
# Front-door benchmark: 20 ordinary requests per second, timed, first alone and then while 500
# connections from another loopback address hold unfinished headers (a slowloris flood). The
# target: every ordinary request answered, p99 within 100 ms, during the flood.
# Usage: bench/front-door.sh [CONNECTIONS] [SECONDS]   (needs python3 and gunicorn)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500}
secs=${2:-10}
source bench/agent.sh
printf '[production]\napp_name = bench\nrunner = app.py\n' > "$work/app/app.ini"
cat > "$work/app/app.py" <<'PY'
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
PY
"$silver" deploy "$work/app" --location '*' > /dev/null 2>&1
python3 bench/slow_headers.py "${front#http://}" "$n" "$secs"
